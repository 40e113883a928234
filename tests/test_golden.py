"""Golden model edge cases, each against a value worked out from the spec by hand."""

from dataclasses import replace

import numpy as np
import pytest

from sw_model import golden, schedule
from sw_model.model import FORMAT_VERSION, Model, ModelFileError, load_model, save_model
from sw_model.spec import (
    ArchParams,
    EarlyStopParams,
    confidence_limit,
    exp_table,
    layer_weights,
    rate_threshold,
    scale_table,
)


def make_model(arch: ArchParams, *, density=1.0, thresholds=None, es=None, seed=0) -> Model:
    rng = np.random.default_rng(seed)
    masks = [(rng.random((arch.sizes[k], arch.sizes[k + 1])) < density).astype(np.uint8)
             for k in range(arch.n_layers)]
    if thresholds is None:
        thresholds = [3] * arch.spiking_layers
    es = es or EarlyStopParams(rule="off", budget=arch.timesteps)
    return Model(arch=arch, masks=masks, thresholds=thresholds, early_stop=es)


def find_seed(arch: ArchParams, layer: int, predicate) -> int:
    """Return the first weight seed whose weights of ``layer`` satisfy ``predicate``."""
    for seed in range(10_000):
        if predicate(layer_weights(replace(arch, weight_seed=seed), layer)):
            return seed
    raise AssertionError("no weight seed satisfies the predicate")


def idle_step_cycles(arch: ArchParams) -> int:
    """Cycles of a timestep in which no input spikes (spec: ENCODE + sum_k (G_k + DRAIN))."""
    return schedule.ENCODE_CYCLES + sum(arch.groups(k) + schedule.drain_cycles(arch)
                                        for k in range(arch.n_layers))


SMALL = ArchParams(sizes=(4, 6, 3), timesteps=8, lanes=3, membrane_bits=8)


def test_rate_threshold_is_bit_reversal():
    assert [rate_threshold(t, 4) for t in range(4)] == [0, 8, 4, 12]
    assert rate_threshold(16, 4) == 0
    counts = sum(np.arange(16) > rate_threshold(t, 4) for t in range(16))
    assert counts.tolist() == list(range(16))


def test_all_zero_input_runs_to_budget():
    model = make_model(SMALL, es=EarlyStopParams(rule="margin", margin=1, budget=8))
    result = golden.run(model, np.zeros((3, 4), dtype=np.int64))
    assert result.steps.tolist() == [8, 8, 8]
    assert result.classes.tolist() == [0, 0, 0]
    decide = schedule.decide_cycles(SMALL, "margin")
    expected = schedule.START_CYCLES + 8 * (idle_step_cycles(SMALL) + decide)
    assert result.cycles.tolist() == [expected] * 3
    assert result.bound_cycles.tolist() == [8 * (2 + 1)] * 3


def test_zero_mask_layer_silences_outputs():
    model = make_model(SMALL)
    model.masks[0][:] = 0
    x = np.full((2, 4), 15)
    result = golden.run(model, x, trace=True)
    assert not result.trace.spikes[0].any()
    assert (result.trace.outputs == 0).all()
    assert result.classes.tolist() == [0, 0]
    # Inputs still spike, so the first layer integrates them: 4 inputs x 2 groups per step.
    assert result.bound_cycles[0] > 8 * 3


def single_synapse_arch(**changes) -> ArchParams:
    base = ArchParams(sizes=(1, 1, 2), timesteps=4, lanes=1, weight_bits=8, weight_sigma=40.0,
                      membrane_bits=4, leak_shift=0)
    return replace(base, **changes)


def test_membrane_saturates_at_lower_limit():
    arch = single_synapse_arch()
    arch = replace(arch, weight_seed=find_seed(arch, 0, lambda w: w[0, 0] <= -9))
    model = make_model(arch, thresholds=[7])
    result = golden.run(model, np.array([[15]]), trace=True)
    # Input 15 spikes at every step with r(t) < 15; -9 or less saturates a 4-bit membrane at -8.
    assert result.trace.membrane[0][:, 0, 0].tolist() == [-8, -8, -8, -8]


