"""Run the cocotb tests of ``verif.tb_core`` on generated cores and collect their results.

:func:`run_case` is the one entry point behind both the pytest regression (``tests/test_verif_*``)
and :func:`verify_samples`, which the main pipeline calls. It writes the case file, runs one
cocotb test through ``cocotb_tools.runner`` and reads the results file the test wrote. When the
checker found a mismatch, it runs the case again on a waveform build, up to the failing sample,
so that the failure comes with a waveform file.

``runner.test`` only raises under pytest (as SystemExit); here the results file decides in
both cases, so the functions behave the same from a script and from a test.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sw_model.model import Model, save_model

from .build import TOPLEVEL, Build, build, simulator_available

__all__ = ["CaseOutcome", "VerifyOutcome", "generate", "run_case", "verify_samples"]

log = logging.getLogger(__name__)

TEST_MODULE = "verif.tb_core"


def generate(model: Model, out_dir: Path, *, trace: bool = True, expose_scores: bool = True,
             name: str = TOPLEVEL) -> tuple[Path, Path]:
    """Write ``model.npz`` and the core's Verilog into ``out_dir``; return both paths."""
    from hdl.verilog import generate_verilog

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = save_model(model, out_dir / "model.npz")
    verilog = generate_verilog(model, out_dir / f"{name}.v", trace=trace,
                               expose_scores=expose_scores, name=name)
    return model_path, Path(verilog)


@dataclass
class CaseOutcome:
    """Results of one cocotb test run, with the paths needed to look into a failure."""

    testcase: str
    passed: bool
    results: dict
    work_dir: Path
    log_file: Path
    seconds: float
    waveform: Path | None = None

    @property
    def first_mismatch(self) -> str | None:
        first = self.results.get("first_mismatch")
        if first:
            return first["text"]
        problems = self.results.get("problems")
        if problems:
            return "; ".join(problems)
        if not self.passed:
            return self.results.get("error") or f"cocotb test {self.testcase} failed; see {self.log_file}"
        return None

    @property
    def samples(self) -> list[dict]:
        return [s for s in self.results.get("samples", []) if not s["aborted"]]

    def describe(self) -> str:
        """Return a failure message: the first mismatch, the waveform and the log file."""
        lines = [f"{self.testcase}: {self.first_mismatch}"]
        if self.waveform:
            lines.append(f"waveform: {self.waveform}")
        lines.append(f"log: {self.log_file}")
        return "\n".join(lines)


def _write_case(work_dir: Path, case: dict) -> Path:
    path = work_dir / "case.json"
    path.write_text(json.dumps(case, indent=1))
    return path


def _first_failing_sample(results: dict) -> int | None:
    first = results.get("first_mismatch")
    if first and first.get("sample", -1) >= 0:
        return int(first["sample"])
    return None


