"""The crossbar: fixed random weights gated by the run-time writable synapse mask."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.schedule import hash_stages
from sw_model.spec import ArchParams

from .layout import index_bits, mask_words
from .synthesis import RDWR_DONT_CARE_PREFIX
from .weights import coordinate_signature, weight_source, word_address

__all__ = ["Crossbar"]


class Crossbar(wiring.Component):
    """Masked weights ``w[i, j] * m[i, j]`` of one synapse group per cycle, for every layer.

    The weights come from the source that ``arch.weight_source`` selects. The mask is a block
    RAM of ``arch.words`` words of ``lanes`` bits, initialised with the trained mask and written
    through a separate port. Lanes past the last neuron of a layer always read 0 because their
    weight is 0, so mask bits written there have no effect.

    Latency: ``2 + hash_stages(arch)`` cycles (2 for the ROM source, 5 for the hash source): the
    memory read and an output register. A new group may enter every cycle. A mask write in cycle
    ``c`` is seen by groups entering in cycle ``c + 1`` or later. A group of that word entering
    in cycle ``c`` itself reads an undefined mask.

    Parameters
    ----------
    arch : ArchParams
        Network shape and weight parameters.
    masks : sequence of array-like
        Initial mask of each layer, shape ``(sizes[k], sizes[k+1])``, values 0 or 1.

    Members
    -------
    layer, row, group : In
        Synapse group ``(k, i, g)``.
    weights : Out(ArrayLayout(signed(weight_bits), lanes))
        Masked weights of the group, ``latency`` cycles after the coordinates.
    mask_addr : In(bits for arch.words)
        Word written by ``mask_we``.
    mask_data : In(lanes)
        Mask bits of the word, lane ``l`` in bit ``l``.
    mask_we : In(1)
        Write ``mask_data`` to word ``mask_addr`` at the end of the cycle.
    """

    def __init__(self, arch: ArchParams, masks):
        if not isinstance(arch, ArchParams):
            raise TypeError(f"arch must be an ArchParams, not {arch!r}")
        if len(masks) != arch.n_layers:
            raise ValueError(f"expected {arch.n_layers} masks for sizes {list(arch.sizes)}, "
                             f"got {len(masks)}")
        self._arch = arch
        self._mask_init = mask_words(arch, masks)
        super().__init__({
            **coordinate_signature(arch),
            "weights": Out(data.ArrayLayout(signed(arch.weight_bits), arch.lanes)),
            "mask_addr": In(index_bits(arch.words)),
            "mask_data": In(arch.lanes),
            "mask_we": In(1),
        })

    @property
    def latency(self) -> int:
        return 2 + hash_stages(self._arch)

    def elaborate(self, platform):
        m = Module()
        arch = self._arch

        m.submodules.source = source = weight_source(arch)
        m.d.comb += [
            source.layer.eq(self.layer),
            source.row.eq(self.row),
            source.group.eq(self.group),
        ]

        masks = memory.Memory(shape=unsigned(arch.lanes), depth=arch.words, init=self._mask_init)
        m.submodules[RDWR_DONT_CARE_PREFIX + "masks"] = masks
        mask_read = masks.read_port()
        mask_write = masks.write_port()
        m.d.comb += [
            mask_write.addr.eq(self.mask_addr),
            mask_write.data.eq(self.mask_data),
            mask_write.en.eq(self.mask_we),
        ]

        # The mask read is delayed by the hash pipeline so that both words arrive together.
        address = word_address(m, arch, self.layer, self.row, self.group)
        for stage in range(hash_stages(arch)):
            delayed = Signal.like(address, name=f"word_address_d{stage + 1}")
            m.d.sync += delayed.eq(address)
            address = delayed
        m.d.comb += mask_read.addr.eq(address)

        # The output register keeps the block RAM clock-to-output delay (5.8 ns on ECP5) out of
        # the accumulator adder that follows.
        for lane in range(arch.lanes):
            m.d.sync += self.weights[lane].eq(Mux(mask_read.data[lane], source.weights[lane], 0))
        return m
