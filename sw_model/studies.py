"""Baseline and robustness studies of PRIME on one fixed data split.

:func:`run_study` trains and evaluates, on the same split:

- the trained-weight baseline: every synapse kept, weights trained with the forward pass
  rounding them to ``weight_bits`` (quantization-aware), evaluated in integer inference;
- the same baseline trained and evaluated with float weights (no rounding);
- random weights without pruning and without training (every synapse kept);
- PRIME at each kept fraction.

Thresholds are listed per model (see :func:`run_study`). For every integer model the study
reports three things. The first is the test accuracy at the full budget. The second is the
early-stop accuracy and mean timesteps, with the margin rule calibrated on the validation split
and the training split as unlabeled samples (see :mod:`sw_model.calibrate`). The third is the
test accuracy under multiplicative Gaussian noise on the weights, without retraining.

The noise study evaluates in float: a weight read multiplies the integer weight by
``1 + sigma * N(0, 1)``, and the membrane arithmetic stays the spec's (floor, saturation,
threshold) on the resulting non-integer values. Two modes are measured. Read noise draws anew
for every sample, timestep and synapse, so it averages out over the many reads of a
classification. Static noise draws once per noise seed and keeps the draw for the whole test
split, like a device programmed with an error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .calibrate import DEFAULT_MAX_DROP, calibrate_margin, simulate_early_stop
from .data import Dataset
from .spec import ArchParams, layer_weights
from .torch_model import FixedNet, SpikingNet
from .train import (TrainConfig, baseline_config, default_thresholds, train_topology,
                    train_weights)

__all__ = ["StudyConfig", "evaluate", "noise_accuracy", "run_study", "render_markdown",
           "write_report"]

log = logging.getLogger(__name__)

NOISE_MODES = ("read", "static")
# Descriptions of the noise modes' draws, for tables and pages.
NOISE_DESCRIPTIONS = {
    "read": "drawn anew for every sample, timestep and synapse (read noise)",
    "static": "drawn once per noise seed and kept for the whole test split (a programming "
              "error of the device)",
}


@dataclass(frozen=True)
class StudyConfig:
    """Models and measurements of a study.

    ``keep_fractions`` are the kept fractions of the PRIME runs. ``noise_levels`` are relative
    standard deviations of the read noise (0.05 is 5%), each evaluated ``noise_repeats`` times
    with different noise seeds. ``max_drop`` is the early-stop calibration budget (see
    :func:`sw_model.calibrate.calibrate_margin`).
    """

    keep_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2)
    noise_repeats: int = 5
    max_drop: float = DEFAULT_MAX_DROP
    seed: int = 0
    baselines: bool = True


def noise_accuracy(net: SpikingNet, x: np.ndarray, y: np.ndarray, level: float, repeats: int,
                   seed: int = 0, mode: str = "read") -> tuple[float, float]:
    """Return mean and standard deviation of the accuracy under weight noise ``level``.

    ``mode`` ``"read"`` draws the noise at every synapse read, ``"static"`` once per repeat for
    the whole split (see :meth:`sw_model.torch_model.SpikingNet.forward`). Level 0 runs once
    without noise, which for an integer network is the exact integer result.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {NOISE_MODES}, not {mode!r}")
    inputs = torch.as_tensor(np.asarray(x))
    accuracies = []
    net.eval()
    with torch.no_grad():
        for repeat in range(repeats if level else 1):
            generator = torch.Generator().manual_seed(seed * 1000 + repeat)
            noise = {"read_noise" if mode == "read" else "static_noise": level}
            outputs = net(inputs, generator=generator, **noise)
            # NumPy's argmax returns the lowest index among ties, as the spec's readout does.
            classes = outputs[-1].numpy().argmax(axis=1)
            accuracies.append(float((classes == y).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def _noise_rows(net: SpikingNet, data: Dataset, study: StudyConfig) -> list[dict]:
    rows = []
    for mode in NOISE_MODES:
        for level in study.noise_levels:
            mean, std = noise_accuracy(net, data.x_test, data.y_test, level, study.noise_repeats,
                                       study.seed, mode)
            rows.append({"mode": mode, "level": level, "accuracy": mean, "std": std})
    return rows


def evaluate(net: SpikingNet, data: Dataset, study: StudyConfig) -> dict:
    """Measure one integer network: full-budget and early-stop accuracy, and read noise.

    Returns a dict with ``test_accuracy``, ``val_accuracy``, ``early_stop`` (settings),
    ``early_stop_accuracy``, ``early_stop_steps`` (mean on the test split), ``budget`` and
    ``noise`` (a list of ``{level, accuracy, std}``).
    """
    arch = net.arch
    test_outputs = net.infer(data.x_test)
    val_outputs = net.infer(data.x_val)
    calibration = calibrate_margin(arch, val_outputs, data.y_val, max_drop=study.max_drop,
                                   unlabeled=net.infer(data.x_train))
    classes, steps = simulate_early_stop(arch, calibration.early_stop, test_outputs)
    early_stop = calibration.early_stop.to_dict()
    early_stop.pop("scale")
    return {
        "test_accuracy": float((test_outputs[-1].argmax(axis=1) == data.y_test).mean()),
        "val_accuracy": float((val_outputs[-1].argmax(axis=1) == data.y_val).mean()),
        "early_stop": early_stop,
        "early_stop_accuracy": float((classes == data.y_test).mean()),
        "early_stop_steps": float(steps.mean()),
        "budget": calibration.early_stop.budget,
        "noise": _noise_rows(net, data, study),
    }


def _masked_net(arch: ArchParams, masks: list[np.ndarray], thresholds: list[int]) -> FixedNet:
    weights = [layer_weights(arch, k) * masks[k].astype(np.int64) for k in range(arch.n_layers)]
    return FixedNet(arch, thresholds, weights)


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_study(arch: ArchParams, data: Dataset, cfg: TrainConfig, study: StudyConfig,
              weight_cfg: TrainConfig | None = None) -> dict:
    """Run every model of the study and return the results as a JSON-ready dict.

    ``cfg`` trains PRIME (its ``keep_fraction`` is replaced by each of
    ``study.keep_fractions``); ``weight_cfg`` trains the baselines (default:
    :func:`sw_model.train.baseline_config` of ``cfg``). With
    ``cfg.thresholds`` set, every model uses those thresholds. Otherwise each PRIME run takes
    :func:`sw_model.train.default_thresholds` at its own kept fraction, because the spread of
    the synaptic sums grows with it, and the baselines take the thresholds of PRIME at
    ``cfg.keep_fraction`` (the same network as the default PRIME model).
    """
    weight_cfg = weight_cfg or baseline_config(cfg)

    def thresholds_for(fraction: float) -> list[int]:
        return list(cfg.thresholds or default_thresholds(arch, data, fraction))

    baseline_thresholds = thresholds_for(cfg.keep_fraction)
    log.info("study on %s, baseline thresholds %s", data.summary(), baseline_thresholds)
    rows: list[dict] = []

    if study.baselines:
        (quantized, _), wall, cpu = _timed(train_weights, arch, data, weight_cfg, study.seed,
                                           thresholds=baseline_thresholds)
        integer = FixedNet(arch, baseline_thresholds, quantized.integer_weights())
        rows.append({"model": f"trained weights, {arch.weight_bits}-bit (QAT)",
                     "kind": "weights_quantized", "keep_fraction": 1.0,
                     "thresholds": baseline_thresholds, "train_seconds": wall,
                     "train_cpu_seconds": cpu, **evaluate(integer, data, study)})
        (float_net, _), wall, cpu = _timed(train_weights, arch, data, weight_cfg, study.seed,
                                           thresholds=baseline_thresholds, quantize=False)
        rows.append({"model": "trained weights, float", "kind": "weights_float",
                     "keep_fraction": 1.0, "thresholds": baseline_thresholds,
                     "train_seconds": wall, "train_cpu_seconds": cpu,
                     **_evaluate_float(float_net, data, study)})
        every_synapse = [np.ones((arch.sizes[k], arch.sizes[k + 1]), np.uint8)
                         for k in range(arch.n_layers)]
        unpruned = _masked_net(arch, every_synapse, baseline_thresholds)
        rows.append({"model": "random weights, no pruning", "kind": "random_unpruned",
                     "keep_fraction": 1.0, "thresholds": baseline_thresholds,
                     "train_seconds": 0.0, "train_cpu_seconds": 0.0,
                     **evaluate(unpruned, data, study)})

    for fraction in study.keep_fractions:
        prime_cfg = replace(cfg, keep_fraction=fraction)
        result, wall, cpu = _timed(train_topology, arch, data, prime_cfg, study.seed,
                                   thresholds=thresholds_for(fraction))
        net = _masked_net(arch, result.masks, result.thresholds)
        rows.append({"model": f"PRIME, {fraction:.0%} kept", "kind": "prime",
                     "keep_fraction": fraction, "thresholds": result.thresholds,
                     "train_seconds": wall, "train_cpu_seconds": cpu,
                     **evaluate(net, data, study)})
        log.info("PRIME %.0f%% kept: test accuracy %.4f", 100 * fraction, rows[-1]["test_accuracy"])

    return {
        "dataset": data.summary(),
        "arch": arch.to_dict(),
        "train_config": cfg.to_dict(),
        "weight_train_config": weight_cfg.to_dict(),
        "study": asdict(study),
        "torch_version": torch.__version__,
        "rows": rows,
    }


def _evaluate_float(net: SpikingNet, data: Dataset, study: StudyConfig) -> dict:
    """Measure a network with float weights: full-budget accuracy and read noise only.

    Its outputs are not integers, so early stop (an integer rule) is not calibrated for it.
    """
    test_accuracy, _ = noise_accuracy(net, data.x_test, data.y_test, 0.0, 1)
    val_accuracy, _ = noise_accuracy(net, data.x_val, data.y_val, 0.0, 1)
    return {"test_accuracy": test_accuracy, "val_accuracy": val_accuracy,
            "early_stop": None, "early_stop_accuracy": None, "early_stop_steps": None,
            "budget": net.arch.timesteps, "noise": _noise_rows(net, data, study)}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def render_markdown(report: dict) -> str:
    """Return the study as a Markdown page: a table of accuracies and one per noise mode."""
    arch = report["arch"]
    levels = report["study"]["noise_levels"]
    lines = [
        "# PRIME baseline study",
        "",
        f"Data: {report['dataset']}. Network: sizes {arch['sizes']}, {arch['timesteps']} "
        f"timesteps, {arch['weight_bits']}-bit weights (sigma {arch['weight_sigma']}), "
        f"{arch['membrane_bits']}-bit membrane, leak shift {arch['leak_shift']}, readout "
        f"{arch['readout']}.",
        "",
        "Accuracies are on the test split in percent, from integer inference (identical to the "
        "golden model) except for the float-weight baseline. Early stop uses the margin rule "
        "calibrated on the validation and training splits.",
        "",
        "| model | kept | thresholds | test acc. | early-stop acc. | mean steps | steps saved "
        "| train s (CPU s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        steps = row["early_stop_steps"]
        saved = "n/a" if steps is None else f"{100 * (1 - steps / row['budget']):.0f}%"
        steps_text = "n/a" if steps is None else f"{steps:.2f} / {row['budget']}"
        lines.append(f"| {row['model']} | {row['keep_fraction']:.0%} | {row['thresholds']} | "
                     f"{_percent(row['test_accuracy'])} | {_percent(row['early_stop_accuracy'])} | "
                     f"{steps_text} | {saved} | {row['train_seconds']:.0f} "
                     f"({row['train_cpu_seconds']:.0f}) |")
    for mode in NOISE_MODES:
        lines += [
            "",
            f"## Weight noise: {mode}",
            "",
            "Test accuracy in percent (mean ± standard deviation over "
            f"{report['study']['noise_repeats']} noise seeds) when every weight is multiplied "
            f"by 1 + sigma * N(0, 1), {NOISE_DESCRIPTIONS[mode]}, without retraining. Evaluated in "
            "float: the membrane arithmetic is the spec's, on non-integer values.",
            "",
            "| model | " + " | ".join(f"sigma {level:.0%}" for level in levels) + " |",
            "| --- | " + " | ".join("---" for _ in levels) + " |",
        ]
        for row in report["rows"]:
            cells = [f"{100 * e['accuracy']:.1f} ± {100 * e['std']:.1f}"
                     for e in row["noise"] if e["mode"] == mode]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``study.json`` and ``study.md`` into the folder ``out``; return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "study.json"
    markdown_path = out / "study.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path.write_text(render_markdown(report))
    return json_path, markdown_path
