"""The early-stop trade-off: accuracy against mean timesteps for both rules, and the saving of
the settings calibrated on the validation split, measured on the test split."""

from __future__ import annotations

import numpy as np

from gen.config import Config
from sw_model import golden
from sw_model.calibrate import (
    DEFAULT_ALPHAS,
    DEFAULT_CONFIDENCES,
    calibrate_confidence,
    calibrate_early_stop,
    calibrate_margin,
)
from sw_model.model import Model
from sw_model.spec import EarlyStopParams

RULES = ("margin", "confidence")


def pareto_front(candidates: list[dict]) -> list[dict]:
    """Return the candidates no other candidate beats in both accuracy and mean steps.

    The result is sorted by mean steps; along it accuracy strictly increases.
    """
    ordered = sorted(candidates, key=lambda c: (c["mean_steps"], -c["accuracy"]))
    front: list[dict] = []
    for candidate in ordered:
        if not front or candidate["accuracy"] > front[-1]["accuracy"]:
            front.append(candidate)
    return front


def calibrated_setting(model: Model, config: Config, rule: str, x_val: np.ndarray,
                       y_val: np.ndarray) -> EarlyStopParams:
    """Return the model's exported setting for its own rule, else calibrate ``rule`` on the
    validation split with the configuration's early-stop options, as the export stage does."""
    if model.early_stop.rule == rule:
        return model.early_stop
    es = config["early_stop"]
    return calibrate_early_stop(model, x_val, y_val, rule=rule,
                                min_steps=None if es["min_steps"] == "auto" else es["min_steps"],
                                margin=es["margin"], confidence=es["confidence"], alpha=es["alpha"],
                                max_accuracy_drop=es["max_accuracy_drop"],
                                budget=model.early_stop.budget)


def evaluate(model: Model, es: EarlyStopParams, x: np.ndarray, y: np.ndarray) -> dict:
    """Return the golden model's accuracy, timesteps and cycles with early-stop settings ``es``."""
    result = golden.run(model, x, es)
    return {"accuracy": float(np.mean(result.classes == y)),
            "mean_steps": float(result.steps.mean()),
            "max_steps": int(result.steps.max()),
            "mean_cycles": float(result.cycles.mean()),
            "mean_bound_cycles": float(result.bound_cycles.mean())}


def tradeoff(model: Model, config: Config, splits: dict[str, np.ndarray], *,
             alphas: tuple[float, ...] | None = None,
             confidences: tuple[float, ...] | None = None) -> dict:
    """Sweep both rules on the test split and evaluate the calibrated settings there.

    Curves come from the settings the calibration searches (``calibrate_margin`` and
    ``calibrate_confidence``, or the confidence rule's ``alphas`` and ``confidences`` when
    given), evaluated on the test split's accumulators. The calibrated settings themselves were
    chosen on the validation split only.
    """
    arch = model.arch
    budget = model.early_stop.budget
    x_test, y_test = splits["x_test"], splits["y_test"]
    full_es = EarlyStopParams(rule="off", budget=budget)
    full = evaluate(model, full_es, x_test, y_test)
    outputs = golden.run(model, x_test, full_es, trace=True).trace.outputs
    searches = {
        # max_drop 1 accepts every setting: only the candidate lists are used here.
        "margin": calibrate_margin(arch, outputs, y_test, budget=budget, max_drop=1.0),
        "confidence": calibrate_confidence(arch, outputs, y_test, budget=budget, max_drop=1.0,
                                           alphas=alphas or DEFAULT_ALPHAS,
                                           confidences=confidences or DEFAULT_CONFIDENCES),
    }
    curves = {}
    calibrated = {}
    for rule in RULES:
        candidates = [{k: c[k] for k in ("accuracy", "mean_steps", "min_steps", "margin",
                                         "alpha", "confidence") if k in c}
                      for c in searches[rule].candidates]
        curves[rule] = {"candidates": len(candidates), "front": pareto_front(candidates)}
        es = calibrated_setting(model, config, rule, splits["x_val"], splits["y_val"])
        measured = evaluate(model, es, x_test, y_test)
        setting = {k: v for k, v in es.to_dict().items() if k != "scale"}
        calibrated[rule] = {
            "setting": setting,
            "exported": es == model.early_stop,
            **measured,
            "accuracy_loss": full["accuracy"] - measured["accuracy"],
            "step_saving": 1.0 - measured["mean_steps"] / budget,
            "cycle_saving": 1.0 - measured["mean_cycles"] / full["mean_cycles"],
        }
    return {"budget": budget, "full_budget": full, "curves": curves, "calibrated": calibrated,
            "max_accuracy_drop": config["early_stop"]["max_accuracy_drop"]}
