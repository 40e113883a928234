"""Calibration of the input-aware early stop on a validation split.

Inputs are the per-step output accumulators of the validation samples, int64 (T, N, n_out), from
the golden model's trace or from ``SpikingNet.infer`` (the two are identical). The stop decision
is the golden model's (:func:`sw_model.golden.rule_fires`, section "Early stop" of
docs/architecture.md), so the accuracy and mean timesteps reported here are the ones the
hardware gives on the same samples.

The search picks the setting with the fewest mean timesteps whose loss stays within
``max_drop``. The loss is one of two criteria:

- ``"agreement"`` (default): the fraction of samples whose class differs from the class at the
  full budget with early stop off. It bounds the accuracy drop from above, and it varies less
  between splits than the drop itself, so settings chosen with it transfer better to new data.
- ``"accuracy"``: the accuracy at the full budget minus the accuracy with early stop.

The agreement criterion needs no labels, so unlabeled samples such as the training split can
join the validation samples. That matters when the validation split also chose the training
epoch (``TrainConfig.keep_best``), because the chosen epoch suits those samples. For one digits
model, margin 12 changed 0.4% of the validation classes, 1.9% of the training classes and 1.6%
of the test classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .golden import rule_fires, run, top_two
from .model import Model, validate_early_stop
from .spec import ArchParams, EarlyStopParams, confidence_limit, scale_table

# Default loss budget, a fraction. Over six split seeds of the default digits model, 0.001 kept the
# test drop within 0.44 points and saved 75 to 79% of the timesteps, where 0.0025 lost up to 0.89.
DEFAULT_MAX_DROP = 0.001

__all__ = [
    "DEFAULT_MAX_DROP",
    "CalibrationResult",
    "simulate_early_stop",
    "calibrate_margin",
    "calibrate_confidence",
    "calibrate",
    "calibrate_early_stop",
]

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(float(a) for a in np.geomspace(0.25, 256.0, 21))
CRITERIA = ("agreement", "accuracy")
DEFAULT_CONFIDENCES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998,
                       0.999, 0.9995, 0.9999)


@dataclass
class CalibrationResult:
    """The chosen early-stop settings and what they give on the calibration samples.

    ``accuracy_full`` is the accuracy at the budget with early stop off. ``accuracy``,
    ``disagreement`` (fraction of classes that differ from the full-budget ones) and
    ``mean_steps`` belong to ``early_stop``. ``candidates`` lists every setting tried, as dicts
    of the setting's fields plus those three values.
    """

    early_stop: EarlyStopParams
    accuracy_full: float
    accuracy: float
    disagreement: float
    mean_steps: float
    criterion: str
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


@dataclass(frozen=True)
class _Score:
    accuracy: float
    disagreement: float
    mean_steps: float


class _Search:
    """Tracks the setting with the fewest mean steps whose loss stays within ``max_drop``."""

    def __init__(self, criterion: str, max_drop: float, full_classes: np.ndarray,
                 labels: np.ndarray):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, not {criterion!r}")
        if not 0.0 <= max_drop <= 1.0:
            raise ValueError(f"max_drop must lie in 0..1 (a fraction), not {max_drop!r}")
        self.criterion = criterion
        self.max_drop = max_drop
        self.full_classes = full_classes
        self.labels = labels
        self.labeled = len(labels)  # the first samples carry labels, the rest are unlabeled
        self.accuracy_full = float((full_classes[:self.labeled] == labels).mean())
        self.best: tuple | None = None
        self.candidates: list[dict] = []

    def score(self, classes: np.ndarray, steps: np.ndarray) -> _Score:
        """Score one setting: accuracy on the labeled samples, the rest on all samples."""
        return _Score(accuracy=float((classes[:self.labeled] == self.labels).mean()),
                      disagreement=float((classes != self.full_classes).mean()),
                      mean_steps=float(steps.mean()))

    def offer(self, es: EarlyStopParams, score: _Score) -> None:
        entry = {**es.to_dict(), "accuracy": score.accuracy, "disagreement": score.disagreement,
                 "mean_steps": score.mean_steps}
        entry.pop("scale")
        self.candidates.append(entry)
        if self.criterion == "agreement":
            loss = score.disagreement
        else:
            loss = self.accuracy_full - score.accuracy
        # The tolerance accepts a loss of exactly max_drop despite float rounding.
        if loss > self.max_drop + 1e-9:
            return
        key = (score.mean_steps, -score.accuracy)
        if self.best is None or key < self.best[0]:
            self.best = (key, es, score)

    def result(self, budget: int, describe: str) -> CalibrationResult:
        if self.best is None:
            # Only reachable when no candidate can be the rule that never fires.
            es = EarlyStopParams(rule="off", budget=budget)
            score = _Score(self.accuracy_full, 0.0, float(budget))
        else:
            _, es, score = self.best
        log.info("%s: accuracy %.4f -> %.4f, %.2f%% of classes changed, mean steps %.2f of %d "
                 "(%s)", describe, self.accuracy_full, score.accuracy, 100 * score.disagreement,
                 score.mean_steps, budget,
                 {k: v for k, v in es.to_dict().items() if k not in ("scale", "budget")})
        return CalibrationResult(early_stop=es, accuracy_full=self.accuracy_full,
                                 accuracy=score.accuracy, disagreement=score.disagreement,
                                 mean_steps=score.mean_steps, criterion=self.criterion,
                                 candidates=self.candidates)


def _full_classes(outputs: np.ndarray, budget: int) -> np.ndarray:
    classes, _ = top_two(outputs[budget - 1])
    return classes.astype(np.int64)


def _check_outputs(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, budget: int,
                   unlabeled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate the accumulators and return them, with the unlabeled ones appended, as int64."""
    labels = np.asarray(labels, dtype=np.int64)
    parts = [("outputs", np.asarray(outputs))]
    if unlabeled is not None:
        parts.append(("unlabeled outputs", np.asarray(unlabeled)))
    for name, array in parts:
        if array.ndim != 3 or array.shape[0] < budget or array.shape[2] != arch.n_out:
            raise ValueError(f"{name} must have shape (>= {budget}, N, {arch.n_out}), "
                             f"not {array.shape}")
        if array.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integer accumulators, not dtype {array.dtype}")
    if parts[0][1].shape[1] != len(labels) or len(labels) == 0:
        raise ValueError(f"outputs hold {parts[0][1].shape[1]} samples and labels {len(labels)}; "
                         f"both must match and be non-empty")
    pooled = np.concatenate([array[:budget].astype(np.int64) for _, array in parts], axis=1)
    return pooled, labels


