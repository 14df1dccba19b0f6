"""Data sets for training and for seeding the stability analysis.

MNIST comes from one of two places:

* a torchvision MNIST folder named by ``LEO_MNIST_TORCHVISION=<root>`` (the full
  60,000-image training set and the 10,000-image test set, as in the published
  experiments); torchvision is imported only on this path;
* otherwise the official 10,000-image MNIST *test* set in IDX format under
  ``$LEO_DATA/mnist/`` (default ``<repo root>/../shared/data``), split into a
  fixed training part and test part (``SPLIT_DESCRIPTION``), since the 60k set
  is not available on every machine.

Pixels are scaled to [0, 1] (the verification box of the published MNIST runs is
[0, 1]^784) and images are flattened to 784 float32 values.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leo.errors import LeoInputError

DATA_ENV = "LEO_DATA"
TORCHVISION_ENV = "LEO_MNIST_TORCHVISION"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_TRAIN_SIZE = 8_000  # first 8,000 images of the 10k test set train ...
MNIST_TEST_SIZE = 2_000  # ... and the last 2,000 test
SPLIT_DESCRIPTION = (
    "MNIST official 10k test set (t10k) split in file order: "
    "images 0-7999 for training, images 8000-9999 for testing "
    "(the 60k training set was not available); pixels scaled to [0, 1]"
)
TORCHVISION_DESCRIPTION = (
    "MNIST via torchvision: 60,000 training images, 10,000 test images; pixels scaled to [0, 1]"
)

_IDX_MAGIC_IMAGES = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_MAGIC_LABELS = 2049  # 0x00000801: unsigned bytes, 1 dimension
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclass(frozen=True)
class MnistData:
    """Flattened images in [0, 1] (float32, n x 784), labels (int64), and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str

    def __post_init__(self) -> None:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)


# -- IDX -------------------------------------------------------------------
def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzip or plain); ``magic`` pins the expected type and rank."""
    path = Path(path)
    if not path.is_file():
        raise LeoInputError(f"IDX file {path} not found")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise LeoInputError(f"cannot read {path}: {exc}; the file looks damaged, fetch it again") from None
    if magic is not None and int.from_bytes(raw[:4], "big") != magic:
        raise LeoInputError(f"{path}: magic number {int.from_bytes(raw[:4], 'big')}, expected {magic}")
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes: magic 0x0000 <type> <ndim>, ndim big-endian uint32 sizes, payload."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise LeoInputError(f"{name} is not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(raw[2])
    ndim = raw[3]
    if dtype is None:
        raise LeoInputError(f"{name}: unknown IDX data type 0x{raw[2]:02x}")
    if ndim == 0:
        raise LeoInputError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LeoInputError(f"{name} is truncated inside its IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise LeoInputError(
            f"{name}: IDX header declares shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_mnist_idx(images: str | Path, labels: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (n x 784 float32 in [0, 1]) and labels (int64) from an IDX pair."""
    x = read_idx(images, _IDX_MAGIC_IMAGES)
    y = read_idx(labels, _IDX_MAGIC_LABELS)
    if x.shape[1:] != (28, 28):
        raise LeoInputError(f"{images}: expected 28x28 images, got {x.shape[1:]}")
    if y.shape[0] != x.shape[0]:
        raise LeoInputError(f"{labels} has {y.shape[0]} labels for {x.shape[0]} images")
    if y.size and int(y.max()) > 9:
        raise LeoInputError(f"{labels}: label {int(y.max())} outside 0-9")
    return _scale(x), y.astype(np.int64)


def _scale(images: np.ndarray) -> np.ndarray:
    return (images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0))


