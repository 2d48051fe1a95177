"""Image dataset loaders: ``(images uint8 (N, H, W[, C]), labels int64 (N,))``.

Nothing is fetched unless asked: scikit-learn's digits ship with scikit-learn, Fashion-MNIST
comes from Debian's ``dataset-fashion-mnist`` package, MNIST from a directory of IDX files (or
an opt-in download into a user cache), CIFAR-10 from the user's own python pickle batches.
Every file read is validated and a bad one fails with :class:`DatasetFormatError` naming it.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import urllib.request
from pathlib import Path

import numpy as np

from ._idx import DatasetFormatError, read_idx

__all__ = [
    "FASHION_MNIST_DIR",
    "IMAGE_SHAPES",
    "MNIST_MD5",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
]

# (H, W, C) of each dataset's images, checked on read (config validation uses it before any read)
IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1),
                "cifar10": (32, 32, 3)}

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package installs it

# md5 of the canonical gzip files (LeCun et al.); raw files are validated structurally only.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# yann.lecun.com refuses most automated downloads; these mirrors serve the identical files.
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bayes-sgd"


def _check_split(split: str) -> str:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return _SPLIT_PREFIX[split]


def _idx_names(prefix: str) -> tuple[str, str]:
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _validated_pair(images_file: Path, labels_file: Path, *, image_shape, n_classes: int = 10):
    images = read_idx(images_file, dtype=np.uint8, ndim=3)
    labels = read_idx(labels_file, dtype=np.uint8, ndim=1)
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        raise DatasetFormatError(
            f"{images_file}: expected images of shape {tuple(image_shape)}, got {images.shape[1:]}"
        )
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= n_classes)
    if bad.size:
        raise DatasetFormatError(
            f"{labels_file}: expected labels in [0, {n_classes - 1}], "
            f"got {int(labels[bad[0]])} at index {int(bad[0])} ({bad.size} out of range)"
        )
    return images, labels.astype(np.int64)


def load_digits():
    """scikit-learn's 8x8 handwritten digits: 1797 images with pixel values 0..16 (not 0..255)."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.asarray(bunch.images)
    if (images.shape[1:] != IMAGE_SHAPES["digits"][:2] or not np.array_equal(images, np.round(images))
            or images.max() > 16):
        raise DatasetFormatError("sklearn digits: expected integer 8x8 images with values in [0, 16]")
    return images.astype(np.uint8), np.asarray(bunch.target, dtype=np.int64)


def load_fashion_mnist(split: str = "train", *, path=None):
    """Fashion-MNIST from IDX files (``.gz`` or raw), by default Debian's ``dataset-fashion-mnist``.

    ``path`` defaults to ``$BAYES_SGD_FASHION_MNIST_DIR`` or ``/usr/share/datasets/fashion-mnist``.
    """
    prefix = _check_split(split)
    directory = Path(path or os.environ.get("BAYES_SGD_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)
    stems = _idx_names(prefix)
    files = [_find(directory, s) for s in stems]
    if None in files:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} split not found: expected {stems[0]}[.gz] and {stems[1]}[.gz] "
            f"in {directory}. Install Debian's package (apt-get install dataset-fashion-mnist, which "
            f"puts them in {FASHION_MNIST_DIR}), or point task.data_path (bayes-sgd --set "
            f"task.data_path=DIR; path=... in Python) or BAYES_SGD_FASHION_MNIST_DIR at them."
        )
    # No checksum: Debian's gzip files differ byte-wise from upstream's (recompressed), so only
    # the structure, sizes and labels are checked.
    return _validated_pair(*files, image_shape=IMAGE_SHAPES["fashion-mnist"][:2])


