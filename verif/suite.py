"""Shared set-up of the pytest regression: generated cores cached on disk, one per configuration.

Generating a core's Verilog takes seconds and compiling it tens of seconds, so both are done once
per configuration and reused by every test and every pytest-xdist worker that needs them. The
cache key covers the configuration and the source of ``hdl/`` and ``sw_model/``, so an edited
generator or golden model never meets a stale core.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw_model.model import Model, load_model

from .build import file_lock, simulator_available, simulator_from_env
from .configs import VerifConfig
from .regression import CaseOutcome, generate, run_case

__all__ = ["ROOT", "build_root", "selected_simulator", "Core", "prepare", "run"]

ROOT = Path(__file__).resolve().parent.parent


def build_root() -> Path:
    """Return the folder of cached cores and builds: ``$VERIF_BUILD_ROOT`` or ``build/verif``."""
    return Path(os.environ.get("VERIF_BUILD_ROOT") or ROOT / "build" / "verif").resolve()


def selected_simulator() -> tuple[str, str | None]:
    """Return the simulator named by ``$SIM`` and, when it is not installed, why to skip."""
    simulator = simulator_from_env()
    if simulator_available(simulator):
        return simulator, None
    tool = "iverilog" if simulator == "icarus" else "verilator"
    return simulator, f"SIM={simulator} but {tool} is not on PATH"


def _source_digest() -> str:
    digest = hashlib.sha256()
    for folder in ("hdl", "sw_model"):
        for path in sorted((ROOT / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Core:
    """A generated core: its configuration, model file and Verilog."""

    config: VerifConfig
    model_path: Path
    verilog: Path

    @property
    def model(self) -> Model:
        return load_model(self.model_path)


def prepare(config: VerifConfig) -> Core:
    """Generate (or reuse) the model file and Verilog of a configuration, with trace and scores."""
    key = hashlib.sha256(f"{config!r}|{_source_digest()}".encode()).hexdigest()[:12]
    folder = build_root() / "cores" / f"{config.name}-{key}"
    with file_lock(folder.with_suffix(".lock")):
        model_path = folder / "model.npz"
        verilog = folder / "snn_accelerator.v"
        if not (model_path.is_file() and verilog.is_file()):
            generate(config.model(), folder)
    return Core(config, model_path, verilog)


def run(core: Core, testcase: str, work_dir: Path, samples: np.ndarray, *, simulator: str,
        **case) -> CaseOutcome:
    """Run one cocotb test of ``verif.tb_core`` on a prepared core with the given samples.

    Extra keyword arguments become fields of the case (see ``verif.testbench.Case``).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    samples_path = work_dir / "samples.npy"
    np.save(samples_path, np.asarray(samples, dtype=np.int64))
    fields = {"model": str(core.model_path), "samples": str(samples_path)}
    fields.update(case)
    return run_case(core.verilog, testcase, fields, work_dir, build_root=build_root(),
                    simulator=simulator)
