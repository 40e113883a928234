"""RTL against the golden model on the configuration matrix and on random configurations.

Each configuration is generated and built once. One simulation then checks every sample: the
spikes and membranes of every layer at every timestep, the early-stop step, the class and the
cycle of the result. The early-stop registers are reprogrammed part way through, so each build
runs more than one rule. Select the simulator with SIM=verilator (default) or SIM=icarus.
"""

from __future__ import annotations

import pytest

from sw_model import golden
from sw_model.spec import EarlyStopParams
from verif.configs import MATRIX, RANDOM_SEEDS, random_config, sample_set, with_rule
from verif.reference import expected_samples
from verif.suite import prepare, run, selected_simulator

MATRIX_SAMPLES = 80
RANDOM_SAMPLES = 60
SLOW_RANDOM_SEEDS = tuple(range(1000, 1020))
SLOW_SAMPLES = 400


def _simulator() -> str:
    simulator, skip = selected_simulator()
    if skip:
        pytest.skip(skip)
    return simulator


def _groups(config, count: int) -> list[dict]:
    """Return the early-stop programme: reset values first, then each extra rule in turn."""
    rules = config.extra_rules
    size = count // (len(rules) + 1)
    groups = [{"start": 0, "es": None}]
    for n, rule in enumerate(rules, start=1):
        groups.append({"start": n * size, "es": with_rule(config, rule).to_dict()})
    return groups


def _expected_events(config, model, x, groups) -> int:
    total = 0
    bounds = [g["start"] for g in groups] + [len(x)]
    for group, start, stop in zip(groups, bounds, bounds[1:]):
        es = None if group["es"] is None else EarlyStopParams(**group["es"])
        total += sum(r.trace_events() for r in expected_samples(model, x[start:stop], es))
    return total


def _check_config(config, count: int, tmp_path, *, gap: float, ready: float) -> None:
    simulator = _simulator()
    core = prepare(config)
    x = sample_set(config, count)
    groups = _groups(config, count)
    outcome = run(core, "samples_match_golden", tmp_path, x, simulator=simulator,
                  es_groups=groups, gap_probability=gap, ready_probability=ready,
                  seed=config.seed)
    assert outcome.passed, outcome.describe()
    assert len(outcome.samples) == count
    assert outcome.results["events_checked"] == _expected_events(config, core.model, x, groups)


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.name)
def test_matrix_config(config, tmp_path):
    # Every other configuration runs with idle beats and random back-pressure on the result.
    stressed = MATRIX.index(config) % 2 == 1
    _check_config(config, MATRIX_SAMPLES, tmp_path, gap=0.2 if stressed else 0.0,
                  ready=0.5 if stressed else 1.0)


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_config(seed, tmp_path):
    _check_config(random_config(seed), RANDOM_SAMPLES, tmp_path, gap=0.1, ready=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_RANDOM_SEEDS)
def test_random_config_sweep(seed, tmp_path):
    _check_config(random_config(seed, max_cycles=3000), SLOW_SAMPLES, tmp_path, gap=0.1,
                  ready=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.name)
def test_matrix_config_long(config, tmp_path):
    _check_config(config, SLOW_SAMPLES, tmp_path, gap=0.0, ready=1.0)


def test_sample_sets_hold_edge_cases():
    for config in MATRIX:
        x = sample_set(config, 10)
        top = (1 << config.arch.input_bits) - 1
        assert (x[0] == 0).all(), config.name
        assert (x[1] == top).all(), config.name
        assert golden.check_inputs(config.arch, x).shape == (10, config.arch.n_in)
