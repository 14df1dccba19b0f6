"""MNIST/IDX and .npz readers: parsing, corruption, the fixed split of the shared 10k set."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from leo import data
from leo.errors import LeoInputError

# class counts of the official MNIST t10k labels
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, raw: bytes, compress: bool = True) -> Path:
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def mnist_pair(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    return (write(folder / data.MNIST_IMAGES, idx_bytes(images)),
            write(folder / data.MNIST_LABELS, idx_bytes(labels)), images, labels)


# -- IDX ---------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / "a.idx", idx_bytes(array), compress)
    out = data.read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_big_endian_ints(tmp_path: Path) -> None:
    array = np.array([1, -2, 300000], dtype=np.int32)
    out = data.read_idx(write(tmp_path / "i.idx", idx_bytes(array, 0x0C)))
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("corrupt", [
    lambda raw: raw[:-1],  # payload one byte short
    lambda raw: raw + b"\x00",  # one byte too many
    lambda raw: b"\x01" + raw[1:],  # bad magic
    lambda raw: raw[:2] + b"\x07" + raw[3:],  # unknown type code
    lambda raw: raw[:6],  # header cut
])
def test_read_idx_rejects_corrupt(tmp_path: Path, corrupt) -> None:
    raw = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(LeoInputError):
        data.read_idx(write(tmp_path / "bad.idx", corrupt(raw)))


def test_read_idx_rejects_broken_gzip_and_missing(tmp_path: Path) -> None:
    raw = gzip.compress(idx_bytes(np.zeros((50, 3), dtype=np.uint8)))
    with pytest.raises(LeoInputError):
        data.read_idx(write(tmp_path / "cut.gz", raw[: len(raw) // 2], compress=False))
    with pytest.raises(LeoInputError, match="not found"):
        data.read_idx(tmp_path / "nope.gz")


def test_read_mnist_idx_scales_and_flattens(tmp_path: Path) -> None:
    images, labels, raw_x, raw_y = mnist_pair(tmp_path, 3)
    x, y = data.read_mnist_idx(images, labels)
    assert x.shape == (3, 784) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, raw_x.reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, raw_y)


def test_read_mnist_idx_checks_magic_and_counts(tmp_path: Path) -> None:
    images, labels, _, _ = mnist_pair(tmp_path, 3)
    with pytest.raises(LeoInputError, match="magic"):
        data.read_mnist_idx(labels, images)  # swapped files
    write(labels, idx_bytes(np.zeros(2, dtype=np.uint8)))
    with pytest.raises(LeoInputError, match="2 labels for 3 images"):
        data.read_mnist_idx(images, labels)


# -- MNIST ---------------------------------------------------------------------
def shared_mnist() -> Path | None:
    try:
        folder = data.data_dir() / "mnist"
    except LeoInputError:
        return None
    return folder if (folder / data.MNIST_IMAGES).is_file() else None


@pytest.mark.skipif(shared_mnist() is None, reason="shared MNIST data not available")
def test_load_mnist_fixed_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.TORCHVISION_ENV, raising=False)
    mnist = data.load_mnist()
    assert mnist.x_train.shape == (8000, 784) and mnist.x_test.shape == (2000, 784)
    assert mnist.y_train.shape == (8000,) and mnist.y_test.shape == (2000,)
    assert mnist.x_train.dtype == np.float32
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert 0.0 <= mnist.x_test.min() and mnist.x_test.max() <= 1.0
    counts = np.bincount(mnist.y_train, minlength=10) + np.bincount(mnist.y_test, minlength=10)
    assert counts.tolist() == T10K_COUNTS
    assert mnist.y_train[:5].tolist() == [7, 2, 1, 0, 4]  # the first t10k labels: file order kept
    assert mnist.description == data.SPLIT_DESCRIPTION and "8000" in mnist.description
    assert not mnist.x_train.flags.writeable
    x, y = data.named_dataset("MNIST")
    assert x.shape == (8000, 784) and y.shape == (8000,)


def test_load_mnist_uses_leo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.TORCHVISION_ENV, raising=False)
    mnist_pair(tmp_path / "mnist", 5)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(LeoInputError, match="has 5 images"):  # read from LEO_DATA, refused by the split
        data.load_mnist()
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(LeoInputError, match="not a folder"):
        data.load_mnist()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_torchvision_path_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.TORCHVISION_ENV, str(tmp_path))
    with pytest.raises(LeoInputError, match="torchvision is not installed"):
        data.load_mnist()


def test_named_dataset_unknown() -> None:
    with pytest.raises(LeoInputError, match="unknown data set"):
        data.named_dataset("cifar")


# -- npz -----------------------------------------------------------------------
def test_load_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((4, 2, 3))
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(4))
    got_x, got_y = data.load_npz(tmp_path / "xy.npz")
    assert got_x.shape == (4, 6) and got_y is not None and got_y.tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "x.npz", x=x)
    assert data.load_npz(tmp_path / "x.npz")[1] is None


def test_load_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(LeoInputError, match="not found"):
        data.load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "nox.npz", inputs=np.zeros((2, 2)))
    with pytest.raises(LeoInputError, match="no array 'x'"):
        data.load_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "bady.npz", x=np.zeros((2, 2)), y=np.zeros(3))
    with pytest.raises(LeoInputError, match="3 labels"):
        data.load_npz(tmp_path / "bady.npz")
    np.save(tmp_path / "plain.npy", np.zeros((2, 2)))
    with pytest.raises(LeoInputError, match="single .npy"):
        data.load_npz(tmp_path / "plain.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(LeoInputError):
        data.load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "nan.npz", x=np.array([[np.nan, 1.0]]))
    with pytest.raises(LeoInputError, match="NaN"):
        data.load_npz(tmp_path / "nan.npz")
