"""Dataset loaders: digits split and quantization, and the MNIST and N-MNIST file readers on
tiny files written here, including malformed ones."""

import gzip
import struct

import numpy as np
import pytest

from sw_model.data import (
    DatasetFileError,
    events_to_frames,
    load_digits,
    load_mnist,
    load_nmnist,
    quantize_intensity,
    read_idx,
    read_nmnist_events,
)


# -- digits and quantization ---------------------------------------------------------------------

def test_quantize_intensity_rule():
    values = np.arange(17)
    q = quantize_intensity(values, 16, 4)
    assert q.dtype == np.uint8
    assert q.tolist() == [(v * 15 + 8) // 16 for v in range(17)]
    assert q[0] == 0
    assert q[16] == 15
    assert q[8] == 8


def test_quantize_intensity_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..16"):
        quantize_intensity(np.array([0, 17]), 16, 4)
    with pytest.raises(ValueError, match="input_bits"):
        quantize_intensity(np.array([0, 1]), 16, 9)


def test_digits_split_sizes_and_range():
    data = load_digits(input_bits=4, seed=0)
    assert len(data.y_test) == 450
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert data.x_train.dtype == np.uint8
    assert data.x_train.shape[1] == 64
    assert data.y_train.dtype == np.int64
    assert int(max(data.x_train.max(), data.x_val.max(), data.x_test.max())) <= 15
    everything = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert len(everything) == 1797


def test_digits_split_is_stratified():
    data = load_digits(seed=0)
    counts = np.bincount(data.y_test, minlength=10)
    assert counts.min() >= 43
    assert counts.max() <= 46


def test_digits_split_fixed_by_seed():
    first = load_digits(seed=3)
    again = load_digits(seed=3)
    other = load_digits(seed=4)
    assert np.array_equal(first.x_test, again.x_test)
    assert np.array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.x_test, other.x_test)


def test_digits_test_part_ignores_val_fraction():
    small_val = load_digits(seed=0, val_fraction=0.1)
    large_val = load_digits(seed=0, val_fraction=0.2)
    assert np.array_equal(small_val.x_test, large_val.x_test)
    assert len(small_val.y_val) < len(large_val.y_val)


def test_digits_input_bits_scale():
    data = load_digits(input_bits=2, seed=0)
    assert int(data.x_train.max()) == 3


# -- MNIST IDX -----------------------------------------------------------------------------------

def write_idx(path, magic, array, *, compress=False):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_mnist(root, n_train=40, n_test=20, side=4, compress=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(count, side, side))
        labels = np.arange(count) % 10
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", 0x803, images, compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", 0x801, labels, compress=compress)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_written_files(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    data = load_mnist(tmp_path, input_bits=4, seed=0, val_fraction=0.25)
    assert data.x_test.shape == (20, 16)
    assert len(data.y_train) == 30
    assert len(data.y_val) == 10
    assert data.x_train.dtype == np.uint8
    assert int(data.x_train.max()) <= 15
    assert data.y_test.tolist() == [i % 10 for i in range(20)]


def test_idx_values_survive_round_trip(tmp_path):
    images = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    write_idx(tmp_path / "images", 0x803, images)
    assert np.array_equal(read_idx(tmp_path / "images", 0x803), images)


def test_idx_wrong_magic_names_path(tmp_path):
    write_idx(tmp_path / "labels", 0x801, np.arange(5))
    with pytest.raises(DatasetFileError, match="labels.*magic 0x00000801, expected 0x00000803"):
        read_idx(tmp_path / "labels", 0x803)


def test_idx_truncated_data(tmp_path):
    path = tmp_path / "images"
    write_idx(path, 0x803, np.zeros((3, 4, 4)))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetFileError, match="47 data bytes, expected 48"):
        read_idx(path, 0x803)


def test_idx_short_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">I", 0x803) + b"\x00\x00")
    with pytest.raises(DatasetFileError, match="too short"):
        read_idx(path, 0x803)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DatasetFileError, match="not found"):
        read_idx(tmp_path / "absent", 0x803)


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", 0x801, np.arange(19) % 10)
    with pytest.raises(DatasetFileError, match="20 images but .* 19 labels"):
        load_mnist(tmp_path, val_fraction=0.25)


