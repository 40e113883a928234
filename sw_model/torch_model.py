"""Torch form of the network in docs/architecture.md, for training and for float studies.

The forward pass always computes the integers of the spec (sections "Input encoding" and "One
timestep"): float32 represents every membrane, synaptic sum and accumulator exactly, and floor,
saturation and spikes use their exact values. Only the backward pass differs from the integer
arithmetic: a surrogate derivative replaces the derivative of the spike step, and the leak's
floor and the saturation pass gradients straight through. So a model in training computes the
same outputs as the golden model and the hardware, and no separate quantization step exists.

Three networks share this forward pass:

- :class:`TopologyNet`: PRIME. Fixed random weights from :func:`sw_model.spec.layer_weights`
  (buffers that training never changes) and one real score per synapse (the only parameters).
  Each layer keeps exactly ``round(keep_fraction * synapses)`` synapses with the largest
  ``|score|``; the score gradient passes straight through the top-k step and through ``|score|``.
  With ``keep_fraction=1`` it is the "random weights, no pruning" baseline.
- :class:`WeightNet`: the trained-weight baseline. Float weights, rounded and clamped to the
  ``weight_bits`` range in the forward pass (straight-through gradient), so its outputs are
  integers too and it can be checked against the golden model with the weights it learned.
- :class:`FixedNet`: a network with given integer weights (for example masked weights of an
  exported model); used for evaluation and the read-noise study.

Tensor shapes: rate inputs (N, n_in) of integer intensities, binary inputs (N, T, n_in) of 0 and
1; outputs (T, N, n_out), the accumulators ``o`` after each timestep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .spec import ArchParams, layer_weights, rate_threshold

__all__ = [
    "SpikingNet",
    "TopologyNet",
    "WeightNet",
    "FixedNet",
    "TorchTrace",
    "kept_count",
    "topk_mask",
    "spike_surrogate",
    "straight_through",
    "floor_ste",
    "clamp_ste",
]


def kept_count(fraction: float, synapses: int) -> int:
    """Return the number of synapses a layer keeps: ``round(fraction * synapses)``, at least 1.

    Rounding is half up (``floor(x + 0.5)``), so the count is the same on every platform.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"kept fraction must lie in (0, 1], not {fraction!r}")
    return max(1, min(synapses, math.floor(fraction * synapses + 0.5)))


