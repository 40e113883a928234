"""The early-stop unit: top-1 search and the margin and confidence rules (section "Early stop")."""

from __future__ import annotations

import enum

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.spec import EXP_LEN, EXP_ONE_SHIFT, SCALE_SHIFT, ArchParams, exp_table

from .layout import index_bits

__all__ = ["EarlyStop", "Rule", "SCALE_BITS", "CONF_LIMIT_BITS"]

SCALE_BITS = 16       # SCALE[n] is a 16-bit unsigned register value
CONF_LIMIT_BITS = 24  # conf_limit is a 24-bit unsigned register value


class Rule(enum.IntEnum):
    """Encoding of the ``ES_RULE`` register."""

    OFF = 0
    MARGIN = 1
    CONFIDENCE = 2


class _Phase(enum.IntEnum):
    IDLE = 0
    SCAN = 1
    PASS = 2
    FLUSH = 3
    DECIDE = 4


class EarlyStop(wiring.Component):
    """Serial early-stop decision over the output accumulators after a timestep.

    A first pass reads ``o_0 .. o_{n_out-1}``, one per cycle, and finds ``top1`` (the lowest
    index of the maximum) and ``top2`` (the maximum over the other classes). The margin rule
    fires when ``o_top1 - top2 >= margin``. The confidence rule adds a second pass that feeds
    ``d_j = o_top1 - o_j`` through a multiplier and the ``EXP`` table: it fires when the sum over
    ``j != top1`` of ``EXP[min((d_j * scale) >> 8, 127)]`` is at most ``conf_limit``. The rule
    ``off`` never fires; the scan still finds the class.

    Latency: with ``start`` high in cycle ``c``, ``done`` is high for one cycle, in cycle
    ``c + n_out + 1`` for the rules ``off`` and ``margin`` and ``c + 2 * n_out + 3`` for
    ``confidence``. These are the ``DECIDE`` cycles of ``sw_model.schedule.decide_cycles``.
    ``fire`` is valid while ``done`` is high; ``top1`` from then until the next ``start``. The
    settings and ``scores`` must hold from ``start`` to ``done``.

    Parameters
    ----------
    arch : ArchParams
        Selects ``n_out`` and ``output_bits``.

    Members
    -------
    start : In(1)
        Begin a decision.
    rule : In(2)
        A :class:`Rule` value; 3 behaves as ``off``.
    margin : In(output_bits)
        Margin threshold, unsigned.
    scale : In(16)
        ``SCALE[n]`` of the timestep just finished.
    conf_limit : In(24)
        Bound on the sum of ``EXP`` terms.
    scores : In(ArrayLayout(signed(output_bits), n_out))
        Output accumulators ``o_j``.
    done : Out(1)
        Last cycle of the decision.
    fire : Out(1)
        The rule fires (valid with ``done``).
    top1 : Out(bits for n_out)
        Class with the highest score, lowest index on ties.
    """

    def __init__(self, arch: ArchParams):
        if not isinstance(arch, ArchParams):
            raise TypeError(f"arch must be an ArchParams, not {arch!r}")
        self._arch = arch
        super().__init__({
            "start": In(1),
            "rule": In(2),
            "margin": In(arch.output_bits),
            "scale": In(SCALE_BITS),
            "conf_limit": In(CONF_LIMIT_BITS),
            "scores": In(data.ArrayLayout(signed(arch.output_bits), arch.n_out)),
            "done": Out(1),
            "fire": Out(1),
            "top1": Out(index_bits(arch.n_out)),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self._arch
        n_out = arch.n_out
        bits = arch.output_bits
        score_min = -(1 << (bits - 1))

        phase = Signal(range(len(_Phase)), init=_Phase.IDLE)
        index = Signal(range(n_out))
        flush = Signal(range(3))
        # The class read in a cycle comes from a register loaded one cycle ahead, which keeps the
        # n_out-to-1 multiplexer out of the comparisons. Class 0 is read directly: the spike-count
        # readout finishes its last update just before the first scan cycle.
        score = Signal(signed(bits))
        fetched = Signal(signed(bits))

        best = Signal(signed(bits))
        second = Signal(signed(bits))
        # The margin rule compares best with second + margin, kept up to date during the scan,
        # so that the decision cycle has one comparison and no subtraction before it.
        plus_margin = Signal(signed(bits + 2))
        best_margin = Signal(signed(bits + 2))
        second_margin = Signal(signed(bits + 2))
        m.d.comb += plus_margin.eq(score + self.margin)

        scanning = phase == _Phase.SCAN
        last_scan = scanning & (index == n_out - 1)
        new_best = score > best
        first_scan = Signal()  # registered copy of `scanning & (index == 0)`
        m.d.sync += first_scan.eq(self.start)
        m.d.comb += score.eq(Mux(first_scan, self.scores[0], fetched))
        m.d.sync += fetched.eq(self.scores[Mux(last_scan, 1, index + 1)])

        # Confidence pipeline. Class j is issued in cycle p; the registers hold its distance
        # (end of p), its product (p + 1), its table entry (p + 2, read from the table) and
        # `remaining` = conf_limit minus the terms so far (p + 3). Class 0 is issued in the
        # last scan cycle, with the last scanned class forwarded into best and top1, so the
        # rule reads one sign bit in cycle c + 2 * n_out + 3.
        confidence = self.rule == Rule.CONFIDENCE
        issuing = Signal()
        pass_top1 = Signal.like(self.top1)
        # Both candidate distances of class 0 are computed beside the comparison that chooses
        # between them, all from fixed classes, so the stage has one carry chain in its path.
        last_score = self.scores[n_out - 1]
        last_is_best = Signal()
        from_best = Signal(signed(bits + 1))
        from_last = Signal(signed(bits + 1))
        raw_distance = Signal(signed(bits + 1))
        m.d.comb += [
            last_is_best.eq(last_score > best),
            from_best.eq(best - Mux(last_scan, self.scores[0], score)),
            from_last.eq(last_score - self.scores[0]),
            raw_distance.eq(Mux(last_scan & last_is_best, from_last, from_best)),
        ]
        with m.If(last_scan):
            m.d.comb += [
                issuing.eq(confidence),
                pass_top1.eq(Mux(last_is_best, n_out - 1, self.top1)),
            ]
        with m.Else():
            m.d.comb += [
                issuing.eq(phase == _Phase.PASS),
                pass_top1.eq(self.top1),
            ]
        pass_index = Mux(last_scan, 0, index)

        distance_bits = min(bits + 1, SCALE_BITS)
        distance = Signal(distance_bits)
        distance_valid = Signal()
        product = Signal(distance_bits + SCALE_BITS)
        product_valid = Signal()
        term_valid = Signal()
        term_is_one = Signal()
        sum_bits = ((n_out - 1) << EXP_ONE_SHIFT).bit_length()
        remaining = Signal(signed(max(sum_bits, CONF_LIMIT_BITS) + 2))

        if bits + 1 > SCALE_BITS:
            # Clamping keeps k: for d >= 2**16 and scale >= 1 both d and 2**16 - 1 give
            # (d * scale) >> 8 >= 255 > 127, and scale = 0 gives 0 for both.
            clamped = Mux(raw_distance[SCALE_BITS:] != 0, (1 << SCALE_BITS) - 1, raw_distance)
        else:
            clamped = raw_distance

        # EXP[0] = 2**16 needs a 17th bit that no other entry uses: the table stores 16 bits
        # and term_is_one supplies EXP[0]. On iCE40 the table takes a block RAM. Elsewhere it is
        # built from LUTs with a registered output, because the 5.8 ns clock-to-output of an
        # ECP5 block RAM leaves too little of a 10 ns cycle for the subtraction after it.
        table_style = "block" if _is_ice40(platform) else "logic"
        exp_rom = memory.Memory(shape=unsigned(EXP_ONE_SHIFT), depth=EXP_LEN,
                                init=[min(int(v), (1 << EXP_ONE_SHIFT) - 1) for v in exp_table()],
                                attrs={"ram_style": table_style})
        m.submodules.exp_rom = exp_rom
        exp_read = exp_rom.read_port()

        table_index = Signal(range(EXP_LEN))
        shifted = product[SCALE_SHIFT:]
        table_bits = (EXP_LEN - 1).bit_length()
        saturated = (shifted[table_bits:] != 0) | (shifted[:table_bits] == EXP_LEN - 1)
        m.d.comb += [
            table_index.eq(Mux(saturated, EXP_LEN - 1, shifted)),
            exp_read.addr.eq(table_index),
        ]
        term = Mux(term_valid, Mux(term_is_one, 1 << EXP_ONE_SHIFT, exp_read.data), 0)

        # The sign of `remaining` is registered beside it, so that the decision cycle reads a
        # flip-flop and not the end of a carry chain.
        remaining_next = Signal.like(remaining)
        remaining_nonnegative = Signal()
        m.d.comb += remaining_next.eq(Mux(self.start, self.conf_limit, remaining - term))
        m.d.sync += [
            distance.eq(clamped),
            distance_valid.eq(issuing & (pass_index != pass_top1)),
            product.eq(distance * self.scale),
            product_valid.eq(distance_valid),
            term_valid.eq(product_valid),
            term_is_one.eq(table_index == 0),
            remaining.eq(remaining_next),
            remaining_nonnegative.eq(~remaining_next[-1]),
        ]

        # `margin_fires` equals `best >= second_margin` after every scan cycle: each cycle that
        # changes best or second_margin compares the values they take. So the decision reads a
        # flip-flop, because the core's phase logic follows `fire`, and a comparison there left
        # too little of a 10 ns cycle on ECP5.
        margin_fires = Signal()

        with m.Switch(phase):
            with m.Case(_Phase.IDLE):
                pass

            with m.Case(_Phase.SCAN):
                with m.If(first_scan):
                    m.d.sync += [
                        best.eq(score), best_margin.eq(plus_margin), self.top1.eq(0),
                        second.eq(score_min), second_margin.eq(score_min + self.margin),
                        margin_fires.eq(score >= score_min + self.margin),
                    ]
                with m.Elif(new_best):
                    m.d.sync += [
                        best.eq(score), best_margin.eq(plus_margin), self.top1.eq(index),
                        second.eq(best), second_margin.eq(best_margin),
                        margin_fires.eq(score >= best_margin),
                    ]
                with m.Elif(score > second):
                    m.d.sync += [
                        second.eq(score), second_margin.eq(plus_margin),
                        margin_fires.eq(best >= plus_margin),
                    ]
                m.d.sync += index.eq(index + 1)
                with m.If(index == n_out - 1):
                    with m.If(confidence):
                        m.d.sync += [index.eq(1), phase.eq(_Phase.PASS)]
                    with m.Else():
                        m.d.sync += [index.eq(0), phase.eq(_Phase.DECIDE)]

            with m.Case(_Phase.PASS):
                m.d.sync += index.eq(index + 1)
                with m.If(index == n_out - 1):
                    m.d.sync += [index.eq(0), flush.eq(0), phase.eq(_Phase.FLUSH)]

            with m.Case(_Phase.FLUSH):
                # Three cycles for the product, table and subtraction of the last class.
                m.d.sync += flush.eq(flush + 1)
                with m.If(flush == 2):
                    m.d.sync += phase.eq(_Phase.DECIDE)

            with m.Case(_Phase.DECIDE):
                m.d.comb += self.done.eq(1)
                with m.Switch(self.rule):
                    with m.Case(Rule.MARGIN):
                        m.d.comb += self.fire.eq(margin_fires)
                    with m.Case(Rule.CONFIDENCE):
                        m.d.comb += self.fire.eq(remaining_nonnegative)
                m.d.sync += phase.eq(_Phase.IDLE)

        with m.If(self.start):
            m.d.sync += [index.eq(0), phase.eq(_Phase.SCAN)]
        return m


def _is_ice40(platform) -> bool:
    """Return whether ``platform`` builds for an iCE40 device (False for simulation)."""
    return str(getattr(platform, "device", "")).lower().startswith("ice40")
