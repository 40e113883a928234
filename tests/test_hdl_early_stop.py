"""Early-stop unit in the Amaranth simulator against hand-worked cases and sw_model.golden."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.early_stop import EarlyStop, Rule
from sw_model import golden
from sw_model.schedule import decide_cycles
from sw_model.spec import ArchParams, EarlyStopParams, confidence_limit, exp_table, scale_table

RULE_NAMES = {Rule.OFF: "off", Rule.MARGIN: "margin", Rule.CONFIDENCE: "confidence"}


def decide(arch, cases):
    """Run one decision per case (rule, scores, margin, scale, conf_limit).

    Return ``(cycles from start to done, fire, top1)`` per case.
    """
    dut = EarlyStop(arch)
    results = []

    async def testbench(ctx):
        for rule, scores, margin, scale, conf_limit in cases:
            ctx.set(dut.rule, rule)
            ctx.set(dut.margin, margin)
            ctx.set(dut.scale, scale)
            ctx.set(dut.conf_limit, conf_limit)
            for j, score in enumerate(scores):
                ctx.set(dut.scores[j], int(score))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
                assert cycles < 100, "done never rose"
            results.append((cycles, ctx.get(dut.fire), ctx.get(dut.top1)))
            await ctx.tick()
            assert ctx.get(dut.done) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


def test_margin_hand_worked():
    arch = ArchParams(sizes=(8, 4), lanes=2)
    cases = [
        (Rule.MARGIN, [3, 7, 7, 1], 0, 0, 0),    # tie for first: top1 = 1, top1 - top2 = 0
        (Rule.MARGIN, [3, 7, 7, 1], 1, 0, 0),
        (Rule.MARGIN, [-9, -2, -6, -4], 2, 0, 0),  # top1 = 1, top2 = -4, margin 2 reached
        (Rule.MARGIN, [-9, -2, -6, -4], 3, 0, 0),
        (Rule.OFF, [0, 0, 5, 0], 0, 0, 0),       # off never fires but finds the class
    ]
    results = decide(arch, cases)
    assert results == [(5, 1, 1), (5, 0, 1), (5, 1, 1), (5, 0, 1), (5, 0, 2)]


def test_confidence_hand_worked():
    # Scores [10, 2, 6], SCALE = 64: d = (8, 4), k = (8 * 64) >> 8 = 2 and 1,
    # EXP[2] = round(65536 * exp(-0.25)) = 51039, EXP[1] = 57835, sum 108874.
    arch = ArchParams(sizes=(8, 3), lanes=1)
    cases = [(Rule.CONFIDENCE, [10, 2, 6], 0, 64, 108874),
             (Rule.CONFIDENCE, [10, 2, 6], 0, 64, 108873),
             (Rule.CONFIDENCE, [4, 4, 4], 0, 1000, 2 * 65536)]  # ties give EXP[0] = 2**16 each
    results = decide(arch, cases)
    assert results == [(9, 1, 0), (9, 0, 0), (9, 1, 0)]


@pytest.mark.parametrize("sizes,lanes", [((20, 10), 8), ((255, 3), 3)])
def test_rules_random_against_golden(sizes, lanes):
    # (255, 3) with 8-bit weights makes output_bits 24: distances above 2**16 take the clamp.
    arch = ArchParams(sizes=sizes, lanes=lanes, weight_bits=8, timesteps=255)
    rng = np.random.default_rng(sizes[0])
    bound = 1 << (arch.output_bits - 1)
    cases, references = [], []
    for index in range(12):
        spread = int(rng.choice([4, 300, bound]))
        scores = rng.integers(max(-bound, -spread), min(bound, spread), arch.n_out)
        if index % 4 == 0:
            scores[rng.integers(arch.n_out)] = scores.max()  # force a tie for first
        n = int(rng.integers(1, 9))
        alpha = float(rng.choice([0.05, 1.0, 40.0]))
        p = float(rng.choice([0.5, 0.9, 0.99]))
        rule = [Rule.MARGIN, Rule.CONFIDENCE][index % 2]
        es = EarlyStopParams(rule=RULE_NAMES[rule], budget=8, margin=int(rng.integers(0, 50)),
                             scale=scale_table(alpha, 8), conf_limit=confidence_limit(p))
        cases.append((rule, scores, es.margin, es.scale[n - 1], es.conf_limit))
        references.append((es, scores, n))

    for (rule, scores, *_), result, (es, _, n) in zip(cases, decide(arch, cases), references):
        top1, _ = golden.top_two(scores[None, :].astype(np.int64))
        fires = golden.rule_fires(arch, es, scores[None, :].astype(np.int64), n)
        assert result == (decide_cycles(arch, es.rule), int(fires[0]), int(top1[0])), scores


@pytest.mark.parametrize("scores", [[5, 1, 9], [7, 1, 7], [9, 3, 9], [2, 2, 2]])
def test_confidence_last_class_forwarded(scores):
    # Class 0 enters the confidence pass in the cycle that scans the last class, so a last
    # class that becomes top-1 there must already count. The limits sit at the boundary.
    arch = ArchParams(sizes=(8, 3), lanes=1)
    o = np.array([scores], dtype=np.int64)
    es = EarlyStopParams(rule="confidence", budget=1, scale=(100,), conf_limit=0)
    top1, _ = golden.top_two(o)
    d = o[0, top1[0]] - o[0]
    terms = exp_table()[np.minimum((d * 100) >> 8, 127)]
    terms[top1[0]] = 0
    total = int(terms.sum())
    cases = [(Rule.CONFIDENCE, scores, 0, 100, total), (Rule.CONFIDENCE, scores, 0, 100, total - 1)]
    results = decide(arch, cases)
    assert results == [(9, 1, int(top1[0])), (9, 0, int(top1[0]))]
    for limit, (_, fire, _) in zip([total, total - 1], results):
        reference = EarlyStopParams(**{**es.to_dict(), "scale": (100,), "conf_limit": limit})
        assert fire == int(golden.rule_fires(arch, reference, o, 1)[0])