def calibrate_margin(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, *,
                     budget: int | None = None, max_drop: float = DEFAULT_MAX_DROP,
                     criterion: str = "agreement", unlabeled: np.ndarray | None = None,
                     min_steps_options: tuple[int, ...] = (1, 2, 3, 4)) -> CalibrationResult:
    """Choose ``margin`` and ``min_steps`` of the margin rule.

    ``outputs`` int64 (T, N, n_out), ``labels`` int64 (N,). ``max_drop`` is the accepted loss
    under ``criterion`` as a fraction (0.005 is half a point). ``unlabeled`` (T, M, n_out) adds
    samples without labels: the agreement criterion and the mean steps then count all N + M
    samples, and the accuracy only the labeled ones. The stop step changes only where
    the margin crosses a top-1 margin ``o_top1 - top2`` seen in ``outputs``, so those values
    (and one above the largest, which never fires) are the only margins tried, with each
    ``min_steps``. The search evaluates the rule in bulk on those margins, and the chosen
    setting is then checked with :func:`simulate_early_stop`, the golden model's decision.
    """
    budget = arch.timesteps if budget is None else budget
    outputs, labels = _check_outputs(arch, outputs, labels, budget, unlabeled)
    samples = outputs.shape[1]
    flat = outputs.reshape(-1, arch.n_out)
    top1, top2 = top_two(flat)
    gap = (flat[np.arange(len(top1)), top1] - top2).reshape(budget, samples)
    top1 = top1.reshape(budget, samples)
    margin_max = (1 << arch.output_bits) - 1
    margins = np.unique(np.concatenate([gap.ravel(), [gap.max() + 1]]))
    margins = margins[(margins >= 0) & (margins <= margin_max)]

    search = _Search(criterion, max_drop, top1[budget - 1], labels)
    rows = np.arange(samples)
    for min_steps in sorted({min(t, budget) for t in min_steps_options}):
        window = gap[min_steps - 1:budget - 1]  # the steps that may stop before the budget
        for margin in margins:
            fires = window >= margin
            if len(window):
                steps = np.where(fires.any(axis=0), fires.argmax(axis=0) + min_steps, budget)
            else:
                steps = np.full(samples, budget)
            es = EarlyStopParams(rule="margin", budget=budget, min_steps=min_steps,
                                 margin=int(margin))
            search.offer(es, search.score(top1[steps - 1, rows], steps))
    result = search.result(budget, "margin rule")

    classes, steps = simulate_early_stop(arch, result.early_stop, outputs)
    checked = search.score(classes, steps)
    if (checked.accuracy, checked.mean_steps) != (result.accuracy, result.mean_steps):
        raise AssertionError(f"bulk margin search and the golden decision disagree for "
                             f"{result.early_stop}: {result} != {checked}")
    return result


