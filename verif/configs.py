"""Configurations and stimuli of the RTL regression: seeded models, no training.

A :class:`VerifConfig` names one generated core (one simulator build) and how its model is made.
Masks are random 0/1 arrays of a given density. Thresholds are scaled to the spread of the
synaptic sums, so that hidden neurons neither stay silent nor fire every step. Everything is seeded, so a
configuration name always stands for the same Verilog and the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sw_model import golden
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams, confidence_limit, layer_weights, scale_table

__all__ = [
    "VerifConfig",
    "build_model",
    "early_stop",
    "digits_inputs",
    "random_inputs",
    "sample_set",
    "MATRIX",
    "random_config",
    "RANDOM_SEEDS",
    "with_rule",
]


@dataclass(frozen=True)
class VerifConfig:
    """One core of the regression and the seeded model it is generated from.

    ``input_activity`` is the expected fraction of inputs that spike in a step, used only to
    scale the thresholds. ``threshold_scale`` multiplies the spread of the synaptic sum.
    """

    name: str
    arch: ArchParams
    early_stop: EarlyStopParams
    seed: int = 0
    mask_density: float = 0.5
    threshold_scale: float = 1.0
    input_activity: float = 0.3
    digits: bool = False
    extra_rules: tuple[str, ...] = field(default=())

    def model(self) -> Model:
        """Return the seeded model of this configuration (see :func:`build_model`)."""
        return build_model(self)


def early_stop(arch: ArchParams, rule: str, *, budget: int | None = None, min_steps: int = 1,
               margin: int = 0, alpha: float = 1.0, confidence: float = 0.9) -> EarlyStopParams:
    """Return valid early-stop settings for ``arch``; the confidence rule gets its SCALE table."""
    budget = arch.timesteps if budget is None else budget
    margin = min(margin, (1 << arch.output_bits) - 1)
    if rule == "confidence":
        return EarlyStopParams(rule=rule, budget=budget, min_steps=min_steps, margin=margin,
                               alpha=alpha, confidence=confidence,
                               scale=scale_table(alpha, budget),
                               conf_limit=confidence_limit(confidence))
    return EarlyStopParams(rule=rule, budget=budget, min_steps=min_steps, margin=margin)


def _thresholds(config: VerifConfig, masks: list[np.ndarray], rng: np.random.Generator) -> list[int]:
    """Scale each spiking layer's threshold to the standard deviation of its synaptic sum."""
    arch = config.arch
    thresholds = []
    activity = config.input_activity
    for k in range(arch.spiking_layers):
        kept = layer_weights(arch, k) * masks[k]
        mean_square = float(np.mean(kept.astype(np.float64) ** 2))
        spread = math.sqrt(max(arch.sizes[k] * activity * mean_square, 1.0))
        theta = round(spread * config.threshold_scale * rng.uniform(0.7, 1.3))
        thresholds.append(int(min(max(theta, 1), arch.membrane_max)))
        activity = 0.25  # hidden layers spike less often than the inputs
    return thresholds


def build_model(config: VerifConfig) -> Model:
    """Return the seeded model of a configuration: random masks and scaled thresholds."""
    arch = config.arch
    rng = np.random.default_rng([config.seed, 0x5EED])
    masks = [(rng.random((arch.sizes[k], arch.sizes[k + 1])) < config.mask_density).astype(np.uint8)
             for k in range(arch.n_layers)]
    thresholds = _thresholds(config, masks, rng)
    return Model(arch=arch, masks=masks, thresholds=thresholds, early_stop=config.early_stop,
                 meta={"config": config.name, "dataset": "seeded", "verif_seed": config.seed})


def digits_inputs(input_bits: int, count: int, seed: int) -> np.ndarray:
    """Return ``count`` scikit-learn digits (64 inputs) quantized to ``input_bits`` bits.

    Pixels 0..16 map to ``(v * (2**B - 1) + 8) // 16``, the rule of ``sw_model.data``. Samples
    are drawn without replacement in a seeded order. Returns int64 (count, 64).
    """
    from sklearn.datasets import load_digits

    from sw_model.data import quantize_intensity

    pixels = load_digits().data.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(pixels))[:count]
    return quantize_intensity(pixels[order], 16, input_bits).astype(np.int64)


