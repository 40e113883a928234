"""The exported model file (section "Model file" of docs/architecture.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .spec import (
    EARLY_STOP_RULES,
    ENCODINGS,
    READOUTS,
    RESET_MODES,
    WEIGHT_DISTRIBUTIONS,
    WEIGHT_SOURCES,
    ArchParams,
    EarlyStopParams,
    layer_weights,
    weight_tables,
)

FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read: wrong format version, missing key or bad shape."""


@dataclass
class Model:
    """A trained network: architecture, learned masks, thresholds and early-stop settings.

    ``masks[k]`` is uint8 of shape (sizes[k], sizes[k+1]) holding 0 or 1. ``thresholds`` holds one
    value per spiking layer (see ``ArchParams.spiking_layers``).
    """

    arch: ArchParams
    masks: list[np.ndarray]
    thresholds: list[int]
    early_stop: EarlyStopParams = field(default_factory=EarlyStopParams)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        validate_model(self)

    def weights(self, layer: int) -> np.ndarray:
        """Return the fixed random weights of a layer, int64 of shape (fan_in, fan_out)."""
        return layer_weights(self.arch, layer)


def validate_arch(arch: ArchParams) -> None:
    """Raise ValueError naming the field when ``arch`` describes no buildable network."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    need(len(arch.sizes) >= 2, f"sizes must list at least inputs and outputs, not {list(arch.sizes)}")
    need(all(1 <= s <= 16383 for s in arch.sizes),
         f"every layer size must lie in 1..16383 (14-bit synapse index), not {list(arch.sizes)}")
    need(arch.n_layers <= 15, f"at most 15 layers fit the 4-bit layer field, not {arch.n_layers}")
    need(arch.n_out >= 2, f"the output layer needs at least 2 classes, not {arch.n_out}")
    need(1 <= arch.input_bits <= 8, f"input_bits must lie in 1..8, not {arch.input_bits}")
    need(1 <= arch.timesteps <= 255, f"timesteps must lie in 1..255, not {arch.timesteps}")
    need(2 <= arch.weight_bits <= 8, f"weight_bits must lie in 2..8, not {arch.weight_bits}")
    need(4 <= arch.membrane_bits <= 24, f"membrane_bits must lie in 4..24, not {arch.membrane_bits}")
    need(0 <= arch.leak_shift < arch.membrane_bits,
         f"leak_shift must lie in 0..{arch.membrane_bits - 1} (below membrane_bits "
         f"{arch.membrane_bits}), not {arch.leak_shift}")
    need(arch.reset in RESET_MODES, f"reset must be one of {RESET_MODES}, not {arch.reset!r}")
    need(arch.readout in READOUTS, f"readout must be one of {READOUTS}, not {arch.readout!r}")
    need(arch.weight_dist in WEIGHT_DISTRIBUTIONS,
         f"weight_dist must be one of {WEIGHT_DISTRIBUTIONS}, not {arch.weight_dist!r}")
    need(arch.weight_source in WEIGHT_SOURCES,
         f"weight_source must be one of {WEIGHT_SOURCES}, not {arch.weight_source!r}")
    need(arch.encoding in ENCODINGS, f"encoding must be one of {ENCODINGS}, not {arch.encoding!r}")
    need(0 <= arch.weight_seed <= 0xFFFFFFFF, f"weight_seed must lie in 0..2**32-1, not {arch.weight_seed}")
    smallest = min(arch.sizes[1:])
    need(1 <= arch.lanes <= smallest,
         f"lanes ({arch.lanes}) must lie in 1..{smallest}, the smallest layer size of {list(arch.sizes)}")


def validate_early_stop(arch: ArchParams, es: EarlyStopParams) -> None:
    """Raise ValueError naming the field when the early-stop settings do not fit ``arch``."""
    if es.rule not in EARLY_STOP_RULES:
        raise ValueError(f"early-stop rule must be one of {EARLY_STOP_RULES}, not {es.rule!r}")
    if not 1 <= es.budget <= arch.timesteps:
        raise ValueError(f"early-stop budget must lie in 1..{arch.timesteps} (timesteps), not {es.budget}")
    if not 1 <= es.min_steps <= es.budget:
        raise ValueError(f"min_steps must lie in 1..{es.budget} (the budget), not {es.min_steps}")
    margin_max = (1 << arch.output_bits) - 1
    if not 0 <= es.margin <= margin_max:
        raise ValueError(f"margin must lie in 0..{margin_max} (output_bits {arch.output_bits}), "
                         f"not {es.margin}")
    if es.rule == "confidence":
        if len(es.scale) != es.budget:
            raise ValueError(f"the confidence rule needs {es.budget} SCALE entries, found {len(es.scale)}")
        if any(not 0 <= s < 1 << 16 for s in es.scale):
            raise ValueError(f"SCALE entries must lie in 0..65535, found {list(es.scale)}")
        if not 0 <= es.conf_limit < 1 << 24:
            raise ValueError(f"conf_limit must lie in 0..2**24-1, not {es.conf_limit}")


def validate_model(model: Model) -> None:
    """Raise ModelFileError naming the field when masks or thresholds do not match the arch."""
    arch = model.arch
    try:
        validate_arch(arch)
        validate_early_stop(arch, model.early_stop)
    except ValueError as error:
        raise ModelFileError(str(error)) from None
    if len(model.masks) != arch.n_layers:
        raise ModelFileError(f"expected {arch.n_layers} masks for sizes {list(arch.sizes)}, "
                             f"found {len(model.masks)}")
    for k, mask in enumerate(model.masks):
        shape = (arch.sizes[k], arch.sizes[k + 1])
        if mask.shape != shape:
            raise ModelFileError(f"mask_{k} has shape {mask.shape}, expected {shape}")
        if not np.isin(mask, (0, 1)).all():
            raise ModelFileError(f"mask_{k} must hold only 0 and 1")
    if len(model.thresholds) != arch.spiking_layers:
        raise ModelFileError(f"expected {arch.spiking_layers} thresholds, found {len(model.thresholds)}")
    for k, theta in enumerate(model.thresholds):
        if not 1 <= theta <= arch.membrane_max:
            raise ModelFileError(f"threshold {k} ({theta}) must lie in 1..{arch.membrane_max} "
                                 f"(fits membrane_bits {arch.membrane_bits})")


def save_model(model: Model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically and return the path."""
    path = Path(path)
    pos, neg = weight_tables(model.arch)
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "arch": np.array(json.dumps(model.arch.to_dict())),
        "early_stop": np.array(json.dumps(model.early_stop.to_dict())),
        "thresholds": np.array(model.thresholds, dtype=np.int64),
        "weight_pos": pos,
        "weight_neg": neg,
        "meta": np.array(json.dumps(model.meta)),
    }
    for k in range(model.arch.n_layers):
        arrays[f"mask_{k}"] = model.masks[k].astype(np.uint8)
        arrays[f"weights_{k}"] = model.weights(k)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def _dataclass_from_json(cls, text: str, key: str):
    data = json.loads(text)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelFileError(f"{key} has unknown fields {unknown}")
    return cls(**data)


