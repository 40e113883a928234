"""The repository's entry scripts, run as a user runs them."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_run_adds_default_config(tmp_path):
    out = tmp_path / "job"
    subprocess.run([str(ROOT / "run"), "--until", "data", "--out", str(out)], cwd=tmp_path,
                   check=True, capture_output=True, text=True, timeout=600)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["path"].endswith("configs/digits_icebreaker.toml")
    assert report["stages_run"] == ["data"]


def test_run_keeps_given_config(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text((ROOT / "configs" / "digits_icebreaker.toml").read_text())
    out = tmp_path / "job"
    subprocess.run([str(ROOT / "run"), "--config", str(config), "--until", "data", "--out",
                    str(out)], cwd=tmp_path, check=True, capture_output=True, text=True,
                   timeout=600)
    assert json.loads((out / "report.json").read_text())["config"]["name"] == "small"
