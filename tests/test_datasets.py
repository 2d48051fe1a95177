"""Dataset loaders: IDX parsing and validation on small files written here with ``struct``
(independently of ``write_idx``), plus the real data where this machine has it."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from bayes_sgd import datasets
from bayes_sgd.datasets import DatasetFormatError, read_idx, write_idx

MNIST_DIR = Path(os.environ.get("BAYES_SGD_MNIST_DIR") or Path(__file__).parents[2] / "shared/data/mnist")
HAVE_MNIST_TEST = all((MNIST_DIR / f"t10k-{k}-idx{d}-ubyte.gz").is_file() for k, d in (("images", 3), ("labels", 1)))
FASHION_DIR = Path(os.environ.get("BAYES_SGD_FASHION_MNIST_DIR") or datasets.FASHION_MNIST_DIR)
HAVE_FASHION = all(
    (FASHION_DIR / f"{p}-{k}-idx{d}-ubyte.gz").is_file()
    for p in ("train", "t10k")
    for k, d in (("images", 3), ("labels", 1))
)
needs_mnist = pytest.mark.skipif(
    not HAVE_MNIST_TEST,
    reason=f"MNIST test split (t10k-*-ubyte.gz) not in {MNIST_DIR}; set BAYES_SGD_MNIST_DIR to run",
)
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION,
    reason=f"Fashion-MNIST IDX files not in {FASHION_DIR}; apt-get install dataset-fashion-mnist to run",
)


def idx_bytes(arr: np.ndarray, code: int = 0x08, magic_hi: int = 0) -> bytes:
    """Reference IDX encoder, written from the format description."""
    head = struct.pack(">HBB", magic_hi, code, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_pair(directory: Path, images, labels, prefix="t10k", gz=False, img_bytes=None, lbl_bytes=None):
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    enc = gzip.compress if gz else (lambda b: b)
    (directory / f"{prefix}-images-idx3-ubyte{ext}").write_bytes(enc(img_bytes or idx_bytes(images)))
    (directory / f"{prefix}-labels-idx1-ubyte{ext}").write_bytes(enc(lbl_bytes or idx_bytes(labels)))


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)


# --- read_idx / write_idx ---------------------------------------------------------------


@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B),
                                        (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
def test_read_idx_matches_reference_encoding(tmp_path, dtype, code):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    (tmp_path / "a").write_bytes(idx_bytes(arr, code))
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    # write_idx is byte-identical to the reference encoder (raw) and round-trips through gzip
    write_idx(tmp_path / "b", arr)
    assert (tmp_path / "b").read_bytes() == idx_bytes(arr, code)
    write_idx(tmp_path / "c.gz", arr)
    assert gzip.decompress((tmp_path / "c.gz").read_bytes()) == idx_bytes(arr, code)
    np.testing.assert_array_equal(read_idx(tmp_path / "c.gz"), arr)


def test_read_idx_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    (tmp_path / "misnamed").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "misnamed"), arr)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda b: b"\x00\x01" + b[2:], "bad IDX magic"),  # leading bytes must be zero
        (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic"),  # unknown dtype code
        (lambda b: b[:-1], r"truncated"),
        (lambda b: b + b"\x00", r"trailing bytes"),
        (lambda b: b[:6], r"truncated IDX header"),
        (lambda b: b[:3], r"at least 4 bytes"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mutate, match):
    f = tmp_path / "bad-idx"
    f.write_bytes(mutate(idx_bytes(np.zeros((3, 4, 4), np.uint8))))
    with pytest.raises(DatasetFormatError, match=match) as err:
        read_idx(f)
    assert str(f) in str(err.value)


def test_read_idx_expected_dtype_and_ndim(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(idx_bytes(np.zeros((2, 2), np.float32), 0x0D))
    with pytest.raises(DatasetFormatError, match=r"expected IDX dtype uint8 \(code 0x08\), got float32"):
        read_idx(f, dtype=np.uint8)
    with pytest.raises(DatasetFormatError, match="expected a 3-d IDX array, header says 2-d"):
        read_idx(f, ndim=3)


def test_read_idx_truncated_gzip(tmp_path):
    f = tmp_path / "x.gz"
    f.write_bytes(gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8)))[:-12])
    with pytest.raises(DatasetFormatError, match="truncated or corrupt gzip"):
        read_idx(f)


# --- MNIST / Fashion-MNIST loaders on synthetic files ------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_valid_pair(tmp_path, small, gz):
    images, labels = small
    write_pair(tmp_path, images, labels, gz=gz)
    x, y = datasets.load_mnist("test", path=tmp_path, verify=False)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    xf, yf = datasets.load_fashion_mnist("test", path=tmp_path)  # same layout, no checksum
    np.testing.assert_array_equal(xf, images)
    np.testing.assert_array_equal(yf, labels)


def test_load_mnist_checksum_mismatch(tmp_path, small):
    write_pair(tmp_path, *small, gz=True)  # canonical names, non-canonical content
    with pytest.raises(DatasetFormatError, match="does not match the canonical MNIST checksum"):
        datasets.load_mnist("test", path=tmp_path)


def test_loader_label_out_of_range(tmp_path, small):
    images, labels = small
    labels = labels.copy()
    labels[4] = 10
    write_pair(tmp_path, images, labels)
    with pytest.raises(DatasetFormatError, match=r"labels in \[0, 9\], got 10 at index 4") as err:
        datasets.load_mnist("test", path=tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(err.value)


def test_loader_count_mismatch(tmp_path, small):
    images, labels = small
    write_pair(tmp_path, images, labels[:-1])
    with pytest.raises(DatasetFormatError, match="holds 7 images but .* holds 6 labels"):
        datasets.load_fashion_mnist("test", path=tmp_path)


def test_loader_wrong_image_shape_and_dtype(tmp_path, small):
    images, labels = small
    write_pair(tmp_path, images[:, :27], labels)
    with pytest.raises(DatasetFormatError, match=r"expected images of shape \(28, 28\), got \(27, 28\)"):
        datasets.load_mnist("test", path=tmp_path)
    write_pair(tmp_path, images, labels, lbl_bytes=idx_bytes(labels.astype(np.int32), 0x0C))
    with pytest.raises(DatasetFormatError, match="expected IDX dtype uint8"):
        datasets.load_mnist("test", path=tmp_path)
    # images and labels swapped: the images file is 1-d
    write_pair(tmp_path, images, labels, img_bytes=idx_bytes(labels), lbl_bytes=idx_bytes(images))
    with pytest.raises(DatasetFormatError, match="expected a 3-d IDX array"):
        datasets.load_mnist("test", path=tmp_path)


def test_loader_truncated_file(tmp_path, small):
    images, labels = small
    write_pair(tmp_path, images, labels, img_bytes=idx_bytes(images)[:-100])
    with pytest.raises(DatasetFormatError, match=r"t10k-images-idx3-ubyte: IDX header says shape \(7, 28, 28\)"):
        datasets.load_mnist("test", path=tmp_path)


def test_missing_files_messages(tmp_path, monkeypatch):
    monkeypatch.delenv("BAYES_SGD_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as err:
        datasets.load_fashion_mnist("train", path=tmp_path)
    assert str(tmp_path) in str(err.value) and "BAYES_SGD_FASHION_MNIST_DIR" in str(err.value)
    with pytest.raises(FileNotFoundError, match="BAYES_SGD_MNIST_DIR") as err:
        datasets.load_mnist("train", cache_dir=tmp_path)
    assert str(tmp_path / "mnist") in str(err.value) and "download=True" in str(err.value)
    with pytest.raises(ValueError, match="split: expected 'train' or 'test'"):
        datasets.load_mnist("val", path=tmp_path)


# --- real data ---------------------------------------------------------------------------


def test_digits_match_sklearn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    x, y = datasets.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, ref.images)
    np.testing.assert_array_equal(y, ref.target)
    assert y.min() == 0 and y.max() == 9 and x.max() == 16


@needs_mnist
def test_mnist_test_split():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert hashlib.md5((MNIST_DIR / name).read_bytes()).hexdigest() == datasets.MNIST_MD5[name]
    x, y = datasets.load_mnist("test", path=MNIST_DIR)  # verify=True also checks the md5
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    # published per-class counts of the MNIST test set
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@needs_mnist
def test_mnist_env_var_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_SGD_MNIST_DIR", str(MNIST_DIR))
    x, _ = datasets.load_mnist("test", cache_dir=tmp_path / "empty")
    assert x.shape == (10000, 28, 28)
    # download from a local "mirror": lands in the cache, verified, then loads from there
    monkeypatch.delenv("BAYES_SGD_MNIST_DIR")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in MNIST_DIR.glob("t10k-*.gz"):
        shutil.copy(f, mirror / f.name)
    monkeypatch.setattr("bayes_sgd.datasets._loaders._MNIST_MIRRORS", (mirror.as_uri() + "/",))
    x2, y2 = datasets.load_mnist("test", download=True, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(x2, x)
    assert sorted(p.name for p in (tmp_path / "cache/mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_rejects_bad_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv("BAYES_SGD_MNIST_DIR", raising=False)  # CI sets it: force the download path
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mirror / stem).write_bytes(b"not mnist")
    monkeypatch.setattr("bayes_sgd.datasets._loaders._MNIST_MIRRORS", (mirror.as_uri() + "/",))
    with pytest.raises(OSError, match=r"(?s)could not download t10k-images-idx3-ubyte.gz.*md5 \w+, expected 9fb629c4"):
        datasets.load_mnist("test", download=True, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache/mnist").iterdir()) == []  # no unverified file left behind


@needs_fashion
def test_fashion_mnist_debian():
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = datasets.load_fashion_mnist(split)
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
        # Fashion-MNIST is exactly balanced: 6000 / 1000 images per class
        np.testing.assert_array_equal(np.bincount(y, minlength=10), [n // 10] * 10)


# --- CIFAR-10 ------------------------------------------------------------------------------


def write_cifar(directory: Path, n_per_batch=4, seed=0, bytes_keys=True):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    ref_x, ref_y = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        nhwc = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        data = nhwc.transpose(0, 3, 1, 2).reshape(n_per_batch, -1)  # official layout: R, G, B planes
        d = {b"data": data, b"labels": labels} if bytes_keys else {"data": data, "labels": labels}
        (directory / name).write_bytes(pickle.dumps(d, protocol=2))
        ref_x[name], ref_y[name] = nhwc, labels
    return ref_x, ref_y


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_batches(tmp_path, bytes_keys):
    ref_x, ref_y = write_cifar(tmp_path / "cifar-10-batches-py", bytes_keys=bytes_keys)
    x, y = datasets.load_cifar10("train", path=tmp_path)  # parent directory also accepted
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, np.concatenate([ref_x[f"data_batch_{i}"] for i in range(1, 6)]))
    np.testing.assert_array_equal(y, sum((ref_y[f"data_batch_{i}"] for i in range(1, 6)), []))
    xt, yt = datasets.load_cifar10("test", path=tmp_path / "cifar-10-batches-py")
    np.testing.assert_array_equal(xt, ref_x["test_batch"])


CIFAR_DAMAGE = [  # (id, batch file, its new content (None: removed), split, error, message)
    ("label 10", "test_batch",
     lambda: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "test",
     DatasetFormatError, r"test_batch: expected integer labels in \[0, 9\]"),
    ("rows of 3000", "test_batch",
     lambda: pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}), "test",
     DatasetFormatError, r"expected 'data' uint8 of shape \(N, 3072\)"),
    ("pickled code", "test_batch",  # would run code if trusted
     lambda: pickle.dumps(os.system, protocol=2), "test",
     DatasetFormatError, "refusing to unpickle"),
    ("batch missing", "data_batch_3", None, "train", FileNotFoundError, "data_batch_3 not found"),
]


@pytest.mark.parametrize("batch, content, split, error, match", [c[1:] for c in CIFAR_DAMAGE],
                         ids=[c[0] for c in CIFAR_DAMAGE])
def test_cifar10_rejects_bad_batches(tmp_path, batch, content, split, error, match):
    d = tmp_path / "c"
    write_cifar(d)
    if content is None:
        (d / batch).unlink()
    else:
        (d / batch).write_bytes(content())
    with pytest.raises(error, match=match):
        datasets.load_cifar10(split, path=d)
