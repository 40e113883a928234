"""Baseline study and command line on tiny networks and one-epoch training."""

import json
from dataclasses import replace

import numpy as np
import pytest

from sw_model import golden
from sw_model.__main__ import main
from sw_model.data import load_digits
from sw_model.model import load_model
from sw_model.spec import ArchParams, EarlyStopParams
from sw_model.studies import StudyConfig, noise_accuracy, run_study, write_report
from sw_model.torch_model import TopologyNet
from sw_model.train import TrainConfig

ARCH = ArchParams(sizes=(64, 16, 10), timesteps=6, membrane_bits=10, leak_shift=3, lanes=4)


@pytest.fixture(scope="module")
def small_digits():
    full = load_digits(seed=0)
    return replace(full, x_train=full.x_train[:200], y_train=full.y_train[:200],
                   x_test=full.x_test[:120], y_test=full.y_test[:120])


@pytest.fixture(scope="module")
def report(small_digits):
    study = StudyConfig(keep_fractions=(0.3, 0.6), noise_levels=(0.0, 0.1), noise_repeats=2)
    cfg = TrainConfig(epochs=1, thresholds=(6,))
    return run_study(ARCH, small_digits, cfg, study)


def test_study_rows(report):
    kinds = [row["kind"] for row in report["rows"]]
    assert kinds == ["weights_quantized", "weights_float", "random_unpruned", "prime", "prime"]
    assert [row["keep_fraction"] for row in report["rows"][3:]] == [0.3, 0.6]
    assert all(row["thresholds"] == [6] for row in report["rows"])
    for row in report["rows"]:
        assert [(e["mode"], e["level"]) for e in row["noise"]] == [
            ("read", 0.0), ("read", 0.1), ("static", 0.0), ("static", 0.1)]
        for entry in row["noise"]:
            if entry["level"] == 0.0:
                assert entry["std"] == 0.0
                assert entry["accuracy"] == pytest.approx(row["test_accuracy"])
        assert 0.0 <= row["test_accuracy"] <= 1.0


def test_study_early_stop_only_for_integer_models(report):
    for row in report["rows"]:
        if row["kind"] == "weights_float":
            assert row["early_stop_steps"] is None
        else:
            assert 1.0 <= row["early_stop_steps"] <= ARCH.timesteps
            assert row["early_stop"]["rule"] == "margin"


def test_study_report_files(report, tmp_path):
    json_path, markdown_path = write_report(report, tmp_path / "study")
    assert json.loads(json_path.read_text())["rows"][0]["kind"] == "weights_quantized"
    text = markdown_path.read_text()
    assert "| PRIME, 30% kept | 30% | [6] |" in text
    assert "random weights, no pruning" in text
    assert "sigma 10%" in text
    assert "## Weight noise: read" in text
    assert "## Weight noise: static" in text


def test_noise_accuracy_zero_level_is_exact(small_digits):
    net = TopologyNet(ARCH, [6], 0.5)
    exact = float((net.infer(small_digits.x_test)[-1].argmax(axis=1) == small_digits.y_test).mean())
    mean, std = noise_accuracy(net, small_digits.x_test, small_digits.y_test, 0.0, 3)
    assert mean == exact
    assert std == 0.0
    noisy, spread = noise_accuracy(net, small_digits.x_test, small_digits.y_test, 0.5, 3)
    assert spread > 0.0
    static, static_spread = noise_accuracy(net, small_digits.x_test, small_digits.y_test, 0.5, 3,
                                           mode="static")
    assert static_spread > 0.0
    assert static != noisy
    with pytest.raises(ValueError, match="noise mode must be one of"):
        noise_accuracy(net, small_digits.x_test, small_digits.y_test, 0.5, 3, mode="drift")


def test_cli_train_exports_golden_model(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--hidden", "16", "--epochs", "1",
                 "--timesteps", "6", "--thresholds", "6"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(tmp_path / "model.npz")
    assert model.thresholds == [6]
    data = load_digits(seed=0)
    full = golden.run(model, data.x_test, EarlyStopParams(rule="off", budget=6))
    assert float(np.mean(full.classes == data.y_test)) == pytest.approx(summary["test_accuracy"])
    stopped = golden.run(model, data.x_test)
    assert float(stopped.steps.mean()) == pytest.approx(summary["early_stop_test_steps"])
    assert float(np.mean(stopped.classes == data.y_test)) == pytest.approx(
        summary["early_stop_test_accuracy"])
    assert (tmp_path / "train.json").is_file()


def test_cli_missing_dataset_folder(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--dataset", "mnist",
                 "--path", str(tmp_path / "absent")])
    assert code == 2
    assert "MNIST folder" in capsys.readouterr().err


def test_cli_study_writes_report(tmp_path, capsys):
    code = main(["study", "--out", str(tmp_path), "--hidden", "16", "--epochs", "1",
                 "--timesteps", "4", "--thresholds", "6", "--keep-fractions", "0.5",
                 "--noise-levels", "0", "0.05", "--noise-repeats", "1", "--no-baselines"])
    assert code == 0
    assert "| PRIME, 50% kept | 50% | [6] |" in capsys.readouterr().out
    report = json.loads((tmp_path / "study.json").read_text())
    assert [row["kind"] for row in report["rows"]] == ["prime"]
    assert (tmp_path / "study.md").is_file()


def test_study_default_thresholds_follow_fraction(small_digits):
    study = StudyConfig(keep_fractions=(0.2, 0.8), noise_levels=(0.0,), baselines=False)
    report = run_study(ARCH, small_digits, TrainConfig(epochs=1), study)
    low, high = (row["thresholds"][0] for row in report["rows"])
    assert low < high
