"""Datasets in the form the accelerator reads: integer intensities or binary event frames.

Every loader returns a :class:`Dataset` whose inputs are already quantized, so the torch model,
the golden model and the hardware read the same integers. Nothing is ever downloaded: the
digits come with scikit-learn, and MNIST and N-MNIST are read from files the user names.

Shapes and dtypes at this module's boundary:

- rate inputs: uint8 (N, n_in) with values in ``0 .. 2**input_bits - 1``;
- binary (event) inputs: uint8 (N, T, n_in) with values 0 or 1;
- labels: int64 (N,).
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "Dataset",
    "DatasetFileError",
    "quantize_intensity",
    "split_stratified",
    "load_digits",
    "read_idx",
    "load_mnist",
    "read_nmnist_events",
    "events_to_frames",
    "load_nmnist",
    "load_dataset",
]

log = logging.getLogger(__name__)

NMNIST_SIDE = 34          # N-MNIST sensor crop: 34 x 34 pixels
NMNIST_RECORD_BYTES = 5   # one event is 40 bits
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class DatasetFileError(ValueError):
    """A dataset file that is missing or does not have the expected format."""


@dataclass(frozen=True)
class Dataset:
    """A quantized dataset split into train, validation and test parts.

    ``x_*`` are uint8: (N, n_in) intensities for ``encoding == "rate"``, (N, T, n_in) spikes of 0
    or 1 for ``encoding == "binary"``. ``y_*`` are int64 (N,) class indices.
    """

    name: str
    encoding: str
    input_bits: int
    n_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_in(self) -> int:
        """Number of inputs of one sample (the width of the input layer)."""
        return int(self.x_train.shape[-1])

    def summary(self) -> str:
        """Describe the split sizes in one line for logs and reports."""
        return (f"{self.name}: {len(self.y_train)} train, {len(self.y_val)} val, "
                f"{len(self.y_test)} test, {self.n_in} inputs, {self.n_classes} classes, "
                f"{self.encoding} encoding")


def quantize_intensity(values: np.ndarray, source_max: int, input_bits: int) -> np.ndarray:
    """Map integers in ``0 .. source_max`` to ``0 .. 2**input_bits - 1`` by rounding half up.

    The rule is ``q = (v * (2**input_bits - 1) + source_max // 2) // source_max`` in exact integer
    arithmetic, so 0 maps to 0, ``source_max`` maps to the top code, and the result never depends
    on floating-point rounding. Returns uint8 of the same shape.
    """
    if not 1 <= input_bits <= 8:
        raise ValueError(f"input_bits must lie in 1..8, not {input_bits}")
    values = np.asarray(values).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > source_max):
        raise ValueError(f"values must lie in 0..{source_max}, found "
                         f"{values.min()}..{values.max()}")
    top = (1 << input_bits) - 1
    return ((values * top + source_max // 2) // source_max).astype(np.uint8)


def split_stratified(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split sample indices into parts of the given fractions, each with the class proportions.

    The first part takes what the others leave. Returns sorted int64 index arrays, one per
    fraction; the same ``y`` and ``seed`` always give the same split.
    """
    from sklearn.model_selection import train_test_split

    remaining = np.arange(len(y))
    parts: list[np.ndarray] = []
    left = 1.0
    for fraction in fractions[1:]:
        if fraction <= 0:
            parts.append(np.zeros(0, dtype=np.int64))
            continue
        # The fraction is relative to the whole set, so rescale it to what is left.
        rest, part = train_test_split(remaining, test_size=fraction / left, random_state=seed,
                                      stratify=y[remaining])
        parts.append(np.sort(part))
        remaining = rest
        left -= fraction
    return [np.sort(remaining)] + parts


def load_digits(input_bits: int = 4, seed: int = 0, test_fraction: float = 0.25,
                val_fraction: float = 0.15) -> Dataset:
    """Load scikit-learn's 8x8 digits (1797 samples, 64 inputs) with a stratified split.

    Pixel values 0..16 map to ``0 .. 2**input_bits - 1`` with :func:`quantize_intensity`
    (``q = (v * (2**input_bits - 1) + 8) // 16``; for 4 bits 16 maps to 15 and 8 to 8). The test
    part is taken first (``test_fraction`` 0.25 gives 450 samples), then the validation part as a
    fraction of the whole set; both are fixed by ``seed``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 - test_fraction:
        raise ValueError(f"test_fraction {test_fraction} and val_fraction {val_fraction} must be "
                         f"positive and sum to less than 1")
    bunch = sklearn_digits()
    x = quantize_intensity(bunch.data.astype(np.int64), 16, input_bits)
    y = bunch.target.astype(np.int64)
    # The test part is split off first, so it does not change when val_fraction does.
    train, test, val = split_stratified(y, (1 - test_fraction - val_fraction, test_fraction,
                                            val_fraction), seed)
    return Dataset(name="digits", encoding="rate", input_bits=input_bits, n_classes=10,
                   x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                   x_test=x[test], y_test=y[test])


# -- MNIST (IDX files) ---------------------------------------------------------------------------

def _read_bytes(path: Path, kind: str) -> bytes:
    if not path.is_file():
        raise DatasetFileError(f"{kind} file {str(path)!r} not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DatasetFileError(f"{str(path)!r} has a gzip header but cannot be "
                                   f"decompressed: {error}") from None
    return raw


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read an IDX file (MNIST's format, optionally gzip-compressed) as a uint8 array.

    The header is a big-endian 32-bit magic number (``0x0803`` for images of unsigned bytes with
    3 dimensions, ``0x0801`` for labels) followed by one big-endian 32-bit size per dimension.
    Raises DatasetFileError naming the path when the magic, sizes or length do not match.
    """
    path = Path(path)
    raw = _read_bytes(path, "IDX")
    if len(raw) < 4:
        raise DatasetFileError(f"{str(path)!r} is {len(raw)} bytes long, too short for an IDX "
                               f"header")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise DatasetFileError(f"{str(path)!r} has IDX magic 0x{magic:08x}, expected "
                               f"0x{expected_magic:08x}; are image and label files swapped?")
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DatasetFileError(f"{str(path)!r} is {len(raw)} bytes long, too short for the "
                               f"{dims} dimension sizes of its header")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count:
        raise DatasetFileError(f"{str(path)!r} contains {len(raw) - header} data bytes, expected "
                               f"{count} for shape {tuple(shape)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_pair(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if part == "train" else "t10k"
    candidates = [root / f"{prefix}-images-idx3-ubyte", root / f"{prefix}-images.idx3-ubyte"]
    images_path = next((p for p in candidates + [p.with_name(p.name + ".gz") for p in candidates]
                        if p.is_file()), candidates[0])
    labels_name = images_path.name.replace("images", "labels").replace("idx3", "idx1")
    labels_path = images_path.with_name(labels_name)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetFileError(f"{str(images_path)!r} contains {len(images)} images but "
                               f"{str(labels_path)!r} contains {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetFileError(f"{str(labels_path)!r} contains label {labels.max()}, expected 0..9")
    return images.reshape(len(images), -1), labels.astype(np.int64)


def load_mnist(root: str | os.PathLike, input_bits: int = 4, seed: int = 0,
               val_fraction: float = 0.1) -> Dataset:
    """Load MNIST from the four IDX files in ``root`` (plain or ``.gz``; never downloaded).

    Expected names: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (a ``.`` in place of the last ``-``
    is accepted too). Pixels 0..255 map to ``0 .. 2**input_bits - 1`` with
    :func:`quantize_intensity`. The validation part is a stratified ``val_fraction`` of the
    training file, fixed by ``seed``; the test part is the t10k file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileError(f"MNIST folder {str(root)!r} not found; it must hold the four IDX "
                               f"files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                               f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte")
    x_all, y_all = _mnist_pair(root, "train")
    x_test, y_test = _mnist_pair(root, "test")
    train, val = split_stratified(y_all, (1 - val_fraction, val_fraction), seed)
    q = lambda images: quantize_intensity(images, 255, input_bits)  # noqa: E731
    return Dataset(name="mnist", encoding="rate", input_bits=input_bits, n_classes=10,
                   x_train=q(x_all[train]), y_train=y_all[train], x_val=q(x_all[val]),
                   y_val=y_all[val], x_test=q(x_test), y_test=y_test)


# -- N-MNIST (binary event files) ----------------------------------------------------------------

def read_nmnist_events(path: str | os.PathLike) -> np.ndarray:
    """Read one N-MNIST sample file of 40-bit events.

    Each event is 5 bytes, most significant first: x (8 bits), y (8 bits), then polarity in bit
    23 and the timestamp in microseconds in bits 22..0. Returns a structured array with int64
    fields ``x``, ``y``, ``polarity`` (0 or 1) and ``t`` (microseconds), one row per event.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"N-MNIST event file {str(path)!r} not found")
    raw = path.read_bytes()
    if len(raw) % NMNIST_RECORD_BYTES:
        raise DatasetFileError(f"{str(path)!r} is {len(raw)} bytes long, not a multiple of the "
                               f"{NMNIST_RECORD_BYTES}-byte (40-bit) event record")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, NMNIST_RECORD_BYTES).astype(np.int64)
    events = np.zeros(len(records), dtype=[("x", np.int64), ("y", np.int64),
                                           ("polarity", np.int64), ("t", np.int64)])
    events["x"] = records[:, 0]
    events["y"] = records[:, 1]
    events["polarity"] = records[:, 2] >> 7
    events["t"] = ((records[:, 2] & 0x7F) << 16) | (records[:, 3] << 8) | records[:, 4]
    outside = (events["x"] >= NMNIST_SIDE) | (events["y"] >= NMNIST_SIDE)
    if outside.any():
        first = int(np.argmax(outside))
        raise DatasetFileError(f"{str(path)!r}: event {first} at x={events['x'][first]}, "
                               f"y={events['y'][first]} lies outside the {NMNIST_SIDE}x"
                               f"{NMNIST_SIDE} sensor; is this an N-MNIST file?")
    return events


def events_to_frames(events: np.ndarray, timesteps: int, *, split_polarity: bool = False,
                     duration_us: int | None = None) -> np.ndarray:
    """Bin events into ``timesteps`` equal time windows of binary frames.

    An event at time ``t`` lands in frame ``t * timesteps // duration_us``; events at or after
    ``duration_us`` are dropped. ``duration_us`` defaults to the last timestamp plus one, so the
    frames span the whole recording. A pixel of a frame is 1 when at least one event hit it.
    Pixel index is ``y * 34 + x``; with ``split_polarity`` ON events come after the 34*34 OFF
    inputs. Returns uint8 (timesteps, n_in) with n_in = 1156 or 2312.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be at least 1, not {timesteps}")
    pixels = NMNIST_SIDE * NMNIST_SIDE
    n_in = 2 * pixels if split_polarity else pixels
    frames = np.zeros((timesteps, n_in), dtype=np.uint8)
    if len(events) == 0:
        return frames
    if duration_us is None:
        duration_us = int(events["t"].max()) + 1
    if duration_us < 1:
        raise ValueError(f"duration_us must be at least 1, not {duration_us}")
    keep = events["t"] < duration_us
    events = events[keep]
    frame = events["t"] * timesteps // duration_us
    index = events["y"] * NMNIST_SIDE + events["x"]
    if split_polarity:
        index = index + events["polarity"] * pixels
    frames[frame, index] = 1
    return frames


def _nmnist_part(root: Path, part: str, timesteps: int, split_polarity: bool,
                 duration_us: int | None, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    folder = root / part
    if not folder.is_dir():
        raise DatasetFileError(f"N-MNIST folder {str(folder)!r} not found; expected {part}/0 .. "
                               f"{part}/9 with one .bin event file per sample")
    files: list[tuple[Path, int]] = []
    for label in range(10):
        class_dir = folder / str(label)
        if not class_dir.is_dir():
            raise DatasetFileError(f"N-MNIST class folder {str(class_dir)!r} not found")
        found = sorted(class_dir.glob("*.bin"))
        if limit is not None:
            found = found[:limit]
        files.extend((path, label) for path in found)
    if not files:
        raise DatasetFileError(f"no .bin event files under {str(folder)!r}")
    n_in = NMNIST_SIDE * NMNIST_SIDE * (2 if split_polarity else 1)
    x = np.zeros((len(files), timesteps, n_in), dtype=np.uint8)
    y = np.zeros(len(files), dtype=np.int64)
    for row, (path, label) in enumerate(files):
        x[row] = events_to_frames(read_nmnist_events(path), timesteps,
                                  split_polarity=split_polarity, duration_us=duration_us)
        y[row] = label
    return x, y


def load_nmnist(root: str | os.PathLike, timesteps: int, seed: int = 0, val_fraction: float = 0.1,
                *, split_polarity: bool = False, duration_us: int | None = None,
                limit_per_class: int | None = None) -> Dataset:
    """Load N-MNIST from ``root/Train/<label>/*.bin`` and ``root/Test/<label>/*.bin``.

    Each file becomes ``timesteps`` binary frames (see :func:`events_to_frames`). The validation
    part is a stratified ``val_fraction`` of Train fixed by ``seed``. ``limit_per_class`` reads
    only the first files of each class, in name order, to keep experiments short.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileError(f"N-MNIST folder {str(root)!r} not found; expected Train/ and Test/ "
                               f"with one sub-folder per class")
    x_all, y_all = _nmnist_part(root, "Train", timesteps, split_polarity, duration_us,
                                limit_per_class)
    x_test, y_test = _nmnist_part(root, "Test", timesteps, split_polarity, duration_us,
                                  limit_per_class)
    train, val = split_stratified(y_all, (1 - val_fraction, val_fraction), seed)
    return Dataset(name="nmnist", encoding="binary", input_bits=1, n_classes=10,
                   x_train=x_all[train], y_train=y_all[train], x_val=x_all[val],
                   y_val=y_all[val], x_test=x_test, y_test=y_test)


def load_dataset(name: str, *, input_bits: int = 4, seed: int = 0, path: str | None = None,
                 timesteps: int = 16) -> Dataset:
    """Load a dataset by name: ``digits``, ``mnist`` (needs ``path``) or ``nmnist`` (needs
    ``path`` and uses ``timesteps`` frames)."""
    if name == "digits":
        return load_digits(input_bits=input_bits, seed=seed)
    if name in ("mnist", "nmnist") and path is None:
        raise ValueError(f"dataset {name!r} is read from local files: give their folder as path")
    if name == "mnist":
        return load_mnist(path, input_bits=input_bits, seed=seed)
    if name == "nmnist":
        return load_nmnist(path, timesteps=timesteps, seed=seed)
    raise ValueError(f"dataset must be one of 'digits', 'mnist', 'nmnist', not {name!r}")
