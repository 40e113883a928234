"""Early-stop calibration: the simulated decision equals the golden model's, and the chosen
settings keep the accuracy within the allowed drop."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sw_model import golden
from sw_model.calibrate import (
    calibrate,
    calibrate_confidence,
    calibrate_early_stop,
    calibrate_margin,
    simulate_early_stop,
)
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams, confidence_limit, scale_table
from sw_model.torch_model import TopologyNet

ARCH = ArchParams(sizes=(12, 16, 4), timesteps=8, input_bits=3, membrane_bits=8, leak_shift=2,
                  lanes=4)


@pytest.fixture(scope="module")
def network():
    """A random-mask model, its inputs, full-budget accumulators and made-up labels."""
    net = TopologyNet(ARCH, [3], 0.6, generator=torch.Generator().manual_seed(2))
    model = Model(arch=ARCH, masks=net.masks(), thresholds=[3],
                  early_stop=EarlyStopParams(rule="off", budget=ARCH.timesteps))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 8, size=(200, ARCH.n_in)).astype(np.uint8)
    outputs = net.infer(x)
    # Labels agree with the final class for most samples, so accuracy is high but not perfect.
    labels = outputs[-1].argmax(axis=1)
    flip = rng.random(len(labels)) < 0.2
    labels[flip] = rng.integers(0, ARCH.n_out, size=int(flip.sum()))
    return model, x, outputs, labels


SETTINGS = [
    EarlyStopParams(rule="off", budget=8),
    EarlyStopParams(rule="margin", budget=8, min_steps=1, margin=4),
    EarlyStopParams(rule="margin", budget=6, min_steps=3, margin=10),
    EarlyStopParams(rule="confidence", budget=8, min_steps=2, alpha=4.0, confidence=0.9,
                    scale=scale_table(4.0, 8), conf_limit=confidence_limit(0.9)),
]


@pytest.mark.parametrize("es", SETTINGS, ids=lambda es: f"{es.rule}-{es.budget}-{es.min_steps}")
def test_simulated_stop_matches_golden(network, es):
    model, x, outputs, _ = network
    classes, steps = simulate_early_stop(ARCH, es, outputs)
    reference = golden.run(model, x, es)
    assert np.array_equal(steps, reference.steps)
    assert np.array_equal(classes, reference.classes)


def check_result(model, x, labels, result, max_drop):
    assert result.accuracy_full - result.accuracy <= max_drop + 1e-9
    reference = golden.run(model, x, result.early_stop)
    assert float((reference.classes == labels).mean()) == pytest.approx(result.accuracy)
    assert float(reference.steps.mean()) == pytest.approx(result.mean_steps)


@pytest.mark.parametrize("max_drop", [0.0, 0.005, 0.05])
def test_margin_calibration_within_drop(network, max_drop):
    model, x, outputs, labels = network
    result = calibrate_margin(ARCH, outputs, labels, max_drop=max_drop)
    assert result.early_stop.rule == "margin"
    check_result(model, x, labels, result, max_drop)
    assert result.mean_steps < ARCH.timesteps


@pytest.mark.parametrize("criterion", ["agreement", "accuracy"])
def test_margin_calibration_is_minimal(network, criterion):
    """No candidate within the drop uses fewer steps than the chosen one."""
    _, _, outputs, labels = network
    result = calibrate_margin(ARCH, outputs, labels, max_drop=0.01, criterion=criterion)
    assert result.criterion == criterion
    if criterion == "agreement":
        feasible = [c["mean_steps"] for c in result.candidates if c["disagreement"] <= 0.01 + 1e-9]
    else:
        feasible = [c["mean_steps"] for c in result.candidates
                    if result.accuracy_full - c["accuracy"] <= 0.01 + 1e-9]
    assert result.mean_steps == min(feasible)


def test_disagreement_bounds_accuracy_drop(network):
    _, _, outputs, labels = network
    result = calibrate_margin(ARCH, outputs, labels, max_drop=0.05)
    for candidate in result.candidates:
        drop = result.accuracy_full - candidate["accuracy"]
        assert drop <= candidate["disagreement"] + 1e-9
    assert result.disagreement <= 0.05 + 1e-9


def test_accuracy_criterion_is_looser(network):
    _, _, outputs, labels = network
    agreement = calibrate_margin(ARCH, outputs, labels, max_drop=0.02, criterion="agreement")
    accuracy = calibrate_margin(ARCH, outputs, labels, max_drop=0.02, criterion="accuracy")
    assert accuracy.mean_steps <= agreement.mean_steps
    with pytest.raises(ValueError, match="criterion must be one of"):
        calibrate_margin(ARCH, outputs, labels, criterion="recall")


def test_larger_drop_saves_more_steps(network):
    _, _, outputs, labels = network
    strict = calibrate_margin(ARCH, outputs, labels, max_drop=0.0)
    loose = calibrate_margin(ARCH, outputs, labels, max_drop=0.1)
    assert loose.mean_steps <= strict.mean_steps
    assert loose.saved_fraction >= strict.saved_fraction


def test_confidence_calibration_integer_form(network):
    model, x, outputs, labels = network
    result = calibrate_confidence(ARCH, outputs, labels, max_drop=0.01, budget=6)
    es = result.early_stop
    assert es.rule == "confidence"
    assert es.budget == 6
    assert es.scale == scale_table(es.alpha, 6)
    assert es.conf_limit == confidence_limit(es.confidence)
    check_result(model, x, labels, result, 0.01)


def test_calibrate_dispatch_and_errors(network):
    _, _, outputs, labels = network
    assert calibrate(ARCH, outputs, labels, rule="margin").early_stop.rule == "margin"
    with pytest.raises(ValueError, match="rule must be"):
        calibrate(ARCH, outputs, labels, rule="entropy")
    with pytest.raises(ValueError, match="outputs hold 200 samples and labels 3"):
        calibrate_margin(ARCH, outputs, labels[:3])
    with pytest.raises(ValueError, match="integer accumulators"):
        calibrate_margin(ARCH, outputs.astype(float), labels)
    with pytest.raises(ValueError, match="shape"):
        calibrate_margin(replace(ARCH, timesteps=9), outputs, labels)


def test_hand_made_accumulators():
    """Sample 0 leads by 5 from step 1; sample 1 leads with the wrong class by 1 at step 1 and
    with the right one by 3 only at the budget. Margins 2 and 3 stop both runs at the same steps;
    the search tries only margins seen in the data and so returns 3."""
    arch = ArchParams(sizes=(4, 4, 2), timesteps=3, lanes=2)
    outputs = np.array([[[5, 0], [0, 1]],
                        [[10, 0], [3, 2]],
                        [[15, 0], [6, 3]]], dtype=np.int64)
    labels = np.array([0, 0])
    classes, steps = simulate_early_stop(
        arch, EarlyStopParams(rule="margin", budget=3, margin=1), outputs)
    assert steps.tolist() == [1, 1]
    assert classes.tolist() == [0, 1]
    result = calibrate_margin(arch, outputs, labels, max_drop=0.0, min_steps_options=(1,))
    assert result.accuracy_full == 1.0
    assert result.accuracy == 1.0
    assert result.early_stop.margin == 3
    assert result.mean_steps == 2.0


def test_calibrate_early_stop_on_model(network):
    model, x, _, labels = network
    es = calibrate_early_stop(model, x, labels, rule="margin", max_accuracy_drop=0.01)
    assert es.rule == "margin"
    full = golden.run(model, x, replace(es, rule="off"))
    stopped = golden.run(model, x, es)
    drop = np.mean(full.classes == labels) - np.mean(stopped.classes == labels)
    assert drop <= 0.01 + 1e-9
    assert stopped.steps.mean() < ARCH.timesteps


def test_calibrate_early_stop_keeps_given_values(network):
    model, x, _, labels = network
    fixed = calibrate_early_stop(model, x, labels, rule="margin", margin=7, min_steps=2)
    assert (fixed.margin, fixed.min_steps, fixed.budget) == (7, 2, ARCH.timesteps)
    given = calibrate_early_stop(model, x, labels, rule="confidence", confidence=0.9, alpha=2.0,
                                 min_steps=1)
    assert given.scale == scale_table(2.0, ARCH.timesteps)
    assert given.conf_limit == confidence_limit(0.9)
    searched = calibrate_early_stop(model, x, labels, rule="confidence", alpha=2.0,
                                    max_accuracy_drop=0.02)
    assert searched.alpha == 2.0
    assert calibrate_early_stop(model, x, labels, rule="off").rule == "off"


def test_min_steps_at_budget(network):
    """With min_steps equal to the budget no rule can stop early."""
    _, _, outputs, labels = network
    result = calibrate_margin(ARCH, outputs, labels, budget=3, min_steps_options=(3, 5))
    assert result.mean_steps == 3.0
    assert result.early_stop.min_steps == 3


def test_unlabeled_samples_join_agreement(network):
    model, x, outputs, labels = network
    labeled, extra = outputs[:, :120], outputs[:, 120:]
    pooled = calibrate_margin(ARCH, labeled, labels[:120], unlabeled=extra, max_drop=0.02)
    alone = calibrate_margin(ARCH, labeled, labels[:120], max_drop=0.02)
    assert pooled.accuracy_full == alone.accuracy_full
    classes, steps = simulate_early_stop(ARCH, pooled.early_stop, outputs)
    full_classes = outputs[-1].argmax(axis=1)
    assert pooled.mean_steps == pytest.approx(steps.mean())
    assert pooled.disagreement == pytest.approx(np.mean(classes != full_classes))
    assert pooled.accuracy == pytest.approx(np.mean(classes[:120] == labels[:120]))
    via_model = calibrate_early_stop(model, x[:120], labels[:120], x_unlabeled=x[120:],
                                     max_accuracy_drop=0.02)
    assert via_model == pooled.early_stop
    with pytest.raises(ValueError, match="unlabeled outputs must be integer"):
        calibrate_margin(ARCH, labeled, labels[:120], unlabeled=extra.astype(float))
