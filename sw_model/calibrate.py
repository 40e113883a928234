"""Calibration of the input-aware early stop on a validation split.

Inputs are the per-step output accumulators of the validation samples, int64 (T, N, n_out), from
the golden model's trace or from ``SpikingNet.infer`` (the two are identical). The stop decision
is the golden model's (:func:`sw_model.golden.rule_fires`, section "Early stop" of
docs/architecture.md), so the accuracy and mean timesteps reported here are the ones the
hardware gives on the same samples.

The search picks the setting with the fewest mean timesteps whose accuracy stays within
``max_drop`` of the accuracy at the full budget with early stop off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from .golden import rule_fires, run, top_two
from .model import Model, validate_early_stop
from .spec import ArchParams, EarlyStopParams, confidence_limit, scale_table

__all__ = [
    "CalibrationResult",
    "simulate_early_stop",
    "calibrate_margin",
    "calibrate_confidence",
    "calibrate",
    "calibrate_early_stop",
]

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(float(a) for a in np.geomspace(0.25, 256.0, 21))
DEFAULT_CONFIDENCES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998,
                       0.999, 0.9995, 0.9999)


@dataclass
class CalibrationResult:
    """The chosen early-stop settings and what they give on the calibration samples.

    ``accuracy_full`` is the accuracy at the budget with early stop off; ``accuracy`` and
    ``mean_steps`` are those of ``early_stop``; ``candidates`` lists every setting tried as
    dicts with the setting's fields plus ``accuracy`` and ``mean_steps``.
    """

    early_stop: EarlyStopParams
    accuracy_full: float
    accuracy: float
    mean_steps: float
    candidates: list[dict] = field(default_factory=list, repr=False)

    @property
    def saved_fraction(self) -> float:
        """Fraction of the budget's timesteps that early stop saves on average."""
        return 1.0 - self.mean_steps / self.early_stop.budget


