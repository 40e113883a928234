"""One benchmark run: train, measure, and write docs/benchmarks.{md,json} and the figures.

The run has two phases. Timed measurements (training of the default model, CPU inference and
simulation speed) run first, one at a time, so that the run's own work does not slow them.
The rest (the kept-fraction sweep, the baselines, the noise sweep and the bitstream builds)
then runs on ``jobs`` worker processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from sw_model import golden

from . import accuracy, early_stop, energy, hardware, page, plots, provenance, speed
from .default_model import DefaultModel, load_bench_config, train_default
from .settings import BenchSettings

log = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
PAGE_NAME = "benchmarks.md"
JSON_NAME = "benchmarks.json"

# Targets other parts of the project set; the page states whether each run meets them.
TARGETS = {
    "golden_seconds_test_split": 2.0,   # golden model, whole test split, one core
    "training_seconds": 300.0,          # default configuration
    "early_stop_step_saving": 0.70,     # at the exported setting, on the test split ...
    "early_stop_accuracy_loss": 0.005,  # ... losing at most this much accuracy
    "prime_accuracy": 0.96,             # default model, golden model, full budget
    "baseline_gap": 0.015,              # trained-weight baseline minus PRIME, full budget
    "logic_share": 0.80,                # share of the device's LUTs (iCE40 logic cells)
}


def _worker_setup(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def _timed(label: str, seconds: dict, function, *args, **kwargs):
    started = time.monotonic()
    log.info("%s: started", label)
    value = function(*args, **kwargs)
    seconds[label] = time.monotonic() - started
    log.info("%s: finished in %.1f s", label, seconds[label])
    return value


def _reported(entry: dict, function, *args) -> dict:
    """Return ``function(*args)``, or ``entry`` with the error when it raises.

    Hardware steps depend on tools and generated code outside this package. A failure there is
    recorded on the page and logged with its traceback, and the rest of the run goes on.
    """
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - recorded on the page, logged in full
        log.error("%s failed: %s", function.__name__, error, exc_info=True)
        return {**entry, "error": f"{type(error).__name__}: {error}"}


def cycles_summary(model, x: np.ndarray) -> dict:
    """Return cycles per inference and the event-driven bound, with and without early stop."""
    out = {}
    for key, es in (("early_stop", model.early_stop),
                    ("full_budget", replace(model.early_stop, rule="off"))):
        result = golden.run(model, x, es)
        mean, bound = float(result.cycles.mean()), float(result.bound_cycles.mean())
        out[key] = {"mean": mean, "bound_mean": bound, "ratio_to_bound": mean / bound,
                    "max": int(result.cycles.max()), "mean_steps": float(result.steps.mean()),
                    "per_sample": [int(c) for c in result.cycles],
                    "per_sample_bound": [int(c) for c in result.bound_cycles]}
    return out


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (``--jobs 1``): no worker start-up."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # handed to the caller through future.result()
            future.set_exception(error)
        return future


def _executor(jobs: int) -> Executor:
    if jobs == 1:
        return InlineExecutor()
    context = multiprocessing.get_context("spawn")  # torch is not safe to use after fork
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_setup,
                               initargs=(logging.getLogger().level,))


def _submit_parallel(pool: Executor, default: DefaultModel, settings: BenchSettings,
                     work_dir: Path) -> dict[str, Future]:
    config, arch = default.config, default.model.arch
    futures: dict[str, Future] = {}
    # Longest jobs first, so the workers finish close together.
    for path in settings.board_configs:
        name = Path(path).stem
        futures[f"board {name}"] = pool.submit(_reported, {"board": name, "config": str(path)},
                                               hardware.build_board, default.model_path,
                                               Path(path), work_dir / "boards" / name)
    noise = {"noise_levels": settings.noise_levels, "noise_repeats": settings.noise_repeats}
    futures["study baselines"] = pool.submit(accuracy.study_part, config, arch, default.data_path,
                                             keep_fractions=(), baselines=True, **noise)
    for fraction in settings.kept_fractions:
        futures[f"study prime {fraction:g}"] = pool.submit(
            accuracy.study_part, config, arch, default.data_path, keep_fractions=(fraction,),
            baselines=False, **noise)
    return futures


def _collect(futures: dict[str, Future], started: float, seconds: dict) -> dict:
    done = {}
    for label, future in futures.items():
        done[label] = future.result()
        log.info("%s: done, %.0f s into the parallel phase", label, time.monotonic() - started)
    seconds["parallel phase"] = time.monotonic() - started
    return done


def _board_entries(builds: list[dict], mean_cycles: float, cpu: dict) -> list[dict]:
    entries = []
    for build in builds:
        entry = dict(build)
        fmax = entry.get("fmax_mhz")
        if fmax:
            rate = fmax * 1e6 / mean_cycles
            entry["inferences_per_s_at_fmax"] = rate
            entry["ratio_to_cpu"] = {key: rate / cpu[key]["inferences_per_s"]
                                     for key in ("golden_batched", "torch_per_sample")}
        # The built clock counts only for a design that fits and meets timing there.
        if entry.get("fits") and entry.get("timing_met"):
            entry["inferences_per_s_at_target"] = entry["target_clock_mhz"] * 1e6 / mean_cycles
        entries.append(entry)
    return entries


def run(settings: BenchSettings, out_dir: Path, work_dir: Path, *, argv: list[str] | None,
        jobs: int = 2, reuse: bool = False, quick: bool = False) -> dict:
    """Run every measurement of ``settings`` and write the page, the JSON and the figures.

    Returns the results dictionary that ``benchmarks.json`` holds.
    """
    started = time.monotonic()
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    outputs = [str(p) for p in _output_paths(out_dir)]
    results: dict = {"schema_version": RESULTS_SCHEMA_VERSION, "quick": quick,
                     "provenance": provenance.collect(argv, ignore=tuple(outputs)),
                     "settings": settings.to_dict(), "targets": TARGETS}
    seconds: dict[str, float] = {}

    # Phase 1: timed measurements, one at a time.
    config = load_bench_config(settings.config, settings.training_overrides)
    default = _timed("default model", seconds, train_default, config, work_dir / "pipeline",
                     reuse=reuse)
    model, splits = default.model, default.splits
    x_test, y_test = splits["x_test"], splits["y_test"]
    cpu = _timed("cpu speed", seconds, speed.cpu_speeds, model, x_test,
                 golden_repeats=settings.golden_repeats, torch_samples=settings.torch_samples)
    verification = []
    for simulator in settings.simulators:
        count = settings.verify_samples.get(simulator, 0)
        verification.append(_timed(f"verify {simulator}", seconds, _reported,
                                   {"simulator": simulator, "samples": count},
                                   hardware.verification_speed, model, x_test[:count], simulator,
                                   work_dir / "verify" / simulator))

    # Phase 2: the sweeps and the builds run on the workers while this process does the cheap
    # studies.
    with _executor(jobs) as pool:
        parallel_start = time.monotonic()
        futures = _submit_parallel(pool, default, settings, work_dir)
        tradeoff = _timed("early-stop trade-off", seconds, early_stop.tradeoff, model, config,
                          splits, alphas=settings.curve_alphas,
                          confidences=settings.curve_confidences)
        cycles = cycles_summary(model, x_test)
        energy_estimate = energy.estimate(model, x_test)
        done = _collect(futures, parallel_start, seconds)

    golden_stage = default.results["golden"]
    training = config.train_config()
    default_fraction = training.keep_fraction
    study = accuracy.merge_parts([done[k] for k in done if k.startswith("study ")])
    same_model = accuracy.row_of(study, "prime", default_fraction)
    results.update(
        dataset={"name": default.results["data"]["dataset"],
                 "train": default.results["data"]["train"], "val": default.results["data"]["val"],
                 "test": default.results["data"]["test"]},
        model={"config": config.name, "config_path": str(settings.config),
               "arch": model.arch.to_dict(), "thresholds": list(model.thresholds),
               "early_stop": {k: v for k, v in model.early_stop.to_dict().items() if k != "scale"},
               "epochs": training.epochs},
        training={"seconds": default.train_seconds, "reused": default.train_reused,
                  "stage_seconds": default.stage_seconds},
        accuracy={
            "default_kept_fraction": default_fraction,
            "default": {"golden_early_stop": golden_stage["accuracy"],
                        "golden_full_budget": golden_stage["accuracy_full_budget"],
                        "mean_steps": golden_stage["timesteps_mean"]},
            # The study trains the default fraction again with the same seed and thresholds, so its
            # integer inference must reproduce the main job's golden-model accuracy.
            "study_matches_golden": None if same_model is None else
            abs(same_model["test_accuracy"] - golden_stage["accuracy_full_budget"]) < 1e-12,
            "study": study,
        },
        early_stop=tradeoff,
        cpu=cpu,
        cycles=cycles,
        boards=_board_entries([done[k] for k in done if k.startswith("board ")],
                              cycles["early_stop"]["mean"], cpu),
        verification=verification,
        energy=energy_estimate,
    )
    seconds["total"] = time.monotonic() - started
    results["seconds"] = seconds
    write_outputs(results, out_dir)
    return results


def _output_paths(out_dir: Path) -> list[Path]:
    paths = [out_dir / PAGE_NAME, out_dir / JSON_NAME] + [out_dir / n for n in plots.FIGURES]
    root = provenance.ROOT
    relative = []
    for path in paths:
        try:
            relative.append(path.resolve().relative_to(root))
        except ValueError:
            relative.append(path)
    return relative


def write_outputs(results: dict, out_dir: Path) -> None:
    """Write the figures, ``benchmarks.json`` and ``benchmarks.md`` into ``out_dir``."""
    figures = plots.draw_all(results, out_dir)
    text = json.dumps(results, indent=1, sort_keys=False) + "\n"
    _write_atomic(out_dir / JSON_NAME, text)
    _write_atomic(out_dir / PAGE_NAME, page.render(results, {n: p.name for n, p in figures.items()}))
    log.info("wrote %s, %s and %d figures", out_dir / PAGE_NAME, out_dir / JSON_NAME, len(figures))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
