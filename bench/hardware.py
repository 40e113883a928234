"""Hardware measurements: bitstream builds per board, and the speed of RTL verification."""

from __future__ import annotations

import logging
import shutil
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from gen.config import load_config
from sw_model import golden
from sw_model.model import Model, load_model

log = logging.getLogger(__name__)


def build_board(model_path: Path, config_path: Path, out_dir: Path) -> dict:
    """Build the bitstream of the model for the board of ``config_path``; return its numbers.

    The build is allowed to miss timing or overfill the device, because the benchmark reports
    those outcomes instead of stopping. ``fits`` and ``timing_met`` record which happened
    (``timing_met`` is None when nextpnr reported no Fmax). A
    configuration whose network differs from the model's, or a failed tool, gives an entry
    with ``error``.
    """
    from boards import BuildError, build_bitstream, get_board

    config = load_config(config_path)
    model = load_model(model_path)
    board = config["board"]
    entry = {"board": board["name"], "config": str(config_path)}
    wanted = config.arch(model.arch.n_in, model.arch.n_out)
    if wanted != model.arch:
        entry["error"] = (f"{config_path} describes another network than the default model; "
                          f"align its [network] and [hardware] sections")
        return entry
    entry["description"] = get_board(board["name"]).description
    started = time.monotonic()
    try:
        outcome = build_bitstream(model, board["name"], Path(out_dir),
                                  clock_mhz=board["clock_mhz"] or None, baud=board["baud"],
                                  allow_timing_failure=True, allow_overfull=True)
    except BuildError as error:
        entry["error"] = str(error)
        entry["seconds"] = time.monotonic() - started
        return entry
    fmax = outcome.fmax_mhz
    entry.update(
        resources=outcome.resources,
        fmax_mhz=fmax,
        target_clock_mhz=outcome.target_clock_mhz,
        fits=outcome.bitstream is not None and not any(w.startswith("does not fit")
                                                       for w in outcome.warnings),
        timing_met=None if fmax is None else fmax >= outcome.target_clock_mhz,
        warnings=list(outcome.warnings),
        seconds=time.monotonic() - started,
        tool_versions=outcome.tool_versions,
    )
    return entry


NS_PER_UNIT = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def read_cocotb_results(path: Path, testcase: str) -> dict:
    """Return the wall time in seconds and the simulated time in ns of one test in a cocotb
    ``results.xml`` file.

    cocotb 2.1 writes the wall time as the testcase's ``time`` attribute and the simulated
    time as the properties ``sim_time_duration`` and ``sim_time_unit``.
    """
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        if case.get("name") != testcase:
            continue
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "sim_time_duration" not in properties:
            raise ValueError(f"{path}: testcase {testcase!r} has no sim_time_duration property")
        unit = properties.get("sim_time_unit", "ns")
        return {"seconds": float(case.get("time")),
                "sim_time_ns": float(properties["sim_time_duration"]) * NS_PER_UNIT[unit]}
    raise ValueError(f"{path} has no testcase {testcase!r}")


def verification_speed(model: Model, x: np.ndarray, simulator: str, work_dir: Path) -> dict:
    """Verify ``x`` on the RTL of ``model`` under ``simulator`` and time each part.

    The run is the main job's check (``samples_match_golden``), which compares every sample's
    trace, class, steps and result cycle with the golden model. The simulator build starts from
    an empty folder, so ``compile_seconds`` is a cold build. ``cycles_per_s`` and
    ``samples_per_s`` use the test's own wall time from cocotb's results file, which leaves out
    the simulator's start and the build. ``run_seconds`` is the whole run including them.
    """
    from verif.build import build, simulator_available
    from verif.drivers import CLOCK_PERIOD_NS
    from verif.regression import generate, run_case

    entry: dict = {"simulator": simulator, "samples": int(len(x))}
    if not simulator_available(simulator):
        entry["error"] = f"{simulator} is not installed (not found on PATH)"
        return entry
    work_dir = Path(work_dir).resolve()
    if work_dir.exists():
        shutil.rmtree(work_dir)
    started = time.monotonic()
    model_path, verilog = generate(model, work_dir / "rtl")
    entry["generate_seconds"] = time.monotonic() - started

    started = time.monotonic()
    build(verilog, work_dir / "sim_build", simulator)
    entry["compile_seconds"] = time.monotonic() - started

    samples_path = work_dir / "samples.npy"
    np.save(samples_path, x)
    case = {"model": str(model_path), "samples": str(samples_path)}
    started = time.monotonic()
    outcome = run_case(verilog, "samples_match_golden", case, work_dir / "run",
                       build_root=work_dir / "sim_build", simulator=simulator,
                       waveform_on_failure=False)
    entry["run_seconds"] = time.monotonic() - started
    results = outcome.results
    if "samples" not in results:
        entry["error"] = f"the simulation checked no sample: {outcome.first_mismatch}"
        return entry

    timing = read_cocotb_results(work_dir / "run" / "results.xml", "samples_match_golden")
    cycles = timing["sim_time_ns"] / CLOCK_PERIOD_NS
    reports = outcome.samples
    measured = np.array([r["cycles_measured"] for r in reports], dtype=np.float64)
    expected = golden.run(model, x)
    entry.update(
        passed=outcome.passed,
        samples_checked=len(reports),
        result_mismatches=int(results.get("result_mismatches", 0)) + len(x) - len(reports),
        trace_mismatches=int(results.get("trace_mismatches", 0)),
        test_seconds=timing["seconds"],
        simulated_cycles=cycles,
        cycles_per_s=cycles / timing["seconds"],
        samples_per_s=len(reports) / timing["seconds"],
        measured_cycles_mean=float(measured.mean()) if len(measured) else None,
        golden_cycles_mean=float(expected.cycles[:len(reports)].mean()) if len(reports) else None,
        bound_cycles_mean=float(expected.bound_cycles[:len(reports)].mean()) if len(reports) else None,
    )
    return entry