def _simulate(sim: Build, testcase: str, case: dict, work_dir: Path, *,
              waves: bool) -> tuple[bool, dict, Path]:
    """Run one cocotb test once and return (passed, results, log file)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results_path = work_dir / "results.json"
    results_path.unlink(missing_ok=True)
    case = dict(case, results=str(results_path))
    case_path = _write_case(work_dir, case)
    log_file = work_dir / "sim.log"
    xml = work_dir / "results.xml"

    runner = sim.runner()
    test_args, plusargs = [], []
    if waves and sim.simulator == "verilator":
        test_args = ["--trace-file", str(work_dir / sim.waveform_name)]
    elif waves:
        plusargs = [f"+verif_waves={work_dir / sim.waveform_name}"]
    exit_code = 0
    try:
        runner.test(test_module=TEST_MODULE, hdl_toplevel=sim.toplevel, hdl_toplevel_lang="verilog",
                    testcase=testcase,
                    build_dir=sim.directory, test_dir=work_dir, results_xml=str(xml),
                    extra_env={"VERIF_CASE": str(case_path)}, waves=waves, log_file=log_file,
                    test_args=test_args, plusargs=plusargs, timescale=None)
    except SystemExit as stop:  # raised by runner.test under pytest when the cocotb test fails
        exit_code = stop.code if isinstance(stop.code, int) else 1

    passed = False
    if xml.is_file():
        from cocotb_tools.runner import get_results
        try:
            total, failed = get_results(xml)
            passed = total > 0 and failed == 0
        except RuntimeError:
            passed = False
    results = json.loads(results_path.read_text()) if results_path.is_file() else {
        "error": f"the cocotb test wrote no results (exit code {exit_code}); see {log_file}"}
    return passed, results, log_file


def run_case(verilog: Path, testcase: str, case: dict, work_dir: Path, *, build_root: Path,
             simulator: str = "verilator", waveform_on_failure: bool = True,
             runtime_root: Path | None = None) -> CaseOutcome:
    """Build ``verilog`` (or reuse its build) and run the cocotb test ``testcase`` on ``case``.

    ``case`` contains the fields of :class:`verif.testbench.Case` except ``results``. On a failure,
    the case runs again with waveforms enabled, up to the first failing sample when the checker
    names one, and the outcome carries the waveform path.
    """
    work_dir = Path(work_dir)
    started = time.monotonic()
    sim = build(verilog, build_root, simulator, runtime_root=runtime_root)
    passed, results, log_file = _simulate(sim, testcase, case, work_dir, waves=False)
    outcome = CaseOutcome(testcase, passed, results, work_dir, log_file,
                          round(time.monotonic() - started, 3))
    if not passed and waveform_on_failure:
        outcome.waveform = _waveform_run(verilog, testcase, case, work_dir, build_root, simulator,
                                         results, runtime_root)
    return outcome


def _waveform_run(verilog: Path, testcase: str, case: dict, work_dir: Path, build_root: Path,
                  simulator: str, results: dict, runtime_root: Path | None) -> Path | None:
    """Run a failed case again with waveforms; return the waveform path when one was written."""
    sim = build(verilog, build_root, simulator, waves=True, runtime_root=runtime_root)
    failing = _first_failing_sample(results)
    rerun = dict(case)
    if failing is not None and testcase == "samples_match_golden":
        rerun["stop_after"] = failing
    wave_dir = work_dir / "waves"
    _simulate(sim, testcase, rerun, wave_dir, waves=True)
    path = wave_dir / sim.waveform_name
    if not path.is_file():
        log.warning("the waveform run of %s wrote no %s; see %s", testcase, path,
                    wave_dir / "sim.log")
        return None
    return path


@dataclass
class VerifyOutcome:
    """RTL results of :func:`verify_samples`, sample by sample, and the first mismatch.

    ``mismatches`` counts samples whose class, early-stop step or result cycle differ from the
    golden model. ``trace_mismatches`` counts samples whose debug trace (spikes, membranes or
    output accumulators of any timestep) differs.
    """

    samples_checked: int
    mismatches: int
    classes: list[int]
    steps: list[int]
    cycles: list[int]
    first_mismatch: str | None
    waveform: str | None
    simulator: str
    trace_mismatches: int = 0
    seconds: float = 0.0
    log_file: str | None = None
    golden_cycles: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def verify_samples(model: Model, x: np.ndarray, out_dir: Path, *,
                   simulator: str = "verilator") -> VerifyOutcome:
    """Check the RTL generated from ``model`` against the golden model on samples ``x``.

    ``x`` is int (N, n_in). The Verilog is generated with the debug trace, built with
    ``simulator`` in ``out_dir`` and run on every sample back to back. The checker compares each
    timestep's spikes and membranes, the early-stop step, the class and the cycle of the result.
    Raises RuntimeError when the simulator is missing or the simulation produced no results.
    When ``$VERIF_BUILD_ROOT`` is set, Verilator's compiled run-time library is taken from (and
    saved to) that folder instead of ``out_dir``, which saves about 20 s per fresh ``out_dir``.
    """
    from sw_model import golden

    out_dir = Path(out_dir).resolve()
    if not simulator_available(simulator):
        raise RuntimeError(f"simulator {simulator!r} is not installed (not found on PATH)")
    started = time.monotonic()
    x = golden.check_inputs(model.arch, x)
    model_path, verilog = generate(model, out_dir)
    samples_path = out_dir / "samples.npy"
    np.save(samples_path, x)
    case = {"model": str(model_path), "samples": str(samples_path)}
    shared = os.environ.get("VERIF_BUILD_ROOT")
    outcome = run_case(verilog, "samples_match_golden", case, out_dir / "run",
                       build_root=out_dir / "sim_build", simulator=simulator,
                       runtime_root=Path(shared) if shared else None)
    results = outcome.results
    if "samples" not in results:
        raise RuntimeError(f"simulation of {len(x)} samples failed before checking any: "
                           f"{outcome.first_mismatch}")
    reports = outcome.samples
    expected = golden.run(model, x)
    result = VerifyOutcome(
        samples_checked=len(reports),
        mismatches=results["result_mismatches"] + (len(x) - len(reports)),
        classes=[r["klass"] for r in reports],
        steps=[r["steps"] for r in reports],
        cycles=[r["cycles_measured"] for r in reports],
        first_mismatch=outcome.first_mismatch,
        waveform=str(outcome.waveform) if outcome.waveform else None,
        simulator=simulator,
        trace_mismatches=results["trace_mismatches"],
        seconds=round(time.monotonic() - started, 3),
        log_file=str(outcome.log_file),
        golden_cycles=[int(c) for c in expected.cycles])
    (out_dir / "verify.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result