def random_inputs(arch: ArchParams, count: int, rng: np.random.Generator) -> np.ndarray:
    """Return random intensities in a mix of densities: uniform, sparse and mostly bright."""
    top = (1 << arch.input_bits) - 1
    x = rng.integers(0, top + 1, size=(count, arch.n_in))
    kind = rng.integers(0, 3, size=count)
    sparse = rng.random((count, arch.n_in)) < 0.7
    x[(kind == 1)[:, None] & sparse] = 0
    x[(kind == 2)[:, None] & sparse] = top
    return x.astype(np.int64)


def sample_set(config: VerifConfig, count: int, seed: int = 0) -> np.ndarray:
    """Return the regression samples of a configuration, int64 (count, n_in).

    The first sample is all zero and the second saturating (every input at its maximum). When
    ``digits`` is set (64 inputs), three quarters of the rest are scikit-learn digits and a
    quarter random intensities. Otherwise all the rest are random.
    """
    arch = config.arch
    rng = np.random.default_rng([config.seed, seed, 0xDA7A])
    top = (1 << arch.input_bits) - 1
    edge = np.array([np.zeros(arch.n_in, dtype=np.int64), np.full(arch.n_in, top, dtype=np.int64)])
    rest = max(count - len(edge), 0)
    if config.digits:
        n_random = rest // 4
        parts = [digits_inputs(arch.input_bits, rest - n_random, seed=config.seed + seed),
                 random_inputs(arch, n_random, rng)]
    else:
        parts = [random_inputs(arch, rest, rng)]
    x = np.concatenate([edge] + parts)[:count]
    return golden.check_inputs(arch, x)


def _arch(**fields) -> ArchParams:
    return ArchParams(**fields)


def _matrix() -> list[VerifConfig]:
    """Return the fixed configuration matrix of the default regression.

    Together the entries cover 1 and 2 hidden layers, several widths, and lanes that divide the
    layer sizes and lanes that do not. They also cover both reset modes, both readouts, both
    weight distributions and sources, and each early-stop rule as the registers' reset value.
    """
    configs = []

    a = _arch(sizes=(64, 32, 10), lanes=8, weight_source="rom", reset="subtract",
              readout="integrate", timesteps=16)
    configs.append(VerifConfig("h1_rom_subtract_margin", a,
                               early_stop(a, "margin", margin=12, min_steps=2),
                               seed=1, digits=True, extra_rules=("confidence",)))

    a = _arch(sizes=(64, 24, 10), lanes=5, weight_source="hash", reset="zero",
              readout="integrate", timesteps=12, weight_bits=5, weight_sigma=4.0)
    configs.append(VerifConfig("h1_hash_zero_confidence", a,
                               early_stop(a, "confidence", alpha=0.5, confidence=0.9, min_steps=3),
                               seed=2, digits=True, extra_rules=("off",)))

    a = _arch(sizes=(64, 20, 12, 10), lanes=4, weight_source="rom", reset="zero",
              readout="spike_count", timesteps=10, weight_dist="lognormal_pair",
              membrane_bits=10, leak_shift=2)
    configs.append(VerifConfig("h2_rom_zero_spikecount", a,
                               early_stop(a, "margin", margin=2, min_steps=2),
                               seed=3, digits=True, threshold_scale=0.8))

    a = _arch(sizes=(64, 18, 14, 10), lanes=7, weight_source="hash", reset="subtract",
              readout="integrate", timesteps=8, weight_bits=6, weight_sigma=6.0, leak_shift=0)
    configs.append(VerifConfig("h2_hash_subtract_off", a, early_stop(a, "off"),
                               seed=4, digits=True, extra_rules=("margin",)))

    # Narrow datapath: 6-bit membranes without leak saturate in both directions.
    a = _arch(sizes=(12, 7, 3), lanes=3, input_bits=2, timesteps=6, weight_bits=3,
              membrane_bits=6, leak_shift=0, reset="subtract", weight_sigma=3.0)
    configs.append(VerifConfig("h1_narrow_saturating", a, early_stop(a, "margin", margin=3),
                               seed=5, threshold_scale=2.5, input_activity=0.5))

    # One lane: every group is a single neuron; two classes give a 1-bit class port.
    a = _arch(sizes=(9, 5, 2), lanes=1, input_bits=3, timesteps=5, weight_source="hash",
              reset="zero", readout="spike_count", weight_dist="lognormal_pair")
    configs.append(VerifConfig("h1_one_lane_two_classes", a, early_stop(a, "margin", margin=1),
                               seed=6, threshold_scale=0.7))

    # Wide layers with lanes dividing the first hidden layer but not the second.
    a = _arch(sizes=(24, 48, 40, 16), lanes=16, input_bits=6, timesteps=20, membrane_bits=14,
              leak_shift=3, weight_bits=7, weight_sigma=12.0)
    configs.append(VerifConfig("h2_wide_confidence", a,
                               early_stop(a, "confidence", alpha=2.0, confidence=0.8, budget=14),
                               seed=7, input_activity=0.5))

    # Lanes equal to the output size: the output layer is one group.
    a = _arch(sizes=(16, 12, 4), lanes=4, input_bits=8, timesteps=32, membrane_bits=16,
              leak_shift=5, weight_bits=8, weight_sigma=20.0, reset="zero")
    configs.append(VerifConfig("h1_eight_bit_inputs", a,
                               early_stop(a, "margin", margin=200, min_steps=4, budget=24),
                               seed=8, input_activity=0.5))
    return configs


