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

    For each lane: ``a = v - (v >> leak_shift)`` (``a = v`` for shift 0, ``v`` taken as 0 when
    ``first_step``), ``u = clamp(a + syn)`` to the membrane range, spike ``s = u >= threshold``,
    and ``v' = u - threshold`` (reset ``subtract``) or 0 (reset ``zero``) when ``s``, else ``u``.

    Latency: 0 cycles (combinational).

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
    membrane : In(ArrayLayout(signed(V), lanes))
        Stored membranes ``v``.
    synapse : In(ArrayLayout(signed(synapse_bits), lanes))
        Synaptic sums ``syn`` of this timestep.
    threshold : In(V - 1)
        Threshold ``theta``, ``1 .. 2**(V-1) - 1``.
    first_step : In(1)
        The timestep is ``t = 0``: stored membranes are taken as 0.
    membrane_next : Out(ArrayLayout(signed(V), lanes))
        Membranes after reset ``v'``.
    spikes : Out(lanes)
        Spike of lane ``l`` in bit ``l``.
    """

    def __init__(self, *, lanes: int, membrane_bits: int, synapse_bits: int, leak_shift: int,
                 reset: str):
        _check_positive("lanes", lanes)
        _check_positive("synapse_bits", synapse_bits)
        if not isinstance(membrane_bits, int) or membrane_bits < 2:
            raise ValueError(f"membrane_bits must be an integer of at least 2, not {membrane_bits!r}")
        if not isinstance(leak_shift, int) or not 0 <= leak_shift < membrane_bits:
            raise ValueError(f"leak_shift must lie in 0..{membrane_bits - 1}, not {leak_shift!r}")
        if reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, not {reset!r}")
        self._membrane_bits = membrane_bits
        self._leak_shift = leak_shift
        self._reset = reset
        super().__init__({
            "membrane": In(data.ArrayLayout(signed(membrane_bits), lanes)),
            "synapse": In(data.ArrayLayout(signed(synapse_bits), lanes)),
            "threshold": In(membrane_bits - 1),
            "first_step": In(1),
            "membrane_next": Out(data.ArrayLayout(signed(membrane_bits), lanes)),
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

        for lane in range(len(self.spikes)):
            stored = Mux(self.first_step, 0, self.membrane[lane])
            if self._leak_shift:
                leaked = stored - (stored >> self._leak_shift)
            else:
                leaked = stored
            total = Signal(signed(max(bits, len(self.synapse[lane])) + 2),
                           name=f"total_{lane}")
            m.d.comb += total.eq(leaked + self.synapse[lane])

            integrated = Signal(signed(bits), name=f"integrated_{lane}")
            with m.If(total > high):
                m.d.comb += integrated.eq(high)
            with m.Elif(total < low):
                m.d.comb += integrated.eq(low)
            with m.Else():
                m.d.comb += integrated.eq(total)

            spike = integrated >= self.threshold
            m.d.comb += self.spikes[lane].eq(spike)
            if self._reset == "subtract":
                after_spike = integrated - self.threshold
            else:
                after_spike = 0
            m.d.comb += self.membrane_next[lane].eq(Mux(spike, after_spike, integrated))
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
