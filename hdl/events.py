"""The spike queue that makes the schedule event-driven."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layout import index_bits
from .synthesis import is_ice40

__all__ = ["SpikeQueue", "first_set", "one_hot", "without_lowest"]


def first_set(m: Module, vector: Value, name: str = "first") -> tuple[Signal, Signal]:
    """Add a priority encoder to ``m`` and return ``(any, index)`` for ``vector``.

    ``any`` is high when a bit is set, and ``index`` is the lowest set bit (0 when none is). The
    encoder is a balanced tree of 2:1 multiplexers, ``ceil(log2(len(vector)))`` levels deep.
    Every tree node is a named signal, so the simulator and the netlist share each node instead
    of copying whole subtrees into every expression that uses it.
    """
    vector = Value.cast(vector)
    size = 1 << max(0, (len(vector) - 1).bit_length())
    level = [(vector[i] if i < len(vector) else Const(0, 1), Const(0, 0)) for i in range(size)]
    depth = 0
    while len(level) > 1:
        depth += 1
        merged = []
        pairs = zip(level[0::2], level[1::2])
        for node, ((low_any, low_index), (high_any, high_index)) in enumerate(pairs):
            found = Signal(name=f"{name}_any_{depth}_{node}")
            index = Signal(depth, name=f"{name}_index_{depth}_{node}")
            m.d.comb += [
                found.eq(low_any | high_any),
                index.eq(Mux(low_any, Cat(low_index, Const(0, 1)), Cat(high_index, Const(1, 1)))),
            ]
            merged.append((found, index))
        level = merged
    found, index = level[0]
    if depth == 0:
        found_signal, index_signal = Signal(name=f"{name}_any"), Signal(1, name=f"{name}_index")
        m.d.comb += found_signal.eq(found)
        return found_signal, index_signal
    return found, index


def one_hot(index: Value, width: int) -> Value:
    """Return the ``width``-bit vector with only bit ``index`` set (zero when out of range).

    The decoder ANDs two predecoded halves of the index, one LUT per output bit.
    """
    index = Value.cast(index)
    low_bits = min(len(index), 3)
    low = [index[:low_bits] == value for value in range(1 << low_bits)]
    high_index = index[low_bits:]
    bits = []
    for position in range(width):
        high_value = position >> low_bits
        term = low[position & ((1 << low_bits) - 1)]
        if len(high_index):
            term = term & (high_index == high_value)
        elif high_value:
            term = Const(0, 1)
        bits.append(term)
    return Cat(*bits)


def without_lowest(m: Module, vector: Value, name: str = "rest") -> Signal:
    """Add logic to ``m`` that clears the lowest set bit of ``vector``, and return the result.

    Bit ``j`` survives when some bit below ``j`` is set; the prefix OR is built in
    ``ceil(log2(n))`` levels (Kogge-Stone) instead of an ``n``-long chain.
    """
    vector = Value.cast(vector)
    width = len(vector)
    prefix = vector
    shift = 1
    while shift < width:
        level = Signal(width, name=f"{name}_prefix_{shift}")
        m.d.comb += level.eq(prefix | (prefix << shift)[:width])
        prefix = level
        shift *= 2
    result = Signal(width, name=name)
    m.d.comb += result.eq(vector & (prefix << 1)[:width])
    return result


def _or_all(values: list) -> Value:
    """Return the bitwise OR of ``values``."""
    result = Value.cast(values[0])
    for value in values[1:]:
        result = result | value
    return result


class SpikeQueue(wiring.Component):
    """Spiking inputs of the layer being integrated, handed out in ascending order.

    ``load`` fills the queue with the input spikes ``S_0``. ``push`` adds the spikes of one
    group of lanes as the update phase produces them. Groups must arrive in strictly ascending
    order, and the queue must be empty when the first group of a layer arrives. ``pop`` moves
    ``head`` to the next spiking input. ``head`` is the lowest index not yet handed out, so the
    integrate phase issues inputs in ascending order as section "Accelerator schedule and cycle
    count" requires.

    Latency: 1 cycle. ``head`` and ``head_valid`` reflect a ``load``, ``push`` or ``pop`` from
    the next cycle on. At most one of the three may be high in a cycle. With ``pop_gap = 2`` a
    ``pop`` must come at least two cycles after the previous ``load``, ``push`` or ``pop``.
    The schedule guarantees that when every layer has at least two groups.

    Parameters
    ----------
    width : int
        Positions in the queue: the widest of ``sizes[0]`` and ``G_k * lanes`` of hidden layers.
    lanes : int
        Spikes per ``push``; group ``g`` covers positions ``g * lanes .. g * lanes + lanes - 1``.
    pop_gap : int
        1 or 2: the fewest cycles from a ``load``, ``push`` or ``pop`` to the next ``pop``.
    parallel_load : bool or None
        How a ``load`` finds the head. True searches every chunk at once, which is shallower:
        the encoder finishes the spikes of timestep 0 only in the cycle of the load, and the
        serial search missed 100 MHz on ECP5. False selects the first chunk and then searches
        it, which took 124 fewer logic cells in an iCEBreaker board build of the digits
        configuration.
        None (the default) chooses False for iCE40 platforms and True otherwise, including
        simulation.

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
        The queue contains at least one spiking input.
    """

    def __init__(self, *, width: int, lanes: int, pop_gap: int = 1,
                 parallel_load: bool | None = None):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(lanes, int) or not 1 <= lanes <= width:
            raise ValueError(f"lanes must be an integer in 1..{width} (width), not {lanes!r}")
        if pop_gap not in (1, 2):
            raise ValueError(f"pop_gap must be 1 or 2, not {pop_gap!r}")
        self._width = width
        self._lanes = lanes
        self._pop_gap = pop_gap
        self._parallel_load = parallel_load
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
        chunks = -(-width // lanes)

        # The queue is kept in chunks of `lanes` positions, one per group. `data` stores the
        # spikes as loaded or pushed, and a pop never clears it. `flags` marks the chunks still
        # to visit after the current one, and `rest` the positions of the current chunk after
        # the head. A pop therefore searches `lanes` bits or `chunks` flags, never all `width`
        # positions, and no position needs its own clear logic.
        data = [Signal(lanes, name=f"data_{c}") for c in range(chunks)]
        flags = Signal(chunks)
        current = Signal(range(chunks))
        rest = Signal(lanes)

        def head_of(chunk, lane):
            if lanes & (lanes - 1):
                return chunk * lanes + lane
            return Cat(lane[:(lanes - 1).bit_length()], chunk)

        # Pop inside the current chunk.
        rest_found, rest_lane = first_set(m, rest, "rest_first")
        rest_after = without_lowest(m, rest, "rest_after")

        # Pop into the next chunk with spikes. With a pop gap of 2 the search over `flags` runs
        # in the cycle before the pop and is registered, which halves the logic depth of a pop.
        search_found, search_chunk = first_set(m, flags, "next_chunk")
        search_bits = Signal(lanes)
        m.d.comb += search_bits.eq(Array(data)[search_chunk])
        if self._pop_gap >= 2:
            next_found = Signal()
            next_chunk = Signal.like(search_chunk)
            next_bits = Signal(lanes)
            m.d.sync += [
                next_found.eq(search_found),
                next_chunk.eq(search_chunk),
                next_bits.eq(search_bits),
            ]
        else:
            next_found, next_chunk, next_bits = search_found, search_chunk, search_bits
        _, next_lane = first_set(m, next_bits, "next_first")
        next_after = without_lowest(m, next_bits, "next_after")

        # Load: the first chunk of the input spikes with a spike becomes current.
        load_chunks = [self.load_spikes[c * lanes:(c + 1) * lanes] for c in range(chunks)]
        load_flags = Signal(chunks)
        m.d.comb += load_flags.eq(Cat(*[bits.any() for bits in load_chunks]))
        load_found, load_chunk = first_set(m, load_flags, "load_chunk")
        load_later = Signal(chunks)     # load_flags without the first chunk
        load_lane = Signal(index_bits(lanes))
        load_after = Signal(lanes)
        parallel = self._parallel_load
        if parallel is None:
            parallel = not is_ice40(platform)
        if parallel:
            # The lane search and the clearing run in every chunk at once, beside the search
            # for the first chunk, and a one-hot AND-OR picks the results of that chunk.
            m.d.comb += load_later.eq(without_lowest(m, load_flags, "load_later"))
            load_first = Signal(chunks)
            m.d.comb += load_first.eq(load_flags & ~load_later)
            lane_terms, after_terms = [], []
            for c, bits in enumerate(load_chunks):
                _, lane = first_set(m, bits, f"load_first_{c}")
                after = without_lowest(m, bits, f"load_after_{c}")
                lane_terms.append(lane & load_first[c].replicate(len(lane)))
                after_terms.append(after & load_first[c].replicate(lanes))
            m.d.comb += [
                load_lane.eq(_or_all(lane_terms)),
                load_after.eq(_or_all(after_terms)),
            ]
        else:
            # The first chunk's bits are selected first, and one lane search follows.
            load_bits = Signal(lanes)
            m.d.comb += load_bits.eq(Array(load_chunks)[load_chunk])
            _, lane = first_set(m, load_bits, "load_first")
            m.d.comb += [
                load_later.eq(load_flags & ~one_hot(load_chunk, chunks)),
                load_lane.eq(lane),
                load_after.eq(without_lowest(m, load_bits, "load_after")),
            ]

        # Push: the first group of a layer with a spike becomes current.
        push_found, push_lane = first_set(m, self.push_spikes, "push_first")
        push_after = without_lowest(m, self.push_spikes, "push_after")

        with m.If(self.load):
            m.d.sync += [data[c].eq(load_chunks[c]) for c in range(chunks)]
            m.d.sync += [
                flags.eq(load_later),
                current.eq(load_chunk),
                rest.eq(load_after),
                self.head.eq(head_of(load_chunk, load_lane)),
                self.head_valid.eq(load_found),
            ]

        with m.Elif(self.pop):
            with m.If(rest_found):
                m.d.sync += [rest.eq(rest_after), self.head.eq(head_of(current, rest_lane))]
            with m.Elif(next_found):
                m.d.sync += [
                    flags.eq(flags & ~one_hot(next_chunk, chunks)),
                    current.eq(next_chunk),
                    rest.eq(next_after),
                    self.head.eq(head_of(next_chunk, next_lane)),
                ]
            with m.Else():
                m.d.sync += self.head_valid.eq(0)

        with m.Elif(self.push):
            # The spikes come from the LIF comparison late in the cycle, so they only select
            # register inputs here, and no register enable depends on them. A push into an
            # empty queue rewrites the head even without a spike, and head_valid stays low then.
            # Flags of groups not yet pushed in this layer are 0, so a flag takes the group's
            # spike indicator as it is.
            for c in range(chunks):
                with m.If(self.push_group == c):
                    m.d.sync += data[c].eq(self.push_spikes)
                    with m.If(self.head_valid):
                        m.d.sync += flags[c].eq(push_found)
            with m.If(~self.head_valid):
                m.d.sync += [
                    current.eq(self.push_group),
                    rest.eq(push_after),
                    self.head.eq(head_of(self.push_group, push_lane)),
                    self.head_valid.eq(push_found),
                ]
        return m
