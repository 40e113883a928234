"""Neuron arithmetic: the lanes-wide LIF update and the output accumulators."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw_model.spec import RESET_MODES, ArchParams

from .layout import index_bits

__all__ = ["LifUpdate", "OutputAccumulator"]


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


class LifUpdate(wiring.Component):
    """Leaky integrate-and-fire update of ``lanes`` neurons (section "One timestep", step 2).

    For each lane: ``u = clamp(a + syn)`` to the membrane range, spike ``s = u >= threshold``,
    and ``v' = u - threshold`` (reset ``subtract``) or 0 (reset ``zero``) when ``s``, else ``u``.
    The unit stores the leaked potential ``a = v - (v >> leak_shift)`` instead of ``v``, so it
    reads ``leaked`` and returns ``leaked_next = v' - (v' >> leak_shift)`` for the next
    timestep. ``leaked`` is taken as 0 when ``first_step``, which equals leaking a zero ``v``.

    Latency: inputs presented in cycle ``c`` give ``membrane_next`` and ``spikes`` in cycle
    ``c + 1`` and ``leaked_next`` in cycle ``c + 2``; a new group may enter every cycle. The
    first cycle adds ``syn``, the second subtracts the threshold and saturates, and the third
    leaks, so that each cycle has one carry chain.

    Parameters
    ----------
    lanes : int
        Neurons updated together.
    membrane_bits : int
        Width ``V`` of a signed membrane potential.
    synapse_bits : int
        Width of a signed synaptic sum.
    leak_shift : int
        Leak shift ``L``, ``0 .. V-1``; 0 means no leak.
    reset : str
        ``"subtract"`` or ``"zero"``.

    Members
    -------
    leaked : In(ArrayLayout(signed(V), lanes))
        Leaked potentials ``a`` stored by the previous timestep.
    synapse : In(ArrayLayout(signed(synapse_bits), lanes))
        Synaptic sums ``syn`` of this timestep.
    threshold : In(V - 1)
        Threshold ``theta``, ``1 .. 2**(V-1) - 1``.
    first_step : In(1)
        The timestep is ``t = 0``: ``leaked`` is taken as 0.
    membrane_next : Out(ArrayLayout(signed(V), lanes))
        Membranes after reset ``v'``.
    leaked_next : Out(ArrayLayout(signed(V), lanes))
        ``v' - (v' >> leak_shift)``, to store for the next timestep, one cycle after
        ``membrane_next``.
    spikes : Out(lanes)
        Spike of lane ``l`` in bit ``l``.
    """

    def __init__(self, *, lanes: int, membrane_bits: int, synapse_bits: int, leak_shift: int,
                 reset: str):
        _check_positive("lanes", lanes)
        _check_positive("synapse_bits", synapse_bits)
        if not isinstance(membrane_bits, int) or membrane_bits < 2:
            raise ValueError(f"membrane_bits must be an integer of at least 2, "
                             f"not {membrane_bits!r}")
        if not isinstance(leak_shift, int) or not 0 <= leak_shift < membrane_bits:
            raise ValueError(f"leak_shift must lie in 0..{membrane_bits - 1}, not {leak_shift!r}")
        if reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, not {reset!r}")
        self._membrane_bits = membrane_bits
        self._leak_shift = leak_shift
        self._reset = reset
        super().__init__({
            "leaked": In(data.ArrayLayout(signed(membrane_bits), lanes)),
            "synapse": In(data.ArrayLayout(signed(synapse_bits), lanes)),
            "threshold": In(membrane_bits - 1),
            "first_step": In(1),
            "membrane_next": Out(data.ArrayLayout(signed(membrane_bits), lanes)),
            "leaked_next": Out(data.ArrayLayout(signed(membrane_bits), lanes)),
            "spikes": Out(lanes),
        })

    @classmethod
    def for_arch(cls, arch: ArchParams, synapse_bits: int) -> "LifUpdate":
        """Return the update unit of ``arch`` with accumulator lanes of ``synapse_bits``."""
        return cls(lanes=arch.lanes, membrane_bits=arch.membrane_bits, synapse_bits=synapse_bits,
                   leak_shift=arch.leak_shift, reset=arch.reset)

    def elaborate(self, platform):
        m = Module()
        bits = self._membrane_bits
        low = -(1 << (bits - 1))
        high = (1 << (bits - 1)) - 1

        # A saturated u = high always fires (theta <= high) and leaves high - theta.
        threshold = Signal.like(self.threshold)
        headroom = Signal(bits)
        m.d.sync += [threshold.eq(self.threshold), headroom.eq(high - self.threshold)]

        for lane in range(len(self.spikes)):
            # Cycle 1: a + syn, wide enough not to overflow.
            total = Signal(signed(max(bits, len(self.synapse[lane])) + 1), name=f"total_{lane}")
            m.d.sync += total.eq(Mux(self.first_step, 0, self.leaked[lane]) + self.synapse[lane])

            # Cycle 2. The sum fits the membrane when its bits from V-1 up are all equal. That is
            # a LUT test, where two comparisons against the limits would need two carry chains.
            upper = total[bits - 1:]
            fits = (upper == 0) | (upper == (1 << len(upper)) - 1)
            too_high = ~fits & ~total[-1]
            too_low = ~fits & total[-1]
            # Without a spike the sum either fits or saturated low (saturating high always fires).
            integrated = Mux(fits, total[:bits], low)

            # One subtractor gives both the spike (u - theta >= 0) and the subtract reset.
            above = Signal(signed(len(total) + 1), name=f"above_{lane}")
            m.d.comb += above.eq(total - threshold)
            spike = too_high | (~too_low & ~above[-1])
            if self._reset == "subtract":
                after_spike = Mux(too_high, headroom, above[:bits])
            else:
                after_spike = 0
            membrane = Signal(signed(bits), name=f"membrane_{lane}")
            m.d.comb += [
                membrane.eq(Mux(spike, after_spike, integrated)),
                self.spikes[lane].eq(spike),
                self.membrane_next[lane].eq(membrane),
            ]

            # Cycle 3: leak.
            settled = Signal(signed(bits), name=f"settled_{lane}")
            m.d.sync += settled.eq(membrane)
            if self._leak_shift:
                m.d.comb += self.leaked_next[lane].eq(settled - (settled >> self._leak_shift))
            else:
                m.d.comb += self.leaked_next[lane].eq(settled)
        return m


class OutputAccumulator(wiring.Component):
    """Output accumulators ``o_j`` of the last layer (section "One timestep", step 3).

    An update adds the ``lanes`` values of one group to ``o[group * lanes + l]``: synaptic sums
    for the integrating readout, spikes (0 or 1) for the spike-count readout. Lanes past
    ``n_out`` are dropped.

    Latency: 1 cycle. ``scores`` shows an update or a clear from the cycle after it.

    Parameters
    ----------
    arch : ArchParams
        Selects ``n_out``, ``lanes``, ``readout`` and ``output_bits``.
    synapse_bits : int
        Width of one synaptic-sum lane at ``synapse``.

    Members
    -------
    clear : In(1)
        Set every ``o_j`` to 0; takes precedence over ``update``.
    update : In(1)
        Add the lanes of ``group``.
    group : In
        Group of the last layer, ``0 .. G_{K-1} - 1``.
    synapse : In(ArrayLayout(signed(synapse_bits), lanes))
        Synaptic sums, used by the integrating readout.
    spikes : In(lanes)
        Spikes, used by the spike-count readout.
    scores : Out(ArrayLayout(signed(output_bits), n_out))
        Accumulators ``o_j``, class 0 first.
    """

    def __init__(self, arch: ArchParams, synapse_bits: int):
        if not isinstance(arch, ArchParams):
            raise TypeError(f"arch must be an ArchParams, not {arch!r}")
        _check_positive("synapse_bits", synapse_bits)
        self._arch = arch
        groups = arch.groups(arch.n_layers - 1)
        super().__init__({
            "clear": In(1),
            "update": In(1),
            "group": In(index_bits(groups)),
            "synapse": In(data.ArrayLayout(signed(synapse_bits), arch.lanes)),
            "spikes": In(arch.lanes),
            "scores": Out(data.ArrayLayout(signed(arch.output_bits), arch.n_out)),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self._arch

        for j in range(arch.n_out):
            group, lane = divmod(j, arch.lanes)
            score = Signal(signed(arch.output_bits), name=f"score_{j}")
            if arch.readout == "integrate":
                addend = self.synapse[lane]
            else:
                addend = self.spikes[lane].as_unsigned()
            with m.If(self.clear):
                m.d.sync += score.eq(0)
            with m.Elif(self.update & (self.group == group)):
                m.d.sync += score.eq(score + addend)
            m.d.comb += self.scores[j].eq(score)
        return m