def load_model(path: str | os.PathLike) -> Model:
    """Read a model file, checking format version, keys, shapes and regenerated weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{str(path)!r} is not a NumPy .npz model file: {error}") from None
    with archive:
        def get(key: str) -> np.ndarray:
            if key not in archive.files:
                raise ModelFileError(f"{str(path)!r} has no key {key!r}; is it a model file?")
            return archive[key]

        version = int(get("format_version"))
        if version != FORMAT_VERSION:
            raise ModelFileError(f"{str(path)!r} has format version {version}, this reader "
                                 f"expects {FORMAT_VERSION}; export the model again")
        arch = _dataclass_from_json(ArchParams, str(get("arch")), "arch")
        es = _dataclass_from_json(EarlyStopParams, str(get("early_stop")), "early_stop")
        es = EarlyStopParams(**{**es.to_dict(), "scale": tuple(es.scale)})
        masks = [get(f"mask_{k}").astype(np.uint8) for k in range(arch.n_layers)]
        thresholds = [int(v) for v in get("thresholds")]
        model = Model(arch=arch, masks=masks, thresholds=thresholds, early_stop=es,
                      meta=json.loads(str(get("meta"))))
        pos, neg = weight_tables(arch)
        if not (np.array_equal(get("weight_pos"), pos) and np.array_equal(get("weight_neg"), neg)):
            raise ModelFileError(f"{str(path)!r}: stored weight tables differ from the ones the "
                                 f"arch parameters generate")
        for k in range(arch.n_layers):
            if not np.array_equal(get(f"weights_{k}"), model.weights(k)):
                raise ModelFileError(f"{str(path)!r}: weights_{k} differ from the weights the seed "
                                     f"generates")
    return model
