"""Torch model: bit-exact agreement with the golden model, the top-k mask and its gradients."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sw_model import golden
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams, layer_weights
from sw_model.torch_model import FixedNet, TopologyNet, WeightNet, kept_count, topk_mask

SMALL = ArchParams(sizes=(12, 16, 4), timesteps=8, input_bits=3, weight_bits=4, membrane_bits=8,
                   leak_shift=2, lanes=4)


def random_inputs(arch, samples=24, seed=0):
    rng = np.random.default_rng(seed)
    if arch.encoding == "binary":
        return rng.integers(0, 2, size=(samples, arch.timesteps, arch.n_in)).astype(np.uint8)
    return rng.integers(0, 1 << arch.input_bits, size=(samples, arch.n_in)).astype(np.uint8)


def golden_trace(net, arch, x):
    model = Model(arch=arch, masks=net.masks(), thresholds=net.thresholds,
                  early_stop=EarlyStopParams(rule="off", budget=arch.timesteps))
    return golden.run(model, x, trace=True).trace


VARIANTS = {
    "default": {},
    "no_leak": {"leak_shift": 0},
    "reset_zero": {"reset": "zero"},
    "spike_count": {"readout": "spike_count"},
    "two_hidden": {"sizes": (12, 16, 8, 4)},
    "binary_input": {"encoding": "binary"},
    "saturating": {"membrane_bits": 5},
    "lognormal": {"weight_dist": "lognormal_pair"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_topology_net_matches_golden(variant):
    arch = replace(SMALL, **VARIANTS[variant])
    thresholds = [3] * arch.spiking_layers
    net = TopologyNet(arch, thresholds, 0.6, generator=torch.Generator().manual_seed(1))
    x = random_inputs(arch)
    mine = net.trace(x)
    reference = golden_trace(net, arch, x)
    assert np.array_equal(mine.inputs, reference.inputs)
    assert np.array_equal(mine.outputs, reference.outputs)
    for k in range(arch.n_layers):
        assert np.array_equal(mine.spikes[k], reference.spikes[k]), f"spikes of layer {k}"
    assert len(mine.membrane) == len(reference.membrane)
    for k in range(len(mine.membrane)):
        assert np.array_equal(mine.membrane[k], reference.membrane[k]), f"membrane {k}"


def test_saturation_is_exercised():
    arch = replace(SMALL, membrane_bits=5)
    net = TopologyNet(arch, [3], 1.0)
    membrane = net.trace(random_inputs(arch)).membrane[0]
    assert membrane.min() == arch.membrane_min


def test_training_forward_equals_inference():
    net = TopologyNet(SMALL, [3], 0.5)
    x = torch.from_numpy(random_inputs(SMALL))
    net.train()
    trained = net(x)
    assert trained.requires_grad
    assert np.array_equal(trained.detach().numpy().astype(np.int64), net.infer(x))


def test_fixed_net_from_model_matches_topology_net():
    net = TopologyNet(SMALL, [3], 0.5)
    model = Model(arch=SMALL, masks=net.masks(), thresholds=[3],
                  early_stop=EarlyStopParams(rule="off", budget=SMALL.timesteps))
    x = random_inputs(SMALL)
    assert np.array_equal(FixedNet.from_model(model).infer(x), net.infer(x))


def test_kept_count_per_layer_exact():
    arch = replace(SMALL, sizes=(12, 16, 8, 4))
    for fraction in (0.1, 0.33, 0.5, 0.9, 1.0):
        net = TopologyNet(arch, [3, 3], fraction)
        for k, mask in enumerate(net.masks()):
            assert mask.dtype == np.uint8
            assert int(mask.sum()) == kept_count(fraction, mask.size), (fraction, k)


def test_kept_count_rounds_half_up():
    assert kept_count(0.5, 5) == 3
    assert kept_count(0.01, 10) == 1
    assert kept_count(1.0, 7) == 7
    with pytest.raises(ValueError, match="kept fraction"):
        kept_count(0.0, 10)


def test_topk_ties_keep_lowest_index():
    magnitude = torch.tensor([[1.0, 2.0, 2.0], [2.0, 0.5, 2.0]])
    mask = topk_mask(magnitude, 3)
    assert mask.tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]


def test_weights_are_fixed_buffers():
    net = TopologyNet(SMALL, [3], 0.5)
    names = [name for name, _ in net.named_parameters()]
    assert names == ["score_0", "score_1"]
    for k in range(SMALL.n_layers):
        assert np.array_equal(net.weights(k).numpy().astype(np.int64), layer_weights(SMALL, k))


def test_gradient_reaches_pruned_synapses():
    net = TopologyNet(SMALL, [3], 0.3)
    x = torch.from_numpy(random_inputs(SMALL, samples=64))
    net(x).pow(2).mean().backward()
    for k, mask in enumerate(net.masks()):
        grad = net.scores(k).grad.numpy()
        pruned = (mask == 0) & (layer_weights(SMALL, k) != 0)
        assert np.count_nonzero(grad[pruned]) > 0.5 * pruned.sum(), f"layer {k}"


def test_score_gradient_passes_through_abs():
    """Flipping the sign of a score keeps the mask and flips the sign of its gradient."""
    net = TopologyNet(SMALL, [3], 0.5)
    x = torch.from_numpy(random_inputs(SMALL, samples=64))
    net(x).pow(2).mean().backward()
    grads = [net.scores(k).grad.clone() for k in range(SMALL.n_layers)]
    masks = net.masks()
    with torch.no_grad():
        for k in range(SMALL.n_layers):
            net.scores(k).neg_()
    net.zero_grad()
    net(x).pow(2).mean().backward()
    for k in range(SMALL.n_layers):
        assert np.array_equal(net.masks()[k], masks[k])
        assert torch.equal(net.scores(k).grad, -grads[k])


def test_weight_net_integer_weights_match_fixed_net():
    net = WeightNet(SMALL, [3])
    with torch.no_grad():
        net.weight_0.mul_(1.7).add_(0.3)
    weights = net.integer_weights()
    assert all(np.abs(w).max() <= SMALL.weight_max for w in weights)
    x = random_inputs(SMALL)
    assert np.array_equal(FixedNet(SMALL, [3], weights).infer(x), net.infer(x))


def test_read_noise_changes_outputs_reproducibly():
    net = TopologyNet(SMALL, [3], 0.5)
    x = torch.from_numpy(random_inputs(SMALL))
    with torch.no_grad():
        exact = net(x)
        silent = net(x, read_noise=0.0)
        noisy = net(x, read_noise=0.1, generator=torch.Generator().manual_seed(5))
        again = net(x, read_noise=0.1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(exact, silent)
    assert not torch.equal(exact, noisy)
    assert torch.equal(noisy, again)


def test_inputs_outside_range_rejected():
    net = TopologyNet(SMALL, [3], 0.5)
    x = torch.full((2, SMALL.n_in), 1 << SMALL.input_bits)
    with pytest.raises(ValueError, match="must lie in 0..7"):
        net(x)
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(2, SMALL.n_in + 1))


def test_threshold_count_checked():
    with pytest.raises(ValueError, match="expected 1 thresholds"):
        TopologyNet(SMALL, [3, 3], 0.5)
    with pytest.raises(ValueError, match="threshold 0"):
        TopologyNet(SMALL, [SMALL.membrane_max + 1], 0.5)


def test_static_noise_shared_by_samples():
    """One static draw applies to every sample: identical inputs give identical outputs."""
    net = TopologyNet(SMALL, [3], 0.5)
    x = torch.from_numpy(random_inputs(SMALL, samples=1)).repeat(4, 1)
    with torch.no_grad():
        exact = net(x)
        static = net(x, static_noise=0.2, generator=torch.Generator().manual_seed(3))
        read = net(x, read_noise=0.2, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(static, exact)
    assert torch.equal(static[:, 0], static[:, 3])
    assert not torch.equal(read[:, 0], read[:, 3])