def topk_mask(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """Return a 0/1 mask of ``magnitude``'s shape that keeps its ``count`` largest entries.

    Ties are broken by position: among equal magnitudes the lower row-major index is kept,
    because a stable sort keeps equal keys in their original order.
    """
    flat = magnitude.detach().reshape(-1)
    order = torch.argsort(-flat, stable=True)
    mask = torch.zeros_like(flat)
    mask[order[:count]] = 1.0
    return mask.reshape(magnitude.shape)


class _SpikeFunction(torch.autograd.Function):
    """Heaviside step ``u >= theta`` with a fast-sigmoid surrogate derivative."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, theta: float, width: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.theta = theta
        ctx.width = width
        return (u >= theta).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (u,) = ctx.saved_tensors
        # For integer u the step lies between theta - 1 and theta, so centre the surrogate there.
        distance = (u - (ctx.theta - 0.5)).abs() / ctx.width
        surrogate = 1.0 / (ctx.width * (1.0 + distance) ** 2)
        return grad_output * surrogate, None, None


def spike_surrogate(u: torch.Tensor, theta: float, width: float) -> torch.Tensor:
    """Return the spikes ``u >= theta`` (0.0 or 1.0); backward uses a fast-sigmoid derivative
    of width ``width`` membrane units."""
    return _SpikeFunction.apply(u, theta, width)


class _StraightThrough(torch.autograd.Function):
    """Forward: a given value. Backward: the gradient reaches the source tensor unchanged."""

    @staticmethod
    def forward(ctx, source: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


def straight_through(source: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` exactly, with the gradient of the identity on ``source``.

    ``source + (value - source).detach()`` would round for some floats, and the forward pass
    must stay bit-exact.
    """
    return _StraightThrough.apply(source, value.detach())


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Return ``floor(x)`` with an identity gradient."""
    return straight_through(x, torch.floor(x))


def clamp_ste(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Return ``clamp(x, low, high)`` with an identity gradient."""
    return straight_through(x, torch.clamp(x, low, high))


@dataclass
class TorchTrace:
    """Per-timestep state of an inference; every array is int64 with the timestep first.

    ``spikes[k]`` is (T, N, sizes[k+1]) for every layer (all zero for an integrating output
    layer), ``membrane`` contains one (T, N, sizes[k+1]) array per spiking layer (after reset), and
    ``outputs`` is (T, N, n_out), the same layout as :class:`sw_model.golden.Trace`.
    """

    inputs: np.ndarray
    spikes: list[np.ndarray]
    membrane: list[np.ndarray]
    outputs: np.ndarray


class SpikingNet(nn.Module):
    """LIF network in the spec's integer arithmetic; subclasses supply the layer weights.

    Parameters
    ----------
    arch:
        Architecture; its encoding, leak, reset, saturation and readout are followed exactly.
    thresholds:
        One integer threshold per spiking layer, ``1 .. 2**(membrane_bits-1) - 1``.
    surrogate_width:
        Width of the surrogate derivative as a fraction of the layer's threshold.
    detach_reset:
        Stop the gradient through the reset (the spike that triggers it still gets gradient
        through the output).
    """

    def __init__(self, arch: ArchParams, thresholds: list[int] | tuple[int, ...], *,
                 surrogate_width: float = 0.5, detach_reset: bool = True):
        super().__init__()
        if len(thresholds) != arch.spiking_layers:
            raise ValueError(f"expected {arch.spiking_layers} thresholds for {arch.n_layers} "
                             f"layers with readout {arch.readout!r}, found {len(thresholds)}")
        for k, theta in enumerate(thresholds):
            if not 1 <= int(theta) <= arch.membrane_max:
                raise ValueError(f"threshold {k} ({theta}) must lie in 1..{arch.membrane_max}")
        # float32 represents integers exactly up to 2**24; wider formats need float64.
        widest = max(arch.membrane_bits, arch.output_bits,
                     max(arch.syn_bits(k) for k in range(arch.n_layers))) + 1
        self.exact_dtype = torch.float32 if widest <= 24 else torch.float64
        self.arch = arch
        self.thresholds = [int(theta) for theta in thresholds]
        self.surrogate_width = surrogate_width
        self.detach_reset = detach_reset

    def layer_weights(self) -> list[torch.Tensor]:
        """Return the effective (masked) weight of every layer, (sizes[k], sizes[k+1]) each."""
        raise NotImplementedError

    def _spiking(self, layer: int) -> bool:
        return layer < self.arch.n_layers - 1 or self.arch.readout == "spike_count"

    def input_spikes(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Return the input spikes at timestep ``t`` as 0.0/1.0, (N, n_in)."""
        if self.arch.encoding == "binary":
            return x[:, t, :].to(self.exact_dtype)
        return (x > rate_threshold(t, self.arch.input_bits)).to(self.exact_dtype)

    def check_inputs(self, x: torch.Tensor, timesteps: int) -> None:
        """Raise ValueError when ``x`` has the wrong shape or values outside the input range."""
        arch = self.arch
        if arch.encoding == "binary":
            if x.dim() != 3 or x.shape[2] != arch.n_in or x.shape[1] < timesteps:
                raise ValueError(f"binary inputs must have shape (batch, >= {timesteps}, "
                                 f"{arch.n_in}), not {tuple(x.shape)}")
            high = 1
        else:
            if x.dim() != 2 or x.shape[1] != arch.n_in:
                raise ValueError(f"inputs must have shape (batch, {arch.n_in}), "
                                 f"not {tuple(x.shape)}")
            high = (1 << arch.input_bits) - 1
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > high):
            raise ValueError(f"inputs must lie in 0..{high} (input_bits {arch.input_bits}), found "
                             f"{int(x.min())}..{int(x.max())}; quantize the data first")

    def forward(self, x: torch.Tensor, timesteps: int | None = None, *, read_noise: float = 0.0,
                static_noise: float = 0.0, generator: torch.Generator | None = None,
                record: dict | None = None) -> torch.Tensor:
        """Run ``timesteps`` steps (default ``arch.timesteps``) and return the accumulators.

        Returns (T, N, n_out) in ``exact_dtype``: ``o`` after each step. Two kinds of
        multiplicative Gaussian weight noise are available, each given as a relative standard
        deviation. ``read_noise`` draws anew at every read (every timestep and sample
        independently). ``static_noise`` draws once per call and keeps the draw for all samples
        and timesteps, like a device programmed with an error. With either, the outputs are no
        longer integers. ``record``, when given, receives per-step lists under ``inputs``,
        ``spikes`` and ``membrane``.
        """
        arch = self.arch
        timesteps = arch.timesteps if timesteps is None else timesteps
        self.check_inputs(x, timesteps)
        weights = [w.to(self.exact_dtype) for w in self.layer_weights()]
        if static_noise:
            weights = [w * (1.0 + static_noise * torch.randn(w.shape, generator=generator,
                                                             dtype=w.dtype))
                       for w in weights]
        squares = [w.detach() ** 2 for w in weights] if read_noise else None
        batch = x.shape[0]
        membrane: list[torch.Tensor | None] = [None] * arch.n_layers
        o = torch.zeros(batch, arch.n_out, dtype=self.exact_dtype, device=x.device)
        outputs = []
        if record is not None:
            record.update(inputs=[], spikes=[[] for _ in weights], membrane=[[] for _ in weights])
        for t in range(timesteps):
            s = self.input_spikes(x, t)
            if record is not None:
                record["inputs"].append(s.detach())
            for k, w in enumerate(weights):
                syn = s @ w
                if read_noise:
                    # The sum of independent N(0, (noise * w)^2) terms over the spiking inputs.
                    spread = torch.sqrt(s.detach() @ squares[k])
                    syn = syn + read_noise * spread * torch.randn(
                        syn.shape, generator=generator, dtype=syn.dtype, device=syn.device)
                if self._spiking(k):
                    s, membrane[k] = self._lif_step(k, membrane[k], syn)
                    if k == arch.n_layers - 1:
                        o = o + s
                    if record is not None:
                        record["membrane"][k].append(membrane[k].detach())
                else:
                    o = o + syn
                    s = torch.zeros_like(syn)
                if record is not None:
                    record["spikes"][k].append(s.detach())
            outputs.append(o)
        return torch.stack(outputs)

    def _lif_step(self, k: int, v: torch.Tensor | None, syn: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        arch = self.arch
        theta = float(self.thresholds[k])
        if v is None:
            a = torch.zeros_like(syn)  # the stored membrane counts as 0 at t = 0
        elif arch.leak_shift == 0:
            a = v
        else:
            a = v - floor_ste(v / float(1 << arch.leak_shift))
        u = clamp_ste(a + syn, float(arch.membrane_min), float(arch.membrane_max))
        s = spike_surrogate(u, theta, self.surrogate_width * theta)
        reset_spike = s.detach() if self.detach_reset else s
        if arch.reset == "subtract":
            v_next = u - theta * reset_spike
        else:
            v_next = u * (1.0 - reset_spike)
        return s, v_next

    @torch.no_grad()
    def infer(self, x: np.ndarray | torch.Tensor, timesteps: int | None = None,
              batch_size: int = 512) -> np.ndarray:
        """Return the per-step accumulators of inference as int64 (T, N, n_out)."""
        x = torch.as_tensor(np.asarray(x))
        parts = [self(x[i:i + batch_size], timesteps) for i in range(0, len(x), batch_size)]
        return torch.cat(parts, dim=1).round().to(torch.int64).numpy()

    @torch.no_grad()
    def trace(self, x: np.ndarray | torch.Tensor, timesteps: int | None = None) -> TorchTrace:
        """Run inference and return every layer's spikes and membranes at every step."""
        record: dict = {}
        outputs = self(torch.as_tensor(np.asarray(x)), timesteps, record=record)
        as_int = lambda steps: torch.stack(steps).round().to(torch.int64).numpy()  # noqa: E731
        spiking = [k for k in range(self.arch.n_layers) if self._spiking(k)]
        return TorchTrace(inputs=as_int(record["inputs"]),
                          spikes=[as_int(v) for v in record["spikes"]],
                          membrane=[as_int(record["membrane"][k]) for k in spiking],
                          outputs=outputs.round().to(torch.int64).numpy())


class TopologyNet(SpikingNet):
    """PRIME: fixed random weights, a learned top-k mask per layer (edge-popup).

    Buffers ``weight_k`` hold the spec's integer weights and are never written. Parameters
    ``score_k`` (float32, same shape) are initialised from ``init_scale * U(-1, 1)``. The forward
    mask is ``topk(|score|)``; its gradient reaches ``|score|`` unchanged (straight-through) and
    then ``score`` through the absolute value, so a pruned synapse still receives gradient.
    """

    def __init__(self, arch: ArchParams, thresholds: list[int] | tuple[int, ...],
                 keep_fraction: float = 0.5, *, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, **kwargs):
        super().__init__(arch, thresholds, **kwargs)
        self.keep_fraction = keep_fraction
        self.kept = []
        for k in range(arch.n_layers):
            weights = torch.from_numpy(layer_weights(arch, k).astype(np.float32))
            self.register_buffer(f"weight_{k}", weights)
            score = (torch.rand(weights.shape, generator=generator) * 2.0 - 1.0) * init_scale
            self.register_parameter(f"score_{k}", nn.Parameter(score))
            self.kept.append(kept_count(keep_fraction, weights.numel()))

    def weights(self, layer: int) -> torch.Tensor:
        """Return the fixed integer weights of a layer as float32 (sizes[k], sizes[k+1])."""
        return getattr(self, f"weight_{layer}")

    def scores(self, layer: int) -> torch.Tensor:
        """Return the score parameter of a layer, float32 (sizes[k], sizes[k+1])."""
        return getattr(self, f"score_{layer}")

    def masks(self) -> list[np.ndarray]:
        """Return the current masks as uint8 0/1 arrays of shape (sizes[k], sizes[k+1])."""
        return [topk_mask(self.scores(k).abs(), self.kept[k]).to(torch.uint8).numpy()
                for k in range(self.arch.n_layers)]

    def layer_weights(self) -> list[torch.Tensor]:
        effective = []
        for k in range(self.arch.n_layers):
            magnitude = self.scores(k).abs()
            hard = topk_mask(magnitude, self.kept[k])
            mask = straight_through(magnitude, hard)
            effective.append(self.weights(k) * mask)
        return effective


class WeightNet(SpikingNet):
    """Trained-weight baseline: every synapse kept, weights learned.

    Parameters ``weight_k`` start from the spec's random weights. With ``quantize`` (default)
    the forward pass uses ``clamp(round(w), -weight_max, weight_max)`` with a straight-through
    gradient, so the network stays in the hardware's integer format; without it the weights are
    used as floats and the outputs are not integers.
    """

    def __init__(self, arch: ArchParams, thresholds: list[int] | tuple[int, ...], *,
                 quantize: bool = True, **kwargs):
        super().__init__(arch, thresholds, **kwargs)
        self.quantize = quantize
        for k in range(arch.n_layers):
            start = torch.from_numpy(layer_weights(arch, k).astype(np.float32))
            self.register_parameter(f"weight_{k}", nn.Parameter(start))

    def layer_weights(self) -> list[torch.Tensor]:
        wmax = float(self.arch.weight_max)
        weights = [getattr(self, f"weight_{k}") for k in range(self.arch.n_layers)]
        if not self.quantize:
            return weights
        return [straight_through(w, torch.clamp(torch.round(w), -wmax, wmax)) for w in weights]

    def integer_weights(self) -> list[np.ndarray]:
        """Return the weights the forward pass uses, as int64 (sizes[k], sizes[k+1]).

        Raises ValueError for an unquantized network, whose weights are not integers.
        """
        if not self.quantize:
            raise ValueError("integer_weights needs a WeightNet built with quantize=True")
        return [w.detach().round().to(torch.int64).numpy() for w in self.layer_weights()]


class FixedNet(SpikingNet):
    """A network with given integer weights (for example ``weights * mask`` of a model file).

    ``weights[k]`` is an integer array of shape (sizes[k], sizes[k+1]); it is stored as a buffer.
    """

    def __init__(self, arch: ArchParams, thresholds: list[int] | tuple[int, ...],
                 weights: list[np.ndarray], **kwargs):
        super().__init__(arch, thresholds, **kwargs)
        if len(weights) != arch.n_layers:
            raise ValueError(f"expected {arch.n_layers} weight arrays, found {len(weights)}")
        for k, w in enumerate(weights):
            shape = (arch.sizes[k], arch.sizes[k + 1])
            if tuple(w.shape) != shape:
                raise ValueError(f"weights {k} have shape {tuple(w.shape)}, expected {shape}")
            self.register_buffer(f"weight_{k}", torch.as_tensor(np.asarray(w, dtype=np.float64))
                                 .to(self.exact_dtype))

    @classmethod
    def from_model(cls, model, **kwargs) -> "FixedNet":
        """Build the network of a :class:`sw_model.model.Model` (its masked fixed weights)."""
        weights = [model.weights(k) * model.masks[k].astype(np.int64)
                   for k in range(model.arch.n_layers)]
        return cls(model.arch, model.thresholds, weights, **kwargs)

    def layer_weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"weight_{k}") for k in range(self.arch.n_layers)]
