"""The checker catches what it should: unit cases, a corrupted expectation, a plain-script run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from sw_model.model import save_model
from verif.checker import InOrderChecker, ObservedResult, TraceEvent
from verif.configs import MATRIX, sample_set
from verif.reference import expected_samples
from verif.registers import mask_words, masks_from_words
from verif.suite import ROOT, build_root, prepare, run, selected_simulator

CONFIGS = {config.name: config for config in MATRIX}
SMALL = "h1_narrow_saturating"


def _record(name: str = SMALL, count: int = 4):
    config = CONFIGS[name]
    model = config.model()
    x = sample_set(config, count)
    return config, model, x, expected_samples(model, x)


def _events(record, lanes: int) -> list[TraceEvent]:
    """Return the trace the reference predicts for one sample, as a core would show it."""
    events = []
    cycle = 100
    for t in range(record.steps):
        for k, values in enumerate(record.values):
            for g in range(values.shape[1] // lanes):
                part = slice(g * lanes, (g + 1) * lanes)
                spikes = sum(int(s) << lane for lane, s in enumerate(record.spikes[k][t, part]))
                events.append(TraceEvent(cycle, t, k, g, spikes,
                                         tuple(int(v) for v in values[t, part])))
                cycle += 1
    return events


def _result(record, *, valid_cycle: int = 1000, **changes) -> ObservedResult:
    fields = dict(valid_cycle=valid_cycle, accept_cycle=valid_cycle, klass=record.klass,
                  steps=record.steps, cycles=record.cycles, scores=tuple(record.scores.tolist()))
    fields.update(changes)
    return ObservedResult(**fields)


def _check(record, events, result, lanes: int) -> InOrderChecker:
    checker = InOrderChecker()
    checker.expect(record)
    checker.sample_sent(record.index, result.valid_cycle - record.cycles)
    for event in events:
        checker.trace_event(event)
    checker.result(result)
    return checker


def test_checker_accepts_reference_trace():
    config, _, _, records = _record()
    for record in records:
        checker = _check(record, _events(record, config.arch.lanes), _result(record),
                         config.arch.lanes)
        assert checker.first_mismatch() is None
        assert checker.events_checked == record.trace_events()


def test_checker_names_membrane_mismatch():
    config, _, _, records = _record()
    record = records[2]
    lanes = config.arch.lanes
    events = _events(record, lanes)
    bad = events[4]
    wrong = tuple(v + (lane == 1) for lane, v in enumerate(bad.values))
    events[4] = replace(bad, values=wrong)
    mismatch = _check(record, events, _result(record), lanes).first_mismatch()
    assert (mismatch.sample, mismatch.timestep, mismatch.layer) == (2, bad.step, bad.layer)
    assert mismatch.neuron == bad.group * lanes + 1
    assert mismatch.expected == bad.values[1]
    assert mismatch.actual == bad.values[1] + 1
    assert "sample 2" in str(mismatch)
    assert f"neuron {mismatch.neuron}" in str(mismatch)


def test_checker_names_spike_mismatch():
    config, _, _, records = _record()
    record = records[3]
    events = _events(record, config.arch.lanes)
    events[0] = replace(events[0], spikes=events[0].spikes ^ 1)
    mismatch = _check(record, events, _result(record), config.arch.lanes).first_mismatch()
    assert (mismatch.quantity, mismatch.timestep, mismatch.layer, mismatch.neuron) == \
        ("spike", 0, 0, 0)


@pytest.mark.parametrize("field, quantity", [("klass", "class"), ("steps", "steps"),
                                             ("cycles", "out_cycles")])
def test_checker_names_result_mismatch(field, quantity):
    config, _, _, records = _record()
    record = records[2]
    result = _result(record, **{field: getattr(record, field) + 1})
    checker = _check(record, _events(record, config.arch.lanes), result, config.arch.lanes)
    mismatch = checker.first_mismatch()
    assert mismatch.quantity == quantity
    assert mismatch.actual == getattr(record, field) + 1
    assert checker.reports[0].result_ok is False


def test_checker_names_late_result():
    config, _, _, records = _record()
    record = records[2]
    checker = InOrderChecker()
    checker.expect(record)
    checker.sample_sent(record.index, 500)
    checker.result(_result(record, valid_cycle=500 + record.cycles + 1))
    mismatch = checker.first_mismatch()
    assert mismatch.quantity.startswith("result cycle")
    assert (mismatch.expected, mismatch.actual) == (record.cycles, record.cycles + 1)


def test_checker_names_missing_trace_events():
    config, _, _, records = _record()
    record = records[2]
    events = _events(record, config.arch.lanes)[:-1]
    mismatch = _check(record, events, _result(record), config.arch.lanes).first_mismatch()
    assert mismatch.quantity == "trace events"
    assert (mismatch.expected, mismatch.actual) == (len(events) + 1, len(events))


def test_checker_abort_checks_prefix():
    config, _, _, records = _record()
    record = records[2]
    events = _events(record, config.arch.lanes)
    checker = InOrderChecker()
    checker.expect(record)
    for event in events[:3]:
        checker.trace_event(event)
    report = checker.abort()
    assert report.aborted and report.trace_ok
    assert checker.first_mismatch() is None


def test_checker_flags_result_without_sample():
    config, _, _, records = _record()
    checker = InOrderChecker()
    checker.result(_result(records[0]))
    assert checker.first_mismatch().quantity == "result"


def test_mask_words_round_trip():
    for config in MATRIX:
        model = config.model()
        words = mask_words(config.arch, model.masks)
        assert len(words) == config.arch.words
        assert all(0 <= w < 1 << config.arch.lanes for w in words)
        for original, unpacked in zip(model.masks, masks_from_words(config.arch, words)):
            assert np.array_equal(original, unpacked)


def _first_difference(good, bad) -> tuple:
    """Return (sample, timestep, layer, neuron) of the first trace difference, in trace order."""
    for a, b in zip(good, bad):
        for t in range(min(a.steps, b.steps)):
            for k in range(len(a.values)):
                diff = np.flatnonzero((a.values[k][t] != b.values[k][t]) |
                                      (a.spikes[k][t] != b.spikes[k][t]))
                if len(diff):
                    return a.index, t, k, int(diff[0])
        if (a.steps, a.klass, a.cycles) != (b.steps, b.klass, b.cycles):
            return a.index, None, None, None
    return None


def test_corrupted_expectation_is_caught(tmp_path):
    simulator, skip = selected_simulator()
    if skip:
        pytest.skip(skip)
    config = CONFIGS[SMALL]
    core = prepare(config)
    model = core.model
    # The reference predicts with threshold + 1: the design is right, the expectation is not.
    corrupted = replace(model, thresholds=[t + 1 for t in model.thresholds])
    reference = save_model(corrupted, tmp_path / "corrupted.npz")
    x = sample_set(config, 20)
    where = _first_difference(expected_samples(model, x), expected_samples(corrupted, x))
    assert where is not None, "the corruption changes nothing the checker could see"

    outcome = run(core, "samples_match_golden", tmp_path / "run", x, simulator=simulator,
                  reference_model=str(reference))
    assert not outcome.passed
    first = outcome.results["first_mismatch"]
    assert (first["sample"], first["timestep"], first["layer"], first["neuron"]) == where
    assert outcome.waveform is not None and outcome.waveform.stat().st_size > 0
    message = outcome.describe()
    assert first["text"] in message
    assert str(outcome.waveform) in message


def test_verify_samples_from_script(tmp_path):
    simulator, skip = selected_simulator()
    if skip:
        pytest.skip(skip)
    config = CONFIGS["h1_one_lane_two_classes"]
    model_path = save_model(config.model(), tmp_path / "model.npz")
    x = sample_set(config, 12, seed=3)
    np.save(tmp_path / "x.npy", x)

    script = (
        "import json, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from sw_model.model import load_model\n"
        "from verif.regression import verify_samples\n"
        "out = Path(sys.argv[1])\n"
        "outcome = verify_samples(load_model(out / 'model.npz'), np.load(out / 'x.npy'),\n"
        "                         out / 'verify', simulator=sys.argv[2])\n"
        "print(json.dumps(outcome.to_dict()))\n")
    env = dict(os.environ, VERIF_BUILD_ROOT=str(build_root()))
    env.pop("PYTEST_CURRENT_TEST", None)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), simulator], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    from sw_model import golden
    expected = golden.run(config.model(), x)
    assert outcome["samples_checked"] == 12
    assert outcome["mismatches"] == 0, outcome["first_mismatch"]
    assert outcome["classes"] == expected.classes.tolist()
    assert outcome["steps"] == expected.steps.tolist()
    assert outcome["cycles"] == expected.cycles.tolist()
    assert outcome["simulator"] == simulator
    assert outcome["waveform"] is None
