"""The benchmark command: a quick run end to end, and the pieces its numbers rest on."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import energy, hardware, provenance
from bench.__main__ import main
from bench.early_stop import pareto_front
from bench.plots import FIGURES
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_quick_run_page_and_numbers(tmp_path):
    """One quick run, checked part by part by the helpers below.

    A single test runs it once: a module fixture would run once per pytest-xdist worker.
    """
    out, work = tmp_path / "out", tmp_path / "work"
    # One job runs the sweeps in this process, which saves starting workers that import torch.
    assert main(["--quick", "--jobs", "1", "--out", str(out), "--work", str(work)]) == 0
    run = (out, json.loads((out / "benchmarks.json").read_text()),
           (out / "benchmarks.md").read_text())
    check_files(run)
    check_provenance(run)
    check_cycles(run)
    check_early_stop(run)
    check_study(run)
    check_cpu_loop(run)
    check_energy(run)
    check_no_hardware(run)


def check_files(quick_run):
    out, results, page = quick_run
    assert results["quick"] is True
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert f"]({name})" in page, name


def check_provenance(quick_run):
    _, results, page = quick_run
    prov = results["provenance"]
    assert prov["command"].startswith("python -m bench --quick")
    assert f"`{prov['command']}`" in page
    assert prov["git"]["commit"][:12] in page
    assert prov["machine"]["cpu"] in page
    assert prov["machine"]["cores"] >= 1


def check_cycles(quick_run):
    _, results, _ = quick_run
    for key in ("early_stop", "full_budget"):
        cycles = results["cycles"][key]
        assert cycles["ratio_to_bound"] >= 1.0
        assert all(c >= b for c, b in zip(cycles["per_sample"], cycles["per_sample_bound"]))
    assert results["cycles"]["full_budget"]["mean_steps"] == results["early_stop"]["budget"]


def check_early_stop(quick_run):
    _, results, _ = quick_run
    es = results["early_stop"]
    exported = [c for c in es["calibrated"].values() if c["exported"]]
    assert len(exported) == 1
    for chosen in es["calibrated"].values():
        assert 1.0 <= chosen["mean_steps"] <= es["budget"]
        assert chosen["step_saving"] == pytest.approx(1 - chosen["mean_steps"] / es["budget"])
    # The exported setting measured here is the one the golden stage measured.
    assert exported[0]["accuracy"] == results["accuracy"]["default"]["golden_early_stop"]
    for curve in es["curves"].values():
        accuracies = [c["accuracy"] for c in curve["front"]]
        assert accuracies == sorted(accuracies)


def check_study(quick_run):
    _, results, _ = quick_run
    acc = results["accuracy"]
    assert acc["study_matches_golden"] is True
    kinds = [row["kind"] for row in acc["study"]["rows"]]
    assert kinds[:3] == ["weights_quantized", "weights_float", "random_unpruned"]
    fractions = [row["keep_fraction"] for row in acc["study"]["rows"] if row["kind"] == "prime"]
    assert fractions == sorted(results["settings"]["kept_fractions"])


def check_cpu_loop(quick_run):
    _, results, _ = quick_run
    torch_run = results["cpu"]["torch_per_sample"]
    assert torch_run["agrees_with_golden"] == torch_run["samples"] > 0
    golden_run = results["cpu"]["golden_batched"]
    assert golden_run["samples"] == results["dataset"]["test"]
    assert golden_run["inferences_per_s"] == pytest.approx(golden_run["samples"]
                                                           / golden_run["seconds"])


def check_energy(quick_run):
    _, results, page = quick_run
    designs = results["energy"]["designs"]
    totals = [designs[k]["energy_pj"]["total"]
              for k in ("event_early_stop", "event_full_budget", "dense_full_budget")]
    assert totals == sorted(totals)
    assert designs["dense_full_budget"]["fraction_of_dense"] == 1.0
    assert "## Energy per inference (an estimate)" in page
    assert "This is an estimate, not a measurement." in page


def check_no_hardware(quick_run):
    _, results, page = quick_run
    assert results["boards"] == []
    assert results["verification"] == []
    assert "No board was built in this run." in page
    assert "No simulator ran in this run." in page


def test_pareto_front_keeps_best_per_steps():
    candidates = [{"mean_steps": 2.0, "accuracy": 0.8}, {"mean_steps": 1.0, "accuracy": 0.7},
                  {"mean_steps": 3.0, "accuracy": 0.75}, {"mean_steps": 1.0, "accuracy": 0.72},
                  {"mean_steps": 4.0, "accuracy": 0.9}]
    front = pareto_front(candidates)
    assert [(c["mean_steps"], c["accuracy"]) for c in front] == [(1.0, 0.72), (2.0, 0.8),
                                                                 (4.0, 0.9)]


def test_energy_words_round_up():
    assert energy.words(8, 4) == 1
    assert energy.words(8, 12) == 3
    assert energy.words(8, 1) == 1
    assert energy.words(16, 9) == 5


def test_energy_counts_dense_by_hand():
    arch = ArchParams(sizes=(4, 6, 3), timesteps=4, lanes=3, membrane_bits=12, input_bits=2)
    masks = [np.ones((4, 6), np.uint8), np.ones((6, 3), np.uint8)]
    model = Model(arch=arch, masks=masks, thresholds=[3],
                  early_stop=EarlyStopParams(rule="off", budget=4))
    x = np.array([[0, 1, 2, 3]])
    counts = energy.count_operations(model, x, model.early_stop, dense=True)
    # Weight rows are 3 x 4 bits (1 word); accumulators 3 x 7 bits (1 word) in both layers.
    # Layer 0: 4 inputs x 2 groups, membrane rows 3 x 12 bits (2 words). Layer 1: 6 inputs x
    # 1 group, output rows 3 x 10 bits (1 word).
    layer_0 = 4 * 2 * (1 + 2 * 1) + 2 * (1 + 2 * 2)
    layer_1 = 6 * 1 * (1 + 2 * 1) + 1 * (1 + 2 * 1)
    assert counts["word_accesses"] == 4 * (layer_0 + layer_1)
    # Adds: every synapse every step, 3 per LIF neuron, 1 per output, one decision at the budget.
    assert counts["adds"] == 4 * (4 * 6 + 6 * 3 + 6 * 3 + 3) + 3
    assert counts["multiplies"] == 0
    assert counts["steps"] == 4


def test_git_state_ignores_listed_paths(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for args in (["config", "user.email", "bench@example.com"], ["config", "user.name", "bench"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True)
    (tmp_path / "kept.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "kept.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "-m", "first"], check=True)
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "kept.txt").write_text("b\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("x\n")
    state = provenance.git_state(ignore=("docs/page.md",))
    assert state["dirty"] is True
    assert state["changed_files"] == ["kept.txt"]
    assert provenance.git_state(ignore=("kept.txt", "docs"))["dirty"] is False


def test_read_cocotb_results_picks_testcase(tmp_path):
    path = tmp_path / "results.xml"
    path.write_text(
        '<testsuites><testsuite name="verif.tb_core">'
        '<testcase name="other" time="1.0"><properties>'
        '<property name="sim_time_unit" value="ns" />'
        '<property name="sim_time_duration" value="10.0" /></properties></testcase>'
        '<testcase name="samples_match_golden" time="2.5"><properties>'
        '<property name="sim_time_unit" value="us" />'
        '<property name="sim_time_duration" value="12.34" /></properties></testcase>'
        '</testsuite></testsuites>')
    timing = hardware.read_cocotb_results(path, "samples_match_golden")
    assert timing["seconds"] == 2.5
    assert timing["sim_time_ns"] == pytest.approx(12340.0)
    with pytest.raises(ValueError, match="no testcase 'missing'"):
        hardware.read_cocotb_results(path, "missing")


def _summary_row(lines: list[str], start: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {start}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_summary_states_targets():
    from bench.page import _read_noise, _summary
    from bench.run import TARGETS

    results = json.loads((Path(__file__).parents[1] / "docs" / "benchmarks.json").read_text())
    results["targets"] = dict(TARGETS)
    study = results["accuracy"]["study"]
    baseline = next(row for row in study["rows"] if row["kind"] == "weights_quantized")
    baseline["test_accuracy"] = 0.975
    results["accuracy"]["default"]["golden_full_budget"] = 0.96
    board = results["boards"][0]
    board["resources"]["lut"] = {"used": 850, "available": 1000}
    board["timing_met"] = True
    lines = "\n".join(_summary(results)).splitlines()
    assert _summary_row(lines, "PRIME test accuracy, default model (golden model, full")[2:] == \
        [">= 96 %", "met"]
    assert _summary_row(lines, "PRIME behind")[1:] == ["1.50 points", "<= 1.5 points", "met"]
    assert _summary_row(lines, f"{board['board']}: logic used")[1:] == \
        ["850 of 1,000 (85 %)", "<= 80 %", "**missed**"]

    baseline["test_accuracy"] = 0.9751
    lines = "\n".join(_summary(results)).splitlines()
    assert _summary_row(lines, "PRIME behind")[1:] == ["1.51 points", "<= 1.5 points",
                                                      "**missed**"]

    # One table per noise mode, each with its own levels.
    for row in study["rows"]:
        row["noise"] = [{"mode": mode, "level": level, "accuracy": 0.5, "std": 0.0}
                        for mode in ("read", "static") for level in (0.0, 0.1)]
    noise_page = "\n".join(_read_noise(results, {"benchmarks_read_noise.png": "x.png"}))
    assert noise_page.count("| model | sigma 0 % | sigma 10 % |") == 2
