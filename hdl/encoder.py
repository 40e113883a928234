"""Rate encoder: the input spikes ``S_0 = x > r(t)`` of the next timestep."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.schedule import ENCODE_CYCLES, drain_cycles
from sw_model.spec import ArchParams

from .layout import index_bits
from .synthesis import RDWR_DONT_CARE_PREFIX, is_ice40

__all__ = ["InputEncoder", "scan_width"]

# Widest memory word the serial encoder reads per cycle: one iCE40 block RAM port in its
# 256 x 16 configuration.
MAX_SCAN_BITS = 16


def _reversed_bits(value, bits: int):
    """Return the ``bits``-bit reversal of the low ``bits`` bits of ``value`` (zero-extended)."""
    padded = Cat(value, Signal(bits))[:bits]
    return Cat(*reversed([padded[b] for b in range(bits)]))


def scan_width(arch: ArchParams) -> int | None:
    """Return the samples per cycle of the serial encoder, or None when it cannot keep up.

    The serial encoder reads ``P`` samples per cycle and needs ``ceil(sizes[0] / P) + 1``
    cycles after ENCODE. The shortest timestep (no input spikes) lasts
    ``ENCODE + sum_k (G_k + DRAIN)`` cycles, so the smallest power of two ``P`` that fits that,
    with ``P * input_bits`` within one block RAM word, is chosen.
    """
    shortest_step = ENCODE_CYCLES + sum(arch.groups(k) + drain_cycles(arch)
                                        for k in range(arch.n_layers))
    samples = 1
    while samples * arch.input_bits <= MAX_SCAN_BITS and samples <= arch.n_in:
        if -(-arch.n_in // samples) + 1 <= shortest_step:
            return samples
        samples *= 2
    return None


class InputEncoder(wiring.Component):
    """Sample store and rate encoder (section "Input encoding").

    The sample beats are stored as they arrive. For ``t = 0`` the spikes are ``x_i != 0``
    (``r(0) = 0``) and are ready in the cycle after the last beat. For a later timestep,
    ``prepare`` in the ENCODE cycle of step ``t`` computes ``x_i > r(t + 1)`` for the next
    ENCODE.

    Two implementations share this interface. When :func:`scan_width` finds a width ``P``, the
    samples live in a block RAM of ``P`` samples per word and the comparisons run serially,
    ``P`` per cycle, which saves the ``sizes[0] * input_bits`` flip-flops and the comparators
    of a parallel encoder. Otherwise the samples live in flip-flops and all comparisons run in
    one cycle.

    Latency: ``spikes`` shows the result from ``ceil(sizes[0] / P) + 1`` cycles after
    ``prepare`` (serial) or 1 cycle after it (parallel); :func:`scan_width` guarantees that
    this is before the next ENCODE.

    Parameters
    ----------
    arch : ArchParams
        Selects ``sizes[0]``, ``input_bits`` and the timestep lengths.
    serial : bool or None
        Force one implementation; None chooses the serial one whenever it keeps up.

    Members
    -------
    beat : In(1)
        A sample beat is transferred in this cycle; beats come in input order.
    beat_last : In(1)
        The beat is the last of the sample.
    beat_data : In(input_bits)
        Input intensity of the beat.
    prepare : In(1)
        Start computing the spikes of timestep ``step + 1``.
    step : In(bits for timesteps)
        Current timestep ``t``, read with ``prepare``.
    stop : In(1)
        Abandon a computation in progress and restart the sample (abort).
    spikes : Out(sizes[0])
        Spike of input ``i`` in bit ``i``.
    """

    def __init__(self, arch: ArchParams, *, serial: bool | None = None):
        if not isinstance(arch, ArchParams):
            raise TypeError(f"arch must be an ArchParams, not {arch!r}")
        width = scan_width(arch)
        if serial and width is None:
            raise ValueError(f"the serial encoder cannot read {arch.n_in} samples within the "
                             f"shortest timestep of sizes {list(arch.sizes)}")
        self._arch = arch
        self._scan_width = width if serial is not False else None
        super().__init__({
            "beat": In(1),
            "beat_last": In(1),
            "beat_data": In(arch.input_bits),
            "prepare": In(1),
            "step": In(index_bits(arch.timesteps)),
            "stop": In(1),
            "spikes": Out(arch.n_in),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``prepare`` to the result in ``spikes``."""
        if self._scan_width is None:
            return 1
        return -(-self._arch.n_in // self._scan_width) + 1

    def elaborate(self, platform):
        if self._scan_width is None:
            return self._elaborate_parallel()
        return self._elaborate_serial(platform)

    def _elaborate_parallel(self):
        m = Module()
        arch = self._arch
        samples = [Signal(arch.input_bits, name=f"sample_{i}") for i in range(arch.n_in)]
        threshold = _reversed_bits(self.step + 1, arch.input_bits)

        with m.If(self.beat):
            m.d.sync += [samples[i].eq(samples[i + 1]) for i in range(arch.n_in - 1)]
            m.d.sync += samples[-1].eq(self.beat_data)
            with m.If(self.beat_last):
                shifted = samples[1:] + [self.beat_data]
                m.d.sync += self.spikes.eq(Cat(*[sample != 0 for sample in shifted]))
        with m.If(self.prepare):
            m.d.sync += self.spikes.eq(Cat(*[sample > threshold for sample in samples]))
        return m

    def _elaborate_serial(self, platform):
        m = Module()
        arch = self._arch
        per_word = self._scan_width
        words = -(-arch.n_in // per_word)
        bits = arch.input_bits

        # Block RAM saves iCE40 logic cells. On ECP5, distributed RAM is as cheap and keeps the
        # block RAM's 5.8 ns clock-to-output off the path into the window register.
        style = "block" if is_ice40(platform) else "distributed"
        store = memory.Memory(shape=unsigned(per_word * bits), depth=words, init=[],
                              attrs={"ram_style": style})
        m.submodules[RDWR_DONT_CARE_PREFIX + "samples"] = store
        write = store.write_port(granularity=bits)
        read = store.read_port()

        # One shift register serves both cases, and `spikes` shows its low sizes[0] bits. A beat
        # shifts x != 0 in at bit sizes[0] - 1, so that after the last beat input i sits in
        # bit i. The scan reads word w in the w-th cycle from `prepare`, compares its samples
        # with r(t + 1) in the next cycle and shifts the results in from the top. After the
        # last word, input i again sits in bit i, and the padding lanes of the last word lie
        # above sizes[0].
        window = Signal(words * per_word)
        m.d.comb += self.spikes.eq(window[:arch.n_in])

        index = Signal(range(arch.n_in))
        m.d.comb += [
            write.addr.eq(index // per_word),
            write.data.eq(self.beat_data.replicate(per_word)),
        ]
        with m.If(self.beat):
            m.d.comb += write.en.eq(Cat(*[index % per_word == lane for lane in range(per_word)]))
            m.d.sync += [
                index.eq(index + 1),
                window[:arch.n_in].eq(Cat(window[1:arch.n_in], self.beat_data != 0)),
            ]
            with m.If(self.beat_last):
                m.d.sync += index.eq(0)

        scanning = Signal()
        address = Signal(range(words + 1))
        comparing = Signal()
        threshold = Signal(bits)
        m.d.comb += read.addr.eq(address)
        with m.If(self.prepare):
            m.d.comb += read.addr.eq(0)
            m.d.sync += [
                scanning.eq(words > 1),
                address.eq(1),
                threshold.eq(_reversed_bits(self.step + 1, bits)),
            ]
        with m.Elif(scanning):
            m.d.sync += address.eq(address + 1)
            with m.If(address == words - 1):
                m.d.sync += scanning.eq(0)
        m.d.sync += comparing.eq(self.prepare | scanning)

        with m.If(comparing):
            lanes = [read.data[lane * bits:(lane + 1) * bits] > threshold
                     for lane in range(per_word)]
            m.d.sync += window.eq(Cat(window[per_word:], *lanes))

        with m.If(self.stop):
            m.d.sync += [scanning.eq(0), comparing.eq(0), index.eq(0)]
        return m