def calibrate_confidence(arch: ArchParams, outputs: np.ndarray, labels: np.ndarray, *,
                         budget: int | None = None, max_drop: float = DEFAULT_MAX_DROP,
                         criterion: str = "agreement", unlabeled: np.ndarray | None = None,
                         alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                         confidences: tuple[float, ...] = DEFAULT_CONFIDENCES,
                         min_steps_options: tuple[int, ...] = (1, 2, 3)) -> CalibrationResult:
    """Choose ``alpha``, ``confidence`` (p) and ``min_steps`` of the confidence rule.

    Arguments are as for :func:`calibrate_margin`. The returned settings carry the integer form
    the hardware reads: ``scale`` from :func:`sw_model.spec.scale_table` and ``conf_limit`` from
    :func:`sw_model.spec.confidence_limit`. ``alpha`` is in output LSBs per step, and values
    whose ``SCALE[1]`` does not fit 16 bits are skipped. Every setting runs through
    :func:`simulate_early_stop`, the golden model's decision.
    """
    budget = arch.timesteps if budget is None else budget
    outputs, labels = _check_outputs(arch, outputs, labels, budget, unlabeled)
    search = _Search(criterion, max_drop, _full_classes(outputs, budget), labels)
    tried = 0
    for alpha in alphas:
        try:
            scale = scale_table(alpha, budget)
        except ValueError:
            continue
        for p in confidences:
            for min_steps in sorted({min(t, budget) for t in min_steps_options}):
                es = EarlyStopParams(rule="confidence", budget=budget, min_steps=min_steps,
                                     alpha=alpha, confidence=p, scale=scale,
                                     conf_limit=confidence_limit(p))
                search.offer(es, search.score(*simulate_early_stop(arch, es, outputs)))
                tried += 1
    if not tried:
        raise ValueError(f"no alpha in {alphas} gives a SCALE table that fits 16 bits")
    return search.result(budget, "confidence rule")


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
                         alpha: float | str | None = "auto", max_accuracy_drop: float = DEFAULT_MAX_DROP,
                         criterion: str = "agreement", budget: int | None = None,
                         x_unlabeled: np.ndarray | None = None) -> EarlyStopParams:
    """Return early-stop settings for ``model``, calibrated on a validation split.

    ``x_val`` contains inputs as :func:`sw_model.golden.run` takes them, ``y_val`` int64 (N,)
    labels. The golden model runs the split once at the full budget and the rules are then
    evaluated on its accumulators. ``"auto"`` values are searched; given values are kept, so a
    fixed ``margin`` or fixed ``alpha`` and ``confidence`` return as given. ``min_steps`` None
    searches 1..4 for the margin rule and 1..3 for the confidence rule. ``max_accuracy_drop``
    bounds the loss under ``criterion`` (see the module docstring). ``x_unlabeled`` adds inputs
    without labels, such as the training split, to the agreement criterion and the mean steps
    (see :func:`calibrate_margin`). ``rule="off"`` returns the full budget without calibration.
    """
    arch = model.arch
    budget = arch.timesteps if budget is None else budget
    if rule == "off":
        return EarlyStopParams(rule="off", budget=budget, min_steps=min_steps or 1)
    full = EarlyStopParams(rule="off", budget=budget)
    outputs = run(model, x_val, full, trace=True).trace.outputs
    unlabeled = None
    if x_unlabeled is not None and len(x_unlabeled):
        unlabeled = run(model, x_unlabeled, full, trace=True).trace.outputs
    if rule == "margin":
        if margin != "auto":
            return EarlyStopParams(rule="margin", budget=budget, min_steps=min_steps or 1,
                                   margin=int(margin))
        options = (1, 2, 3, 4) if min_steps is None else (min_steps,)
        result = calibrate_margin(arch, outputs, y_val, budget=budget, max_drop=max_accuracy_drop,
                                  criterion=criterion, unlabeled=unlabeled,
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
                                      max_drop=max_accuracy_drop, criterion=criterion,
                                      unlabeled=unlabeled, alphas=alphas,
                                      confidences=confidences, min_steps_options=options)
        return result.early_stop
    raise ValueError(f"rule must be 'off', 'margin' or 'confidence', not {rule!r}")