def test_membrane_saturates_at_upper_limit():
    arch = single_synapse_arch()
    arch = replace(arch, weight_seed=find_seed(arch, 0, lambda w: w[0, 0] >= 12))
    model = make_model(arch, thresholds=[7])
    result = golden.run(model, np.array([[15]]), trace=True)
    # u = clamp(w) = 7 reaches the threshold; reset by subtraction leaves 0, not w - 7 > 4.
    assert result.trace.membrane[0][:, 0, 0].tolist() == [0, 0, 0, 0]
    assert result.trace.spikes[0][:, 0, 0].tolist() == [True] * 4


def test_threshold_one_fires_on_any_positive_input():
    arch = single_synapse_arch(membrane_bits=12, reset="zero")
    arch = replace(arch, weight_seed=find_seed(arch, 0, lambda w: w[0, 0] == 1))
    model = make_model(arch, thresholds=[1])
    result = golden.run(model, np.array([[15], [0]]), trace=True)
    assert result.trace.spikes[0][:, 0, 0].tolist() == [True] * 4
    assert result.trace.spikes[0][:, 1, 0].tolist() == [False] * 4


def test_maximum_threshold_fires_only_at_saturation():
    arch = single_synapse_arch(membrane_bits=8)
    arch = replace(arch, weight_seed=find_seed(arch, 0, lambda w: 40 <= w[0, 0] <= 60))
    w = int(layer_weights(arch, 0)[0, 0])
    model = make_model(arch, thresholds=[arch.membrane_max])
    result = golden.run(model, np.array([[15]]), trace=True)
    # Without leak the membrane climbs by w per step until it saturates at 127 and fires.
    expected, v = [], 0
    for _ in range(4):
        u = min(v + w, 127)
        expected.append(u == 127)
        v = 0 if u == 127 else u
    assert result.trace.spikes[0][:, 0, 0].tolist() == expected
    assert any(expected)


def test_budget_of_one():
    model = make_model(SMALL, es=EarlyStopParams(rule="margin", margin=5, budget=1))
    result = golden.run(model, np.zeros((1, 4), dtype=np.int64))
    assert result.steps.tolist() == [1]
    expected = schedule.START_CYCLES + idle_step_cycles(SMALL) + schedule.decide_cycles(SMALL, "margin")
    assert result.cycles.tolist() == [expected]


def test_early_stop_at_first_allowed_step():
    es = EarlyStopParams(rule="margin", margin=0, budget=8, min_steps=3)
    model = make_model(SMALL, es=es)
    result = golden.run(model, np.random.default_rng(1).integers(0, 16, (5, 4)), trace=True)
    assert result.steps.tolist() == [3] * 5
    assert result.trace.checked[:, 0].tolist() == [False, False, True, True, True, True, True, True]


def test_output_tie_resolves_to_lowest_index():
    arch = ArchParams(sizes=(1, 1, 4), timesteps=2, lanes=1, weight_bits=6, weight_sigma=8.0,
                      membrane_bits=8, leak_shift=0)
    for seed in range(10_000):
        candidate = replace(arch, weight_seed=seed)
        w0, w1 = layer_weights(candidate, 0), layer_weights(candidate, 1)
        if w0[0, 0] > 0 and w1[0, 2] == w1[0, 3] > 0:
            arch = candidate
            break
    model = make_model(arch, thresholds=[1])
    model.masks[1][:] = 0
    model.masks[1][0, 2] = model.masks[1][0, 3] = 1
    result = golden.run(model, np.array([[15]]), trace=True)
    # The hidden neuron fires at both steps, so classes 2 and 3 tie at 2 * w and 2 wins.
    w = layer_weights(arch, 1)[0, 2]
    assert result.trace.outputs[-1, 0].tolist() == [0, 0, 2 * w, 2 * w]
    assert result.classes.tolist() == [2]


