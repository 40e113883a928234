"""Run-time behaviour of the generated core: registers, mask updates, back-pressure, abort, reset.

Each test runs one cocotb test of ``verif.tb_core`` on cached builds of two small
configurations, one with the ROM weight source and one with the hash source. Every sample the
tests send is still checked against the golden model, trace included.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sw_model.model import save_model
from verif.configs import MATRIX, sample_set
from verif.suite import prepare, run, selected_simulator

CONFIGS = {config.name: config for config in MATRIX}
# A ROM core with 3 lanes over 7 and 3 neurons, and a one-lane hash core with spike counts.
RUNTIME_CONFIGS = ("h1_narrow_saturating", "h1_one_lane_two_classes")


def _run(name: str, testcase: str, tmp_path, count: int = 12, **case):
    simulator, skip = selected_simulator()
    if skip:
        pytest.skip(skip)
    config = CONFIGS[name]
    core = prepare(config)
    x = sample_set(config, count, seed=7)
    outcome = run(core, testcase, tmp_path, x, simulator=simulator, seed=config.seed, **case)
    assert outcome.passed, outcome.describe()
    return outcome


def _checked(outcome) -> int:
    """Return the number of samples that completed and matched the golden model."""
    return sum(1 for s in outcome.samples if s["result_ok"] and s["trace_ok"])


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_registers_after_reset(name, tmp_path):
    outcome = _run(name, "registers_after_reset", tmp_path)
    assert outcome.results["problems"] == []
    assert _checked(outcome) == 3


@pytest.mark.parametrize("name", RUNTIME_CONFIGS + ("h1_rom_subtract_margin",))
def test_mask_update_between_inferences(name, tmp_path):
    config = CONFIGS[name]
    model = prepare(config).model
    rng = np.random.default_rng(config.seed + 99)
    other = [(rng.random(m.shape) < 0.5).astype(np.uint8) for m in model.masks]
    path = save_model(replace(model, masks=other), tmp_path / "other_mask.npz")
    outcome = _run(name, "mask_update_between_inferences", tmp_path, extra_models={"mask": str(path)})
    assert outcome.results["problems"] == []
    assert _checked(outcome) == 4 * 12


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_writes_during_inference_rejected(name, tmp_path):
    outcome = _run(name, "writes_during_inference_rejected", tmp_path)
    assert outcome.results["problems"] == []
    assert _checked(outcome) == 3 + 12


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_result_backpressure(name, tmp_path):
    outcome = _run(name, "result_backpressure", tmp_path, count=30)
    assert outcome.results["problems"] == []
    assert _checked(outcome) == 31


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_back_to_back(name, tmp_path):
    outcome = _run(name, "back_to_back", tmp_path, count=40)
    assert outcome.results["idle_ready_cycles"] == []
    assert _checked(outcome) == 40


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_abort_mid_inference(name, tmp_path):
    outcome = _run(name, "abort_mid_inference", tmp_path)
    aborted = [s for s in outcome.results["samples"] if s["aborted"]]
    assert outcome.results["problems"] == []
    assert aborted, "no sample was long enough to abort"
    assert all(s["trace_ok"] for s in aborted)
    assert _checked(outcome) == len(aborted) + 12


@pytest.mark.parametrize("name", RUNTIME_CONFIGS)
def test_reset_mid_inference(name, tmp_path):
    outcome = _run(name, "reset_mid_inference", tmp_path)
    assert outcome.results["problems"] == []
    assert _checked(outcome) == 3 + 12
