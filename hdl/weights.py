"""Weight sources: one ``lanes``-wide word of fixed random weights per cycle.

Both sources follow section "Random weights" of docs/architecture.md and return, for a synapse
group ``(layer, row, group)``, the weights ``w[row, group * lanes + l]`` for ``l = 0 .. lanes-1``,
with 0 in lanes past the last neuron of the layer. They differ in cost: :class:`RomWeights`
spends block RAM and no logic, :class:`HashWeights` spends logic and no weight storage.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.schedule import HASH_STAGES
from sw_model.spec import HASH_ROUNDS, ArchParams, seed_key, weight_tables

from .layout import index_bits, weight_words

__all__ = ["RomWeights", "HashWeights", "weight_source", "word_address", "MIX32_STEPS"]

# One round of mix32 as (operation, shift) pairs, section "Random weights".
MIX32_STEPS = (("add_shl", 10), ("xor_shr", 6), ("add_shl", 3), ("xor_shr", 11), ("add_shl", 15))


def coordinate_signature(arch: ArchParams) -> dict:
    """Return the input members shared by the weight sources and the crossbar."""
    return {
        "layer": In(index_bits(arch.n_layers)),
        "row": In(index_bits(max(arch.sizes[:-1]))),
        "group": In(index_bits(max(arch.groups(k) for k in range(arch.n_layers)))),
    }


def word_address(m: Module, arch: ArchParams, layer, row, group) -> Signal:
    """Add logic computing the memory word ``base_k + row * G_k + group`` and return it.

    Section "Memory layout of weights and masks". ``layer``, ``row`` and ``group`` are values of
    the current cycle; the result is combinational.
    """
    address = Signal(index_bits(arch.words), name="word_address")
    with m.Switch(layer):
        for k in range(arch.n_layers):
            with m.Case(k):
                m.d.comb += address.eq(arch.word_base(k) + row * arch.groups(k) + group)
    return address


def _check_arch(arch: ArchParams) -> None:
    if not isinstance(arch, ArchParams):
        raise TypeError(f"arch must be an ArchParams, not {arch!r}")


class RomWeights(wiring.Component):
    """Weight source reading a block RAM initialised with the generated weights.

    The ROM contains ``arch.words`` words in the layout of section "Memory layout of weights and
    masks"; lane ``l`` of a word occupies bits ``[l*W, (l+1)*W)`` in two's complement.

    Latency: 1 cycle. Coordinates presented in cycle ``c`` give their weights in cycle ``c + 1``.

    Parameters
    ----------
    arch : ArchParams
        Network shape and weight generation parameters.

    Members
    -------
    layer, row, group : In
        Synapse group ``(k, i, g)``.
    weights : Out(ArrayLayout(signed(weight_bits), lanes))
        Weights of lanes ``l``, one cycle after the coordinates.
    """

    latency = 1

    def __init__(self, arch: ArchParams):
        _check_arch(arch)
        self._arch = arch
        super().__init__({
            **coordinate_signature(arch),
            "weights": Out(data.ArrayLayout(signed(arch.weight_bits), arch.lanes)),
        })

    @property
    def arch(self) -> ArchParams:
        return self._arch

    def elaborate(self, platform):
        m = Module()
        arch = self._arch

        rom = memory.Memory(shape=unsigned(arch.lanes * arch.weight_bits), depth=arch.words,
                            init=weight_words(arch))
        m.submodules.rom = rom
        read = rom.read_port()

        m.d.comb += [
            read.addr.eq(word_address(m, arch, self.layer, self.row, self.group)),
            self.weights.eq(read.data),
        ]
        return m


def _mix_stage(value, steps):
    """Apply a slice of mix32 steps to a 32-bit value, each modulo 2**32."""
    for operation, shift in steps:
        if operation == "add_shl":
            value = (value + (value << shift))[:32]
        else:
            value = value ^ (value >> shift)
    return value


def _split_mix32(stages: int) -> list[list[tuple[str, int]]]:
    """Split the mix32 steps into ``stages`` slices with an equal number of adders each.

    Adders set the delay (a carry chain each); an XOR stays with the adder before it.
    """
    steps = list(MIX32_STEPS) * HASH_ROUNDS
    adders = sum(1 for operation, _ in steps if operation == "add_shl")
    per_stage = -(-adders // stages)
    slices = [[]]
    count = 0
    for step in steps:
        if step[0] == "add_shl" and count == per_stage:
            slices.append([])
            count = 0
        slices[-1].append(step)
        count += step[0] == "add_shl"
    while len(slices) < stages:
        slices.append([])
    return slices


class HashWeights(wiring.Component):
    """Weight source computing every weight from the seed on the fly, storing no weights.

    For each lane it forms ``key = k << 28 | i << 14 | j`` with ``j = g * lanes + l``, computes
    ``h = mix32(key ^ S)`` in ``HASH_STAGES`` pipeline stages and looks up
    ``POS[h >> 24] - NEG[(h >> 16) & 0xFF]`` in 256-entry tables with a registered read.

    Latency: ``1 + HASH_STAGES`` cycles (4 with ``HASH_STAGES = 3``). A new group may enter every
    cycle.

    Parameters
    ----------
    arch : ArchParams
        Network shape and weight generation parameters.

    Members
    -------
    layer, row, group : In
        Synapse group ``(k, i, g)``.
    weights : Out(ArrayLayout(signed(weight_bits), lanes))
        Weights of lanes ``l``, ``1 + HASH_STAGES`` cycles after the coordinates.
    """

    latency = 1 + HASH_STAGES

    def __init__(self, arch: ArchParams):
        _check_arch(arch)
        self._arch = arch
        super().__init__({
            **coordinate_signature(arch),
            "weights": Out(data.ArrayLayout(signed(arch.weight_bits), arch.lanes)),
        })

    @property
    def arch(self) -> ArchParams:
        return self._arch

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        lanes = arch.lanes
        pos, neg = weight_tables(arch)
        use_neg = bool(neg.any())
        seed = Const(seed_key(arch.weight_seed), 32)

        # Lanes past the last neuron of the layer give weight 0: a lane is valid when
        # g * lanes + l < sizes[k + 1].
        lane_valid = Signal(lanes)
        with m.Switch(self.layer):
            for k in range(arch.n_layers):
                with m.Case(k):
                    for lane in range(lanes):
                        m.d.comb += lane_valid[lane].eq(
                            self.group * lanes + lane < arch.sizes[k + 1])

        stage_steps = _split_mix32(HASH_STAGES)
        valid = lane_valid
        hashes = []
        for lane in range(lanes):
            column = (self.group * lanes + lane)[:14]
            key = (self.layer << 28) | (self.row << 14) | column
            hashes.append(key[:32] ^ seed)

        for stage, steps in enumerate(stage_steps):
            registered = []
            for lane, value in enumerate(hashes):
                hash_reg = Signal(32, name=f"hash_s{stage}_l{lane}")
                m.d.sync += hash_reg.eq(_mix_stage(value, steps))
                registered.append(hash_reg)
            hashes = registered
            valid_reg = Signal(lanes, name=f"lane_valid_s{stage}")
            m.d.sync += valid_reg.eq(valid)
            valid = valid_reg

        # The table read registers the last hash, adding the final cycle of latency.
        valid_out = Signal(lanes)
        m.d.sync += valid_out.eq(valid)
        for lane, value in enumerate(hashes):
            pos_rom = memory.Memory(shape=signed(arch.weight_bits), depth=256,
                                    init=[int(v) for v in pos])
            m.submodules[f"pos_rom_{lane}"] = pos_rom
            pos_read = pos_rom.read_port()
            m.d.comb += pos_read.addr.eq(value[24:32])
            weight = pos_read.data
            if use_neg:
                neg_rom = memory.Memory(shape=signed(arch.weight_bits), depth=256,
                                        init=[int(v) for v in neg])
                m.submodules[f"neg_rom_{lane}"] = neg_rom
                neg_read = neg_rom.read_port()
                m.d.comb += neg_read.addr.eq(value[16:24])
                weight = pos_read.data - neg_read.data
            with m.If(valid_out[lane]):
                m.d.comb += self.weights[lane].eq(weight)
        return m


def weight_source(arch: ArchParams) -> RomWeights | HashWeights:
    """Return the weight source selected by ``arch.weight_source``."""
    if arch.weight_source == "rom":
        return RomWeights(arch)
    if arch.weight_source == "hash":
        return HashWeights(arch)
    raise ValueError(f"weight_source must be 'rom' or 'hash', not {arch.weight_source!r}")
