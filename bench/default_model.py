"""The default model of a benchmark run, trained and exported by the main job's pipeline."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.config import Config, parse_config
from gen.pipeline import Pipeline
from sw_model.model import Model, load_model

log = logging.getLogger(__name__)


def load_bench_config(path: Path, overrides: dict | None = None) -> Config:
    """Read a configuration file, replace the keys in ``overrides`` and validate the result.

    ``overrides`` maps a section to ``{key: value}``; the top level is the section ``""``.
    The configuration keeps the file's name, which the stage cache keys include.
    """
    path = Path(path)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    for section, values in (overrides or {}).items():
        if section:
            data.setdefault(section, {}).update(values)
        else:
            data.update(values)
    return parse_config(data, path)


@dataclass
class DefaultModel:
    """The default model and the pipeline stage results that produced it.

    ``splits`` contains the arrays of ``data.npz`` (``x_train``, ``y_train``, ``x_val``, ``y_val``,
    ``x_test``, ``y_test``). ``train_seconds`` is the wall time of the training stage, and
    ``train_reused`` tells whether that stage came from the cache of an earlier run.
    """

    config: Config
    model: Model
    model_path: Path
    data_path: Path
    splits: dict[str, np.ndarray]
    results: dict[str, dict]
    train_seconds: float
    train_reused: bool
    stage_seconds: dict[str, float]


def train_default(config: Config, work_dir: Path, *, reuse: bool = False) -> DefaultModel:
    """Run the pipeline up to the golden stage into ``work_dir`` and return its model.

    Without ``reuse`` every stage runs again, so the training time is measured in this run.
    With ``reuse`` stages whose configuration and code are unchanged come from the cache, and
    the training time is the one the cached run measured (from its per-epoch history).
    """
    pipeline = Pipeline(config, Path(work_dir), until="golden", force=not reuse)
    pipeline.run()
    train = pipeline.results["train"]
    reused = pipeline.cached["train"]
    if reused:
        seconds = float(train["history"][-1]["seconds"]) if train["history"] else float("nan")
    else:
        seconds = float(pipeline.seconds["train"])
    data_path = Path(work_dir) / "data.npz"
    with np.load(data_path) as archive:
        splits = {name: archive[name] for name in archive.files}
    model_path = Path(pipeline.results["export"]["model"])
    return DefaultModel(config=config, model=load_model(model_path), model_path=model_path,
                        data_path=data_path, splits=splits, results=pipeline.results,
                        train_seconds=seconds, train_reused=reused,
                        stage_seconds=dict(pipeline.seconds))
