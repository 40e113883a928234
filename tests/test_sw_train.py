"""Topology training on a tiny network: determinism, fixed weights, exact kept fraction, and
agreement of the trained model with the golden model."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sw_model import golden
from sw_model.data import Dataset, load_digits
from sw_model.spec import ArchParams, EarlyStopParams, layer_weights
from sw_model.torch_model import FixedNet, TopologyNet, kept_count
from sw_model.train import (
    BASELINE_CONFIG,
    TrainConfig,
    baseline_config,
    build_model,
    deterministic,
    fit,
    per_step_loss,
    shift_images,
    default_thresholds,
    train_topology,
    train_weights,
)

ARCH = ArchParams(sizes=(64, 16, 10), timesteps=6, input_bits=4, membrane_bits=10, leak_shift=3,
                  lanes=4)
CONFIG = TrainConfig(keep_fraction=0.4, thresholds=(6,), epochs=2, batch_size=64, learning_rate=0.1)


@pytest.fixture(scope="module")
def tiny_digits() -> Dataset:
    """A small slice of the digits split, enough for two quick epochs."""
    full = load_digits(input_bits=4, seed=0)
    return replace(full, x_train=full.x_train[:256], y_train=full.y_train[:256],
                   x_val=full.x_val[:64], y_val=full.y_val[:64])


@pytest.fixture(scope="module")
def trained(tiny_digits):
    return train_topology(ARCH, tiny_digits, CONFIG, seed=7)


def test_same_seed_same_mask(tiny_digits, trained):
    masks, _, history = trained
    again, _, history_again = train_topology(ARCH, tiny_digits, CONFIG, seed=7)
    for k in range(ARCH.n_layers):
        assert np.array_equal(masks[k], again[k]), f"layer {k}"
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]


def test_other_seed_other_mask(tiny_digits, trained):
    masks, _, _ = trained
    other, _, _ = train_topology(ARCH, tiny_digits, CONFIG, seed=8)
    assert not np.array_equal(masks[0], other[0])


def test_keep_fraction_exact(trained):
    masks, thresholds, history = trained
    assert thresholds == [6]
    assert len(history) == CONFIG.epochs
    for k, mask in enumerate(masks):
        assert mask.shape == (ARCH.sizes[k], ARCH.sizes[k + 1])
        assert mask.dtype == np.uint8
        assert int(mask.sum()) == kept_count(CONFIG.keep_fraction, mask.size)


def test_training_changes_mask_not_weights(tiny_digits):
    with deterministic(3) as generator:
        net = TopologyNet(ARCH, [6], 0.4, generator=generator)
        before_weights = [net.weights(k).clone() for k in range(ARCH.n_layers)]
        before_masks = net.masks()
        fit(net, tiny_digits, CONFIG, generator)
    for k in range(ARCH.n_layers):
        assert torch.equal(net.weights(k), before_weights[k])
        assert np.array_equal(net.weights(k).numpy().astype(np.int64), layer_weights(ARCH, k))
    assert any(not np.array_equal(a, b) for a, b in zip(net.masks(), before_masks))


def test_training_restores_torch_settings(tiny_digits):
    threads = torch.get_num_threads()
    flag = torch.are_deterministic_algorithms_enabled()
    train_topology(ARCH, tiny_digits, replace(CONFIG, epochs=1), seed=1)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == flag


def test_trained_model_matches_golden(tiny_digits, trained):
    masks, thresholds, _ = trained
    model = build_model(ARCH, masks, thresholds)
    x = load_digits(input_bits=4, seed=0).x_test
    reference = golden.run(model, x, EarlyStopParams(rule="off", budget=ARCH.timesteps),
                           trace=True)
    mine = FixedNet.from_model(model).trace(x)
    assert np.array_equal(mine.outputs, reference.trace.outputs)
    assert np.array_equal(mine.spikes[0], reference.trace.spikes[0])
    assert np.array_equal(mine.membrane[0], reference.trace.membrane[0])
    assert np.array_equal(mine.outputs[-1].argmax(axis=1), reference.classes)


def test_weight_baseline_stays_integer(tiny_digits):
    net, history = train_weights(ARCH, tiny_digits,
                                 replace(CONFIG, optimizer="adam", learning_rate=0.3), seed=0)
    assert len(history) == CONFIG.epochs
    weights = net.integer_weights()
    for k, w in enumerate(weights):
        assert np.abs(w).max() <= ARCH.weight_max
        assert not np.array_equal(w, layer_weights(ARCH, k))


def test_per_step_loss_weighting():
    outputs = torch.zeros(3, 2, 4)
    outputs[2, :, 1] = 30.0  # only the last step is confident
    labels = torch.tensor([1, 1])
    last = per_step_loss(outputs, labels, 1.0, "last")
    uniform = per_step_loss(outputs, labels, 1.0, "uniform")
    assert float(last) < 1e-3
    assert float(uniform) > 0.5
    with pytest.raises(ValueError, match="step_weight"):
        per_step_loss(outputs, labels, 1.0, "first")


def test_per_step_loss_label_smoothing():
    outputs = torch.zeros(1, 2, 4)
    outputs[0, :, 1] = 30.0
    labels = torch.tensor([1, 1])
    sharp = per_step_loss(outputs, labels, 1.0, "last")
    smoothed = per_step_loss(outputs, labels, 1.0, "last", label_smoothing=0.2)
    assert float(sharp) < 1e-3
    # The smoothed target puts 0.05 on each wrong class, whose logit lies 30 below.
    assert float(smoothed) == pytest.approx(0.15 * 30.0, rel=1e-3)


def test_mismatched_dataset_rejected(tiny_digits):
    with pytest.raises(ValueError, match="64 inputs and 10 classes"):
        train_topology(replace(ARCH, sizes=(32, 16, 10)), tiny_digits, CONFIG)
    with pytest.raises(ValueError, match="2 thresholds given"):
        train_topology(ARCH, tiny_digits, replace(CONFIG, thresholds=(6, 6)))


def test_result_from_mapping_of_arrays(tiny_digits, trained):
    arrays = {name: getattr(tiny_digits, name) for name in
              ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    result = train_topology(ARCH, arrays, CONFIG, seed=7)
    masks, _, _ = trained
    for k in range(ARCH.n_layers):
        assert np.array_equal(result.masks[k], masks[k])
    assert 0.0 <= result.test_accuracy <= 1.0
    assert result.test_accuracy_float == result.test_accuracy
    assert result.val_accuracy == pytest.approx(max(h["val_acc"] for h in result.history))


def test_default_thresholds_rule(tiny_digits):
    thresholds = default_thresholds(ARCH, tiny_digits, 0.4)
    assert len(thresholds) == 1
    assert 1 <= thresholds[0] <= ARCH.membrane_max
    wider = default_thresholds(ARCH, tiny_digits, 0.4, gain=3.0)
    assert wider[0] > thresholds[0]
    result = train_topology(ARCH, tiny_digits, replace(CONFIG, epochs=1, thresholds=None))
    assert result.thresholds == thresholds
    explicit = train_topology(ARCH, tiny_digits, replace(CONFIG, epochs=1), thresholds=[9])
    assert explicit.thresholds == [9]


def test_shift_images_moves_pixels():
    x = torch.arange(1, 10).reshape(1, 9).repeat(64, 1)
    shifted = shift_images(x, 1, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    # The centre pixel (5) stays inside the image for every shift of at most one pixel.
    assert bool((shifted == 5).any(dim=1).all())
    sums = {int(image.sum()) for image in shifted}
    assert 45 in sums  # no shift
    assert len(sums) > 3
    again = shift_images(x, 1, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again)


def test_shift_images_frames_share_shift():
    frames = torch.zeros(8, 3, 16, dtype=torch.uint8)
    frames[:, :, 5] = 1  # pixel (1, 1) of a 4x4 image in every frame
    shifted = shift_images(frames, 1, torch.Generator().manual_seed(1))
    for sample in shifted:
        positions = [tuple(torch.nonzero(frame).flatten().tolist()) for frame in sample]
        assert len(set(positions)) == 1
    with pytest.raises(ValueError, match="square images"):
        shift_images(torch.zeros(2, 10), 1, torch.Generator())


def test_augmented_training_is_deterministic(tiny_digits):
    cfg = replace(CONFIG, augment_shift=1, epochs=1)
    first = train_topology(ARCH, tiny_digits, cfg, seed=4)
    second = train_topology(ARCH, tiny_digits, cfg, seed=4)
    assert np.array_equal(first.masks[0], second.masks[0])
    plain = train_topology(ARCH, tiny_digits, replace(cfg, augment_shift=0), seed=4)
    assert not np.array_equal(first.masks[0], plain.masks[0])


def test_baseline_config_keeps_its_optimizer():
    prime = replace(CONFIG, epochs=3)
    baseline = baseline_config(prime)
    assert baseline.epochs == 3
    assert baseline.thresholds == prime.thresholds
    assert baseline.optimizer == BASELINE_CONFIG.optimizer
    assert baseline.learning_rate == BASELINE_CONFIG.learning_rate
    assert baseline.logit_scale == BASELINE_CONFIG.logit_scale
