"""The spike queue that makes the schedule event-driven."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layout import index_bits

__all__ = ["SpikeQueue", "first_set", "without_lowest"]


def first_set(vector: Value) -> tuple[Value, Value]:
    """Return ``(any, index)``: whether ``vector`` has a set bit, and the lowest set bit.

    The encoder is a balanced tree of 2:1 multiplexers, ``ceil(log2(len(vector)))`` levels
    deep, so that a 128-bit queue stays within a few logic levels. ``index`` is 0 when no bit
    is set.
    """
    vector = Value.cast(vector)
    size = 1 << max(0, (len(vector) - 1).bit_length())
    level = [(vector[i] if i < len(vector) else Const(0, 1), Const(0, 0)) for i in range(size)]
    while len(level) > 1:
        merged = []
        for (low_any, low_index), (high_any, high_index) in zip(level[0::2], level[1::2]):
            merged.append((low_any | high_any,
                           Mux(low_any, Cat(low_index, Const(0, 1)), Cat(high_index, Const(1, 1)))))
        level = merged
    found, index = level[0]
    return found, index


def without_lowest(vector: Value) -> Value:
    """Return ``vector`` with its lowest set bit cleared.

    Bit ``j`` survives when some bit below ``j`` is set; the prefix OR is built in
    ``ceil(log2(n))`` levels (Kogge-Stone) instead of an ``n``-long chain.
    """
    vector = Value.cast(vector)
    width = len(vector)
    prefix = vector
    shift = 1
    while shift < width:
        prefix = prefix | (prefix << shift)[:width]
        shift *= 2
    return vector & (prefix << 1)[:width]


class SpikeQueue(wiring.Component):
    """Spiking inputs of the layer being integrated, handed out in ascending order.

    ``load`` fills the queue with the input spikes ``S_0``; ``push`` adds the spikes of one
    group of lanes as the update phase produces them (groups must arrive in ascending order and
    the queue must be empty when a layer's first group arrives); ``pop`` moves ``head`` to the
    next spiking input. ``head`` is the lowest index not yet handed out, so the integrate phase
    issues inputs in ascending order as section "Accelerator schedule and cycle count" requires.

    Latency: 1 cycle. ``head`` and ``head_valid`` reflect a ``load``, ``push`` or ``pop`` from
    the next cycle on. At most one of the three may be high in a cycle.

    Parameters
    ----------
    width : int
        Positions in the queue: the widest of ``sizes[0]`` and ``G_k * lanes`` of hidden layers.
    lanes : int
        Spikes per ``push``; group ``g`` covers positions ``g * lanes .. g * lanes + lanes - 1``.

    Members
    -------
    load : In(1)
        Replace the contents by ``load_spikes``.
    load_spikes : In(width)
        Spike of input ``i`` in bit ``i``.
    push : In(1)
        Write ``push_spikes`` to the positions of group ``push_group``.
    push_group : In
        Group index.
    push_spikes : In(lanes)
        Spike of lane ``l`` in bit ``l``.
    pop : In(1)
        Hand out ``head`` and move to the next spiking input.
    head : Out(index_bits(width))
        Lowest spiking input not yet handed out; valid while ``head_valid``.
    head_valid : Out(1)
        The queue holds at least one spiking input.
    """

    def __init__(self, *, width: int, lanes: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(lanes, int) or not 1 <= lanes <= width:
            raise ValueError(f"lanes must be an integer in 1..{width} (width), not {lanes!r}")
        self._width = width
        self._lanes = lanes
        groups = -(-width // lanes)
        super().__init__({
            "load": In(1),
            "load_spikes": In(width),
            "push": In(1),
            "push_group": In(index_bits(groups)),
            "push_spikes": In(lanes),
            "pop": In(1),
            "head": Out(index_bits(width)),
            "head_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        width, lanes = self._width, self._lanes

        # Positions not yet handed out, head excluded.
        pending = Signal(width)

        with m.If(self.load):
            found, index = first_set(self.load_spikes)
            m.d.sync += [
                self.head_valid.eq(found),
                self.head.eq(index),
                pending.eq(without_lowest(self.load_spikes)),
            ]

        with m.Elif(self.pop):
            found, index = first_set(pending)
            m.d.sync += [
                self.head_valid.eq(found),
                self.head.eq(index),
                pending.eq(without_lowest(pending)),
            ]

        with m.Elif(self.push):
            # The first spiking group of a layer becomes the head; the rest wait in pending.
            found, lane_index = first_set(self.push_spikes)
            takes_head = ~self.head_valid & found
            stored = Mux(takes_head, without_lowest(self.push_spikes), self.push_spikes)
            with m.If(takes_head):
                m.d.sync += [
                    self.head_valid.eq(1),
                    self.head.eq(self.push_group * lanes + lane_index),
                ]
            for group in range(-(-width // lanes)):
                with m.If(self.push_group == group):
                    for lane in range(lanes):
                        position = group * lanes + lane
                        if position < width:
                            m.d.sync += pending[position].eq(stored[lane])
        return m
