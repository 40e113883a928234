"""Configuration validation: every bad value is one line naming key, value and range."""

import subprocess
import sys
from pathlib import Path

import pytest

from gen.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["digits_icebreaker", "digits_ulx3s"])
def test_shipped_configs_are_valid(name):
    config = load_config(ROOT / "configs" / f"{name}.toml")
    assert config.name == name
    arch = config.arch(64, 10)
    assert arch.sizes[0] == 64 and arch.sizes[-1] == 10


@pytest.mark.parametrize("document, message", [
    ({"network": {"hiden": [128]}}, "unknown key [network] 'hiden'"),
    ({"netwrk": {}}, "unknown key 'netwrk'"),
    ({"network": {"timesteps": "16"}}, "[network] timesteps = '16' is invalid: expected an integer in 1..255"),
    ({"network": {"timesteps": 0}}, "[network] timesteps = 0 is invalid: expected an integer in 1..255"),
    ({"network": {"hidden": [128, -4]}}, "[network] hidden = [128, -4] is invalid"),
    ({"network": {"reset": "hard"}}, "[network] reset = 'hard' is invalid: expected one of 'subtract', 'zero'"),
    ({"network": {"thresholds": [5000], "membrane_bits": 12}}, "thresholds value 5000 does not fit membrane_bits = 12"),
    ({"network": {"leak_shift": 12, "membrane_bits": 12}}, "leak_shift = 12 must be below membrane_bits = 12"),
    ({"hardware": {"lanes": 200}}, "lanes = 200 exceeds the smallest hidden layer (128 neurons)"),
    ({"hardware": {"lanes": 16}}, "lanes (16) must lie in 1..10"),
    ({"early_stop": {"margin": "big"}}, "[early_stop] margin = 'big' is invalid"),
    ({"early_stop": {"min_steps": 20}}, "min_steps = 20 exceeds [network] timesteps = 16"),
    ({"data": {"dataset": "mnist"}}, "[data] path is empty but dataset 'mnist' reads files"),
    ({"training": {"keep_fraction": 1.5}}, "[training] keep_fraction = 1.5 is invalid: expected a number in 0.01..1"),
    ({"board": {"allow_timing_failure": 1}}, "[board] allow_timing_failure = 1 is invalid"),
    ({"board": {"name": "icebraker"}}, "[board] name = 'icebraker' is invalid: expected one of 'icebreaker'"),
    ({"network": {"thresholds": [-3]}}, "expected a list of integers in 1..8388607"),
    ({"network": {"thresholds": [15, 15]}}, "network has 1 spiking layer(s); give one threshold per"),
    ({"data": {"dataset": "nmnist", "path": "/nonexistent/nmnist"}},
     "[data] path = '/nonexistent/nmnist' is not a folder"),
])
def test_bad_values_are_named(document, message):
    with pytest.raises(ConfigError) as info:
        parse_config(document, Path("x.toml"))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_fill_missing_keys():
    config = parse_config({}, Path("plain.toml"))
    assert config.name == "plain"
    assert config["network"]["hidden"] == [128]
    assert config["early_stop"]["margin"] == "auto"


def test_cli_rejects_bad_config_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\ntimesteps = 999\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "gen", "--config", str(bad), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: [network] timesteps = 999 is invalid: expected an integer in 1..255"
    assert not out.exists()


def test_cli_reports_missing_config(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gen", "--config", str(tmp_path / "none.toml")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not found" in proc.stderr


def test_invalid_toml_is_reported(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[network\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_train_config_from_training_section():
    from sw_model.train import TrainConfig

    default = parse_config({}, Path("x.toml")).train_config()
    assert default == TrainConfig()
    document = {"training": {"epochs": 7, "options": {"momentum": 0.8}},
                "network": {"thresholds": [12]}}
    config = parse_config(document, Path("x.toml")).train_config()
    assert config.epochs == 7
    assert config.momentum == 0.8
    assert config.thresholds == (12,)
    assert config.keep_fraction == TrainConfig().keep_fraction


def test_train_config_rejects_unknown_option():
    config = parse_config({"training": {"options": {"epoch": 3}}}, Path("x.toml"))
    with pytest.raises(ConfigError, match=r"\[training\] options: .*'epoch'"):
        config.train_config()