def load_mnist(split: str = "train", *, path=None, download: bool = False, cache_dir=None, verify: bool = True):
    """MNIST from IDX files (``.gz`` or raw).

    Looks in ``path`` if given, else in ``$BAYES_SGD_MNIST_DIR`` and then ``cache_dir/mnist``
    (default ``~/.cache/bayes-sgd/mnist``). With ``download=True`` missing files are fetched into
    ``path`` (or the cache). ``.gz`` files are checked against the canonical md5 sums unless
    ``verify=False``.
    """
    prefix = _check_split(split)
    if path is not None:
        dirs = [Path(path)]
    else:
        env = os.environ.get("BAYES_SGD_MNIST_DIR")
        dirs = ([Path(env)] if env else []) + [Path(cache_dir or _default_cache_dir()) / "mnist"]
    stems = _idx_names(prefix)

    files = None
    for d in dirs:
        found = [_find(d, s) for s in stems]
        if None not in found:
            files = found
            break
    if files is None and download:
        files = [_download(s + ".gz", dirs[-1]) for s in stems]
    if files is None:
        raise FileNotFoundError(
            f"MNIST {split} split not found: expected {stems[0]}[.gz] and {stems[1]}[.gz] in "
            f"{' or '.join(str(d) for d in dirs)}. Point task.data_path (bayes-sgd --set "
            f"task.data_path=DIR; path=... in Python) or BAYES_SGD_MNIST_DIR at a folder holding "
            f"them; the command line does not download (in Python: load_mnist(..., download=True), "
            f"which needs network access)."
        )
    if verify:
        for f in files:
            if f.name in MNIST_MD5 and (got := _md5(f)) != MNIST_MD5[f.name]:
                raise DatasetFormatError(
                    f"{f}: md5 {got} does not match the canonical MNIST checksum {MNIST_MD5[f.name]} "
                    f"(corrupt or a different file: replace it with the canonical file; in Python, "
                    f"verify=False skips the check)"
                )
    return _validated_pair(*files, image_shape=IMAGE_SHAPES["mnist"][:2])


def _download(name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    tmp = directory / (name + ".part")
    errors = []
    for base in _MNIST_MIRRORS:
        url = base + name
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as err:
            errors.append(f"{url}: {err}")
            continue
        if (got := _md5(tmp)) != MNIST_MD5[name]:
            errors.append(f"{url}: md5 {got}, expected {MNIST_MD5[name]}")
            continue
        os.replace(tmp, target)  # only a verified file ever carries the final name
        return target
    tmp.unlink(missing_ok=True)
    raise OSError(f"could not download {name}:\n  " + "\n  ".join(errors))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a batch file cannot run code."""

    def find_class(self, module, name):
        core = getattr(np, "_core", None) or np.core
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): core.multiarray.scalar,
            ("numpy._core.multiarray", "scalar"): core.multiarray.scalar,
            ("_codecs", "encode"): __import__("codecs").encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return allowed[(module, name)]


def _read_cifar_batch(file: Path):
    try:
        with open(file, "rb") as fh:
            # latin1: the official batches are Python 2 pickles of numpy arrays
            batch = _ArrayUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DatasetFormatError(f"{file}: not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{file}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetFormatError(f"{file}: expected keys 'data' and 'labels', got {sorted(map(str, batch))}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(f"{file}: expected 'data' uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetFormatError(f"{file}: {len(data)} images but labels of shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DatasetFormatError(f"{file}: expected integer labels in [0, 9]")
    # rows are channel-major (1024 R, 1024 G, 1024 B); go to NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def load_cifar10(split: str = "train", *, path):
    """CIFAR-10 from the user's python batches (``data_batch_1..5``, ``test_batch``).

    ``path`` is the extracted ``cifar-10-batches-py`` directory or its parent. Returns images
    of shape (N, 32, 32, 3). The pickles are read with a loader that only admits numpy arrays.
    """
    _check_split(split)
    directory = Path(path)
    if not (directory / "test_batch").exists() and (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} split: {', '.join(missing)} not found in {directory} "
            "(expected the extracted python version, cifar-10-batches-py; set task.data_path)"
        )
    parts = [_read_cifar_batch(directory / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