MATRIX: tuple[VerifConfig, ...] = tuple(_matrix())

RANDOM_SEEDS: tuple[int, ...] = (101, 202, 303)


def random_config(seed: int, max_cycles: int = 900) -> VerifConfig:
    """Draw a valid configuration at random, seeded, with a mean cost below ``max_cycles``.

    Draws repeat until the golden model puts the mean cycle count of a few random samples
    under ``max_cycles``, which keeps the simulation time of one sample bounded.
    """
    rng = np.random.default_rng([seed, 0xC0F])
    for _ in range(200):
        hidden = [int(rng.integers(2, 33)) for _ in range(int(rng.integers(1, 3)))]
        sizes = (int(rng.integers(3, 41)), *hidden, int(rng.integers(2, 13)))
        lanes = int(rng.integers(1, min(sizes[1:]) + 1))
        membrane_bits = int(rng.integers(4, 17))
        timesteps = int(rng.integers(1, 25))
        arch = ArchParams(
            sizes=sizes, lanes=lanes, input_bits=int(rng.integers(1, 9)), timesteps=timesteps,
            weight_bits=int(rng.integers(2, 9)), weight_seed=int(rng.integers(0, 2**32)),
            weight_dist=str(rng.choice(["gaussian", "lognormal_pair"])),
            weight_sigma=float(rng.uniform(0.5, 8.0)),
            lognormal_sigma=float(rng.uniform(0.2, 1.0)),
            lognormal_median=float(rng.uniform(0.5, 4.0)),
            membrane_bits=membrane_bits,
            leak_shift=int(rng.integers(0, min(membrane_bits, 6))),
            reset=str(rng.choice(["subtract", "zero"])),
            readout=str(rng.choice(["integrate", "spike_count"])),
            weight_source=str(rng.choice(["rom", "hash"])))
        rule = str(rng.choice(["off", "margin", "confidence"]))
        budget = int(rng.integers((timesteps + 1) // 2, timesteps + 1))
        es = early_stop(arch, rule, budget=budget, min_steps=int(rng.integers(1, budget + 1)),
                        margin=int(rng.integers(0, 2 ** min(arch.output_bits, 6))),
                        alpha=float(rng.uniform(0.25, 4.0)), confidence=float(rng.uniform(0.5, 0.99)))
        config = VerifConfig(f"random_{seed}", arch, es, seed=seed,
                             mask_density=float(rng.uniform(0.1, 0.9)),
                             threshold_scale=float(rng.uniform(0.3, 2.0)))
        probe = golden.run(config.model(), random_inputs(arch, 8, rng))
        if probe.cycles.mean() <= max_cycles:
            return config
    raise RuntimeError(f"no configuration for seed {seed} stays under {max_cycles} cycles per "
                       f"sample in 200 draws; raise max_cycles")


def with_rule(config: VerifConfig, rule: str) -> EarlyStopParams:
    """Return the configuration's early-stop settings switched to another rule."""
    es = config.early_stop
    return early_stop(config.arch, rule, budget=es.budget, min_steps=es.min_steps,
                      margin=es.margin if es.margin else 4, alpha=1.0, confidence=0.85)