def test_mnist_missing_folder(tmp_path):
    with pytest.raises(DatasetFileError, match="MNIST folder .* not found"):
        load_mnist(tmp_path / "nothing")


# -- N-MNIST events ------------------------------------------------------------------------------

def encode_events(events):
    """Pack (x, y, polarity, t) tuples as 40-bit N-MNIST records."""
    raw = bytearray()
    for x, y, polarity, t in events:
        raw += bytes([x, y, (polarity << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(raw)


def test_nmnist_record_decoding(tmp_path):
    written = [(0, 0, 0, 0), (33, 5, 1, 0x7FFFFF), (7, 33, 0, 70000)]
    path = tmp_path / "00001.bin"
    path.write_bytes(encode_events(written))
    events = read_nmnist_events(path)
    decoded = list(zip(events["x"].tolist(), events["y"].tolist(), events["polarity"].tolist(),
                       events["t"].tolist()))
    assert decoded == written


def test_nmnist_bad_length(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(encode_events([(1, 1, 0, 5)]) + b"\x00\x01")
    with pytest.raises(DatasetFileError, match="7 bytes long, not a multiple"):
        read_nmnist_events(path)


def test_nmnist_pixel_outside_sensor(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(encode_events([(1, 1, 0, 5), (34, 2, 0, 9)]))
    with pytest.raises(DatasetFileError, match="event 1 at x=34"):
        read_nmnist_events(path)


def test_nmnist_missing_file(tmp_path):
    with pytest.raises(DatasetFileError, match="not found"):
        read_nmnist_events(tmp_path / "absent.bin")


def test_events_binned_into_frames(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(encode_events([(0, 0, 0, 0), (1, 0, 1, 49), (2, 1, 0, 50), (2, 1, 0, 99)]))
    events = read_nmnist_events(path)
    frames = events_to_frames(events, 2)
    assert frames.shape == (2, 34 * 34)
    assert frames.dtype == np.uint8
    assert np.flatnonzero(frames[0]).tolist() == [0, 1]
    assert np.flatnonzero(frames[1]).tolist() == [34 + 2]
    split = events_to_frames(events, 2, split_polarity=True)
    assert split.shape == (2, 2 * 34 * 34)
    assert np.flatnonzero(split[0]).tolist() == [0, 34 * 34 + 1]


def test_events_after_duration_dropped(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(encode_events([(0, 0, 0, 10), (1, 0, 0, 500)]))
    frames = events_to_frames(read_nmnist_events(path), 4, duration_us=100)
    assert frames.sum() == 1
    assert frames[0, 0] == 1


def test_nmnist_folder_loads(tmp_path):
    for part in ("Train", "Test"):
        for label in range(10):
            folder = tmp_path / part / str(label)
            folder.mkdir(parents=True)
            for sample in range(2):
                events = [(label, sample, 0, 0), (label, sample + 2, 1, 1000)]
                (folder / f"{sample:05d}.bin").write_bytes(encode_events(events))
    data = load_nmnist(tmp_path, timesteps=2, val_fraction=0.5)
    assert data.encoding == "binary"
    assert data.x_test.shape == (20, 2, 34 * 34)
    assert len(data.y_train) == 10
    assert len(data.y_val) == 10
    first = data.x_test[0]
    assert first[0, 0] == 1  # label 0, sample 0: event at x=0, y=0 in the first frame
    assert first[1, 2 * 34] == 1
    assert int(data.x_test.max()) == 1


def test_nmnist_missing_class_folder(tmp_path):
    (tmp_path / "Train" / "0").mkdir(parents=True)
    with pytest.raises(DatasetFileError, match="class folder .*1.* not found"):
        load_nmnist(tmp_path, timesteps=2)


def test_mnist_folder_named_images(tmp_path):
    """Only the file name decides which labels file belongs to an images file."""
    root = tmp_path / "images"
    root.mkdir()
    write_mnist(root)
    data = load_mnist(root, val_fraction=0.25)
    assert len(data.y_test) == 20


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetFileError, match="gzip header but cannot be decompressed"):
        read_idx(path, 0x803)