# -- MNIST -----------------------------------------------------------------
def data_dir() -> Path:
    """The shared data folder: ``$LEO_DATA``, else ``<repo root>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise LeoInputError(f"{DATA_ENV}={env} is not a folder")
        return path
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR
    raise LeoInputError(
        f"no data folder: set {DATA_ENV} to the folder holding mnist/ "
        f"({MNIST_IMAGES}, {MNIST_LABELS}), or {TORCHVISION_ENV} to a torchvision MNIST root"
    )


def load_mnist() -> MnistData:
    """MNIST from torchvision when ``LEO_MNIST_TORCHVISION`` is set, else the fixed 10k split."""
    root = os.environ.get(TORCHVISION_ENV)
    if root:
        return _load_torchvision(Path(root).expanduser())
    folder = data_dir() / "mnist"
    x, y = read_mnist_idx(folder / MNIST_IMAGES, folder / MNIST_LABELS)
    if x.shape[0] != MNIST_TRAIN_SIZE + MNIST_TEST_SIZE:
        raise LeoInputError(
            f"{folder / MNIST_IMAGES} has {x.shape[0]} images; the fixed split needs the official "
            f"{MNIST_TRAIN_SIZE + MNIST_TEST_SIZE}"
        )
    n = MNIST_TRAIN_SIZE
    return MnistData(x[:n], y[:n], x[n:], y[n:], SPLIT_DESCRIPTION)


def _load_torchvision(root: Path) -> MnistData:
    """The full MNIST through torchvision (never downloads: machines may be offline)."""
    try:
        from torchvision.datasets import MNIST  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise LeoInputError(
            f"{TORCHVISION_ENV} is set but torchvision is not installed: install torchvision "
            f"or unset {TORCHVISION_ENV} to use the 10k split"
        ) from None
    try:
        train = MNIST(str(root), train=True, download=False)
        test = MNIST(str(root), train=False, download=False)
    except (RuntimeError, OSError) as exc:
        raise LeoInputError(f"{TORCHVISION_ENV}={root}: cannot read torchvision MNIST: {exc}") from None

    def arrays(ds: object) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(ds.data.numpy(), dtype=np.uint8)  # type: ignore[attr-defined]
        labels = np.asarray(ds.targets.numpy(), dtype=np.int64)  # type: ignore[attr-defined]
        return _scale(images), labels

    x_train, y_train = arrays(train)
    x_test, y_test = arrays(test)
    return MnistData(x_train, y_train, x_test, y_test, TORCHVISION_DESCRIPTION)


# -- user data ---------------------------------------------------------------
def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs ``x`` (n x d, float64) and optional labels ``y`` from a ``.npz`` file."""
    path = Path(path)
    if not path.is_file():
        raise LeoInputError(f"data file {path} not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LeoInputError(f"cannot read {path} as a .npz file: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise LeoInputError(f"{path} is a single .npy array: save it with np.savez(path, x=inputs, y=labels)")
    with archive:
        if "x" not in archive.files:
            raise LeoInputError(
                f"{path} has no array 'x' (it has {', '.join(archive.files) or 'none'}): "
                "save inputs with np.savez(path, x=inputs, y=labels)"
            )
        try:
            x = np.asarray(archive["x"])
            y = np.asarray(archive["y"]) if "y" in archive.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise LeoInputError(f"cannot read the arrays of {path}: {exc}") from None
    if x.ndim < 2 or x.shape[0] == 0:
        raise LeoInputError(f"{path}: 'x' has shape {x.shape}; expected one row per sample (n x d)")
    if not np.issubdtype(x.dtype, np.number):
        raise LeoInputError(f"{path}: 'x' holds {x.dtype}, expected numbers")
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise LeoInputError(f"{path}: 'x' has NaN or infinite values")
    if y is not None:
        y = y.reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise LeoInputError(f"{path}: {y.shape[0]} labels 'y' for {x.shape[0]} samples 'x'")
    return x, y


NAMED_DATASETS = ("mnist",)


def named_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A built-in data set by name (``--data mnist``): its training part as ``(x, y)``."""
    if name.lower() == "mnist":
        data = load_mnist()
        return data.x_train, data.y_train
    raise LeoInputError(f"unknown data set {name!r}: known names are {', '.join(NAMED_DATASETS)}, or give a .npz file")