def test_inputs_outside_range_are_rejected():
    model = make_model(SMALL)
    with pytest.raises(ValueError, match=r"input value 16 at index \(0, 2\) lies outside 0..15"):
        golden.run(model, np.array([[0, 1, 16, 3]]))
    with pytest.raises(ValueError, match="input value -1"):
        golden.run(model, np.array([[0, -1, 0, 3]]))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        golden.run(model, np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="must be integers"):
        golden.run(model, np.zeros((2, 4)))


def test_top_two_tie_gives_zero_margin():
    top1, top2 = golden.top_two(np.array([[3, 7, 7, 1], [5, 1, 2, 0]]))
    assert top1.tolist() == [1, 0]
    assert top2.tolist() == [7, 2]


def test_confidence_rule_matches_hand_computation():
    arch = ArchParams(sizes=(4, 4, 3), lanes=2)
    es = EarlyStopParams(rule="confidence", budget=16, scale=scale_table(1.0, 16),
                         conf_limit=confidence_limit(0.9))
    o = np.array([[20, 4, 0], [5, 4, 0]])
    fires = golden.rule_fires(arch, es, o, n=2)
    exp = exp_table()
    # n = 2, alpha = 1: SCALE[2] = 1024; k = (d * 1024) >> 8 = 4 d, capped at 127.
    sum_first = exp[min(16 * 4, 127)] + exp[min(20 * 4, 127)]
    sum_second = exp[4] + exp[20]
    limit = confidence_limit(0.9)
    assert limit == 7281
    assert fires.tolist() == [sum_first <= limit, sum_second <= limit] == [True, False]


def test_model_file_round_trip(tmp_path):
    model = make_model(SMALL, density=0.5)
    path = save_model(model, tmp_path / "m.npz")
    loaded = load_model(path)
    assert loaded.arch == model.arch
    for a, b in zip(loaded.masks, model.masks):
        assert np.array_equal(a, b)
    assert loaded.thresholds == model.thresholds


def test_model_file_wrong_version_rejected(tmp_path):
    model = make_model(SMALL)
    path = save_model(model, tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["format_version"] = np.array(FORMAT_VERSION + 1)
    np.savez(tmp_path / "v2.npz", **arrays)
    with pytest.raises(ModelFileError, match="format version 2"):
        load_model(tmp_path / "v2.npz")


def test_model_file_bad_mask_shape_rejected(tmp_path):
    model = make_model(SMALL)
    path = save_model(model, tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["mask_1"] = np.ones((6, 4), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"mask_1 has shape \(6, 4\), expected \(6, 3\)"):
        load_model(tmp_path / "bad.npz")


def test_model_file_missing_key_rejected(tmp_path):
    model = make_model(SMALL)
    path = save_model(model, tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "thresholds"}
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(ModelFileError, match="has no key 'thresholds'"):
        load_model(tmp_path / "missing.npz")


def test_cycles_follow_schedule_on_random_inputs():
    arch = ArchParams(sizes=(8, 10, 3), timesteps=6, lanes=3, weight_source="hash")
    model = make_model(arch, density=0.6, thresholds=[4])
    x = np.random.default_rng(3).integers(0, 16, (20, 8))
    result = golden.run(model, x, trace=True)
    tr = result.trace
    for b in range(20):
        expected = schedule.START_CYCLES
        bound = 0
        for t in range(result.steps[b]):
            counts = [tr.inputs[t, b].sum(), tr.spikes[0][t, b].sum()]
            work = sum(int(c) * arch.groups(k) + arch.groups(k) for k, c in enumerate(counts))
            expected += schedule.ENCODE_CYCLES + work + 2 * schedule.drain_cycles(arch)
            bound += work
        expected += schedule.decide_cycles(arch, "off")
        assert result.cycles[b] == expected
        assert result.bound_cycles[b] == bound