def simulate_early_stop(arch: ArchParams, es: EarlyStopParams, outputs: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Apply the early-stop decision of the spec to recorded accumulators.

    ``outputs`` is int64 (T, N, n_out) with ``T >= es.budget``. Returns ``(classes, steps)``,
    both int64 (N,): top-1 at the stopping step and the number of steps run. A step ``n`` stops
    the run when ``n == budget`` or when ``n >= min_steps`` and the rule fires.
    """
    validate_early_stop(arch, es)
    outputs = np.asarray(outputs, dtype=np.int64)
    if outputs.ndim != 3 or outputs.shape[2] != arch.n_out or outputs.shape[0] < es.budget:
        raise ValueError(f"outputs must have shape (>= {es.budget}, N, {arch.n_out}), "
                         f"not {outputs.shape}")
    samples = outputs.shape[1]
    steps = np.full(samples, es.budget, dtype=np.int64)
    running = np.ones(samples, dtype=bool)
    if es.rule != "off":
        for n in range(es.min_steps, es.budget):
            fired = rule_fires(arch, es, outputs[n - 1], n) & running
            steps[fired] = n
            running &= ~fired
            if not running.any():
                break
    final = outputs[steps - 1, np.arange(samples)]
    classes, _ = top_two(final)
    return classes.astype(np.int64), steps


def _evaluate(arch: ArchParams, es: EarlyStopParams, outputs: np.ndarray, labels: np.ndarray
              ) -> tuple[float, float]:
    classes, steps = simulate_early_stop(arch, es, outputs)
    return float((classes == labels).mean()), float(steps.mean())


def _choose(arch: ArchParams, settings: list[EarlyStopParams], outputs: np.ndarray,
            labels: np.ndarray, max_drop: float, describe: str) -> CalibrationResult:
    budget = settings[0].budget
    full = replace(settings[0], rule="off", min_steps=1)
    accuracy_full, _ = _evaluate(arch, full, outputs, labels)
    best: tuple | None = None
    candidates = []
    for es in settings:
        acc, mean_steps = _evaluate(arch, es, outputs, labels)
        entry = {**es.to_dict(), "accuracy": acc, "mean_steps": mean_steps}
        entry.pop("scale")
        candidates.append(entry)
        # Small tolerance so a drop of exactly max_drop is accepted despite float rounding.
        if accuracy_full - acc > max_drop + 1e-9:
            continue
        key = (mean_steps, -acc)
        if best is None or key < best[0]:
            best = (key, es, acc, mean_steps)
    if best is None:
        # Cannot happen for valid inputs: the rule that never fires is among the settings.
        best = ((budget, -accuracy_full), full, accuracy_full, float(budget))
    _, es, acc, mean_steps = best
    log.info("%s: accuracy %.4f -> %.4f, mean steps %.2f of %d (%s)", describe, accuracy_full, acc,
             mean_steps, budget, {k: v for k, v in es.to_dict().items() if k != "scale"})
    return CalibrationResult(early_stop=es, accuracy_full=accuracy_full, accuracy=acc,
                             mean_steps=mean_steps, candidates=candidates)


def _check_outputs(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, budget: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    outputs = np.asarray(outputs)
    labels = np.asarray(labels, dtype=np.int64)
    if outputs.ndim != 3 or outputs.shape[0] < budget or outputs.shape[2] != arch.n_out:
        raise ValueError(f"outputs must have shape (>= {budget}, N, {arch.n_out}), "
                         f"not {outputs.shape}")
    if outputs.shape[1] != len(labels) or len(labels) == 0:
        raise ValueError(f"outputs hold {outputs.shape[1]} samples and labels {len(labels)}; "
                         f"both must match and be non-empty")
    if outputs.dtype.kind not in "iu":
        raise ValueError(f"outputs must be integer accumulators, not dtype {outputs.dtype}")
    return outputs.astype(np.int64), labels


def calibrate_margin(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, *,
                     budget: int | None = None, max_drop: float = 0.005,
                     min_steps_options: tuple[int, ...] = (1, 2, 3, 4)) -> CalibrationResult:
    """Choose ``margin`` and ``min_steps`` of the margin rule.

    ``outputs`` int64 (T, N, n_out), ``labels`` int64 (N,). ``max_drop`` is the accepted
    accuracy loss as a fraction (0.005 is half a point). The stop step changes only where the
    margin crosses a top-1 margin ``o_top1 - top2`` seen in ``outputs``, so those values (and one
    above the largest, which never fires) are the only margins tried, with each ``min_steps``.
    The search evaluates the rule in bulk on those margins; the chosen setting is then checked
    with :func:`simulate_early_stop`, the golden model's decision.
    """
    budget = arch.timesteps if budget is None else budget
    outputs, labels = _check_outputs(arch, outputs, labels, budget)
    samples = outputs.shape[1]
    flat = outputs[:budget].reshape(-1, arch.n_out)
    top1, top2 = top_two(flat)
    gap = (flat[np.arange(len(top1)), top1] - top2).reshape(budget, samples)
    correct = (top1.reshape(budget, samples) == labels[None, :])
    margin_max = (1 << arch.output_bits) - 1
    margins = np.unique(np.concatenate([gap.ravel(), [gap.max() + 1]]))
    margins = margins[(margins >= 0) & (margins <= margin_max)]
    accuracy_full = float(correct[budget - 1].mean())

    rows = np.arange(samples)
    best: tuple | None = None
    candidates = []
    for min_steps in sorted({min(t, budget) for t in min_steps_options}):
        window = gap[min_steps - 1:budget - 1]  # steps that may stop before the budget
        for margin in margins:
            fires = window >= margin
            any_fire = fires.any(axis=0)
            steps = np.where(any_fire, fires.argmax(axis=0) + min_steps, budget)
            acc = float(correct[steps - 1, rows].mean())
            mean_steps = float(steps.mean())
            candidates.append({"rule": "margin", "budget": budget, "min_steps": min_steps,
                               "margin": int(margin), "accuracy": acc, "mean_steps": mean_steps})
            if accuracy_full - acc > max_drop + 1e-9:
                continue
            key = (mean_steps, -acc)
            if best is None or key < best[0]:
                best = (key, int(margin), min_steps, acc, mean_steps)
    # margins contains gap.max() + 1, which never fires and loses nothing, unless that value is
    # past the register's range; then fall back to early stop off.
    if best is None:
        es = EarlyStopParams(rule="off", budget=budget)
        acc, mean_steps = accuracy_full, float(budget)
    else:
        _, margin, min_steps, acc, mean_steps = best
        es = EarlyStopParams(rule="margin", budget=budget, min_steps=min_steps, margin=margin)
    checked_acc, checked_steps = _evaluate(arch, es, outputs, labels)
    if (checked_acc, checked_steps) != (acc, mean_steps):
        raise AssertionError(f"bulk margin search and the golden decision disagree for {es}: "
                             f"{(acc, mean_steps)} != {(checked_acc, checked_steps)}")
    log.info("margin rule: accuracy %.4f -> %.4f, mean steps %.2f of %d (margin %d, min_steps %d)",
             accuracy_full, acc, mean_steps, budget, es.margin, es.min_steps)
    return CalibrationResult(early_stop=es, accuracy_full=accuracy_full, accuracy=acc,
                             mean_steps=mean_steps, candidates=candidates)


def calibrate_confidence(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, *,
                         budget: int | None = None, max_drop: float = 0.005,
                         alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                         confidences: tuple[float, ...] = DEFAULT_CONFIDENCES,
                         min_steps_options: tuple[int, ...] = (1, 2, 3)) -> CalibrationResult:
    """Choose ``alpha``, ``confidence`` (p) and ``min_steps`` of the confidence rule.

    The returned settings carry the integer form the hardware reads: ``scale`` from
    :func:`sw_model.spec.scale_table` and ``conf_limit`` from
    :func:`sw_model.spec.confidence_limit`. ``alpha`` is in output LSBs per step; values whose
    ``SCALE[1]`` does not fit 16 bits are skipped.
    """
    budget = arch.timesteps if budget is None else budget
    outputs, labels = _check_outputs(arch, outputs, labels, budget)
    settings = []
    for alpha in alphas:
        try:
            scale = scale_table(alpha, budget)
        except ValueError:
            continue
        for p in confidences:
            for t in sorted(set(min_steps_options)):
                settings.append(EarlyStopParams(rule="confidence", budget=budget,
                                                min_steps=min(t, budget), alpha=alpha,
                                                confidence=p, scale=scale,
                                                conf_limit=confidence_limit(p)))
    if not settings:
        raise ValueError(f"no alpha in {alphas} gives a SCALE table that fits 16 bits")
    return _choose(arch, settings, outputs, labels, max_drop, "confidence rule")


def calibrate(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, rule: str = "margin",
              **options) -> CalibrationResult:
    """Calibrate the named rule (``margin`` or ``confidence``); options go to its function."""
    if rule == "margin":
        return calibrate_margin(arch, outputs, labels, **options)
    if rule == "confidence":
        return calibrate_confidence(arch, outputs, labels, **options)
    raise ValueError(f"rule must be 'margin' or 'confidence', not {rule!r}")


def calibrate_early_stop(model: Model, x_val: np.ndarray, y_val: np.ndarray, *,
                         rule: str = "margin", min_steps: int | None = None,
                         margin: int | str = "auto", confidence: float | str = "auto",
                         alpha: float | str | None = "auto", max_accuracy_drop: float = 0.005,
                         budget: int | None = None) -> EarlyStopParams:
    """Return early-stop settings for ``model``, calibrated on a validation split.

    ``x_val`` contains inputs as :func:`sw_model.golden.run` takes them, ``y_val`` int64 (N,)
    labels. The golden model runs the split once at the full budget and the rules are then
    evaluated on its accumulators. ``"auto"`` values are searched; given values are kept, so a
    fixed ``margin`` or fixed ``alpha`` and ``confidence`` return as given. ``min_steps`` None
    searches 1..4 for the margin rule and 1..3 for the confidence rule. ``rule="off"`` returns
    the full budget without calibration.
    """
    arch = model.arch
    budget = arch.timesteps if budget is None else budget
    if rule == "off":
        return EarlyStopParams(rule="off", budget=budget, min_steps=min_steps or 1)
    full = EarlyStopParams(rule="off", budget=budget)
    outputs = run(model, x_val, full, trace=True).trace.outputs
    if rule == "margin":
        if margin != "auto":
            return EarlyStopParams(rule="margin", budget=budget, min_steps=min_steps or 1,
                                   margin=int(margin))
        options = (1, 2, 3, 4) if min_steps is None else (min_steps,)
        result = calibrate_margin(arch, outputs, y_val, budget=budget, max_drop=max_accuracy_drop,
                                  min_steps_options=options)
        return result.early_stop
    if rule == "confidence":
        alphas = DEFAULT_ALPHAS if alpha in ("auto", None) else (float(alpha),)
        confidences = DEFAULT_CONFIDENCES if confidence == "auto" else (float(confidence),)
        options = (1, 2, 3) if min_steps is None else (min_steps,)
        if len(alphas) == 1 and len(confidences) == 1 and len(options) == 1:
            return EarlyStopParams(rule="confidence", budget=budget, min_steps=options[0],
                                   alpha=alphas[0], confidence=confidences[0],
                                   scale=scale_table(alphas[0], budget),
                                   conf_limit=confidence_limit(confidences[0]))
        result = calibrate_confidence(arch, outputs, y_val, budget=budget,
                                      max_drop=max_accuracy_drop, alphas=alphas,
                                      confidences=confidences, min_steps_options=options)
        return result.early_stop
    raise ValueError(f"rule must be 'off', 'margin' or 'confidence', not {rule!r}")
