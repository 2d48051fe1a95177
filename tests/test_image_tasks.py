"""Image tasks: binarisation, split, corruption and scaling checked against direct computation."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bayes_sgd.tasks import Task, image_task, make_image_task

MNIST_DIR = Path(os.environ.get("BAYES_SGD_MNIST_DIR") or Path(__file__).parents[2] / "shared/data/mnist")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (500, 6, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, 500)
    return images, labels


@pytest.mark.parametrize(
    "spec,direct",
    [
        ("threshold:5", lambda y: y >= 5),
        ("threshold:3", lambda y: y >= 3),
        ("parity", lambda y: y % 2 == 1),
        (lambda y: y < 3, lambda y: y < 3),  # a callable spec
    ],
)
def test_binarize_matches_direct_computation(data, spec, direct):
    images, labels = data
    t = image_task(images, labels, train_size=300, test_size=50, seed=3, binarize=spec)
    tr, te = t.meta["source_train_index"], t.meta["source_test_index"]
    np.testing.assert_array_equal(t.y_train, direct(labels[tr]).astype(np.uint8))
    np.testing.assert_array_equal(t.y_test, direct(labels[te]).astype(np.uint8))
    assert t.y_train.dtype == np.uint8


def test_pair_binarize_filters_classes(data):
    images, labels = data
    t = image_task(images, labels, train_size=60, test_size=20, seed=0, binarize="pair:3,8")
    idx = np.concatenate([t.meta["source_train_index"], t.meta["source_test_index"]])
    assert set(labels[idx]) <= {3, 8}
    np.testing.assert_array_equal(t.y_train, labels[t.meta["source_train_index"]] == 8)
    n_pair = int(np.isin(labels, (3, 8)).sum())
    with pytest.raises(ValueError, match=rf"^train_size: expected <= N - test_size = {n_pair - 20}"):
        image_task(images, labels, train_size=n_pair, test_size=20, binarize="pair:3,8")


def test_split_disjoint_sizes_pixels_and_determinism(data):
    images, labels = data
    t = image_task(images, labels, train_size=400, test_size=100, seed=7)
    assert isinstance(t, Task) and t.m == 400 and t.n_test == 100
    tr, te = t.meta["source_train_index"], t.meta["source_test_index"]
    assert len(set(tr)) == 400 and len(set(te)) == 100 and not set(tr) & set(te)
    assert t.x_train.shape == (400, 6, 5, 1) and t.x_train.dtype == np.float32  # channel axis added
    np.testing.assert_allclose(t.x_train[..., 0], images[tr] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(t.x_test[..., 0], images[te] / 255.0, rtol=1e-6)
    assert 0.0 <= t.x_train.min() and t.x_train.max() <= 1.0
    again = image_task(images, labels, train_size=400, test_size=100, seed=7)
    np.testing.assert_array_equal(again.meta["source_test_index"], te)
    other = image_task(images, labels, train_size=400, test_size=100, seed=8)
    assert not np.array_equal(other.meta["source_test_index"], te)
    assert t.target_function == "".join(map(str, t.y_test))


def test_separate_test_pool(data):
    images, labels = data
    t = image_task(images[:300], labels[:300], test_images=images[300:], test_labels=labels[300:],
                   train_size=300, test_size=200, seed=0)  # all of both pools
    assert t.meta["test_from_separate_split"]
    assert sorted(t.meta["source_train_index"]) == list(range(300))
    np.testing.assert_allclose(t.x_test[..., 0], images[300:][t.meta["source_test_index"]] / 255.0)
    with pytest.raises(ValueError, match=r"^test_size: expected <= N_test = 200, got 201"):
        image_task(images[:300], labels[:300], test_images=images[300:], test_labels=labels[300:],
                   train_size=10, test_size=201)


@pytest.mark.parametrize("fraction,expected", [(0.1, 30), (0.25, 75), (1 / 600, 1), (1.0, 300)])
def test_corruption_count_exact(data, fraction, expected):
    images, labels = data
    clean = image_task(images, labels, train_size=300, test_size=50, seed=5)
    bad = image_task(images, labels, train_size=300, test_size=50, seed=5, corrupt_fraction=fraction)
    # same S and E: corruption draws from its own stream
    np.testing.assert_array_equal(bad.meta["source_train_index"], clean.meta["source_train_index"])
    np.testing.assert_array_equal(bad.y_test, clean.y_test)
    flipped = np.flatnonzero(bad.y_train != clean.y_train)
    assert len(flipped) == expected
    np.testing.assert_array_equal(flipped, bad.meta["corrupted_index"])


def test_random_corruption_redraws_labels(data):
    images, labels = data
    clean = image_task(images, labels, train_size=400, test_size=50, seed=2)
    bad = image_task(images, labels, train_size=400, test_size=50, seed=2, corrupt_fraction=0.5,
                     corrupt_mode="redraw")
    idx = bad.meta["corrupted_index"]
    assert len(idx) == 200
    changed = np.flatnonzero(bad.y_train != clean.y_train)
    assert set(changed) <= set(idx)
    # each redrawn label differs with probability 1/2: 200 draws, 4-sigma band around 100
    assert abs(len(changed) - 100) < 4 * np.sqrt(200 * 0.25)


def test_standardize_uses_training_statistics(data):
    images, labels = data
    t = image_task(images, labels, train_size=300, test_size=100, seed=0, scale="standardize")
    assert abs(t.x_train.mean()) < 1e-5 and abs(t.x_train.std() - 1.0) < 1e-5
    raw_tr = images[t.meta["source_train_index"]] / 255.0
    raw_te = images[t.meta["source_test_index"]] / 255.0
    np.testing.assert_allclose(t.x_test[..., 0], (raw_te - raw_tr.mean()) / raw_tr.std(), rtol=1e-5, atol=1e-5)
    rgb = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    rgb[..., 2] //= 4  # channels with different statistics
    t3 = image_task(rgb, np.arange(50) % 10, train_size=40, test_size=10, scale="standardize")
    np.testing.assert_allclose(t3.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(t3.x_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)


def test_flatten(data):
    images, labels = data
    t = image_task(images, labels, train_size=10, test_size=5, flatten=True)
    assert t.x_train.shape == (10, 30) and t.x_test.shape == (5, 30)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(train_size=401, test_size=100), r"^train_size: expected <= N - test_size = 400, got 401"),
        (dict(test_size=501), r"^test_size: expected <= N = 500, got 501"),
        (dict(test_size=0), r"^test_size: expected >= 1"),
        (dict(train_size=-1), r"^train_size: expected a non-negative integer"),
        (dict(train_size=10, corrupt_fraction=1.5), r"^corrupt_fraction"),
        (dict(train_size=10, binarize="median"), r"^binarize: expected 'threshold:T'"),
        (dict(train_size=10, binarize="pair:3,3"), r"^binarize"),
        (dict(train_size=10, scale="minmax"), r"^scale"),
        (dict(train_size=10, pixel_max=100.0), r"^pixel_max: .* largest pixel 255"),
        (dict(train_size=10, corrupt_mode="swap"), r"^corrupt_mode"),
    ],
)
def test_argument_validation(data, kw, match):
    images, labels = data
    with pytest.raises(ValueError, match=match):
        image_task(images, labels, **kw)


def test_make_image_task_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    t = make_image_task("digits", train_size=1000, test_size=100, seed=0, binarize="parity")
    assert t.name == "digits-all-parity-m1000-k100-seed0" and t.input_shape == (8, 8, 1)
    tr = t.meta["source_train_index"]
    np.testing.assert_allclose(t.x_train[..., 0], ref.images[tr] / 16.0, rtol=1e-6)  # pixels 0..16
    np.testing.assert_array_equal(t.y_train, ref.target[tr] % 2)
    with pytest.raises(ValueError, match=r"^train_size: expected <= N - test_size = 1697"):
        make_image_task("digits")  # paper sizes (10000 + 100) do not fit 1797 digits
    same = make_image_task("digits", split="test", train_size=1000, test_size=100, seed=0, binarize="parity")
    np.testing.assert_array_equal(same.y_train, t.y_train)  # one split: "test" is the whole set too
    with pytest.raises(ValueError, match="^test_split: digits has a single split"):
        make_image_task("digits", test_split="test")
    with pytest.raises(ValueError, match="^dataset: expected one of"):
        make_image_task("svhn")


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"MNIST test split not in {MNIST_DIR}; set BAYES_SGD_MNIST_DIR to run")
def test_make_image_task_mnist_test_split():
    t = make_image_task("mnist", split="test", path=MNIST_DIR, train_size=9900, test_size=100, seed=0,
                        corrupt_fraction=0.1)
    assert t.x_train.shape == (9900, 28, 28, 1) and t.meta["dataset"] == "mnist"
    assert len(t.meta["corrupted_index"]) == 990
    # digits >= 5 make up 4861 of the 10000 test images; S holds 9900 of them
    assert abs(int((t.meta["train_labels_orig"] >= 5).sum()) - 4861) <= 100
