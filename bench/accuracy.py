"""Accuracy studies through ``sw_model.studies``: PRIME over kept fractions, the trained-weight
and unpruned baselines, and weight read noise.

The study runs in parts (the baselines, and one part per kept fraction) so that worker
processes can run them side by side; :func:`merge_parts` joins them into one study report.
Every function takes only picklable arguments and returns plain dictionaries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gen.config import Config
from sw_model.spec import ArchParams
from sw_model.studies import StudyConfig, run_study
from sw_model.train import as_dataset


def load_splits(path: Path) -> dict[str, np.ndarray]:
    """Read the ``data.npz`` the pipeline's data stage wrote."""
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def study_part(config: Config, arch: ArchParams, data_path: Path, *,
               keep_fractions: tuple[float, ...], baselines: bool,
               noise_levels: tuple[float, ...], noise_repeats: int) -> dict:
    """Run one part of the study on the pipeline's data split and return its report.

    The study's seed and early-stop loss budget are the configuration's, so the PRIME model at
    the configured kept fraction is the main job's model.
    """
    data = as_dataset(load_splits(data_path), arch)
    study = StudyConfig(keep_fractions=tuple(keep_fractions), noise_levels=tuple(noise_levels),
                        noise_repeats=noise_repeats,
                        max_drop=config["early_stop"]["max_accuracy_drop"], seed=config.seed,
                        baselines=baselines)
    return run_study(arch, data, config.train_config(), study)


def merge_parts(parts: list[dict]) -> dict:
    """Join study reports of the same data and settings: baselines first, then PRIME rows by
    kept fraction."""
    if not parts:
        raise ValueError("no study part to merge")
    rows = [row for part in parts for row in part["rows"]]
    baselines = [row for row in rows if row["kind"] != "prime"]
    prime = sorted((row for row in rows if row["kind"] == "prime"),
                   key=lambda row: row["keep_fraction"])
    merged = {key: value for key, value in parts[0].items() if key not in ("rows", "study")}
    merged["study"] = {**parts[0]["study"], "keep_fractions": [row["keep_fraction"] for row in prime],
                       "baselines": bool(baselines)}
    merged["rows"] = baselines + prime
    return merged


def row_of(study: dict, kind: str, keep_fraction: float | None = None) -> dict | None:
    """Return the study row of ``kind`` (and ``keep_fraction`` for PRIME), or None."""
    for row in study["rows"]:
        if row["kind"] == kind and (keep_fraction is None
                                    or abs(row["keep_fraction"] - keep_fraction) < 1e-9):
            return row
    return None
