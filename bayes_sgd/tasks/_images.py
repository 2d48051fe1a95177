"""Binary image tasks: a training set S and a test set E drawn from a labelled image dataset.

Follows the paper's protocol (and its authors' data pipeline): a binarised label (by default
``label >= 5``), |S| and |E| drawn without overlap by a seed, pixels scaled to [0, 1] or
standardised per channel with statistics of S only, optional corruption of a fraction of S.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ._corruption import check_corruption, corrupt_labels, corruption_rng
from ._task import Task

__all__ = ["image_task", "make_image_task", "parse_binarize"]

_SCALES = ("unit", "standardize")


def parse_binarize(spec):
    """Class labels -> binary labels, from a spec string ('threshold:T', 'parity', 'pair:A,B',
    'binary') or a callable: ``(label_filter or None, to_bits)``; ``label_filter(y)`` keeps
    the examples of a pair's two classes.  Raises ``ValueError`` naming ``binarize``."""
    if callable(spec):
        return None, lambda y: np.array(spec(y), dtype=np.uint8)  # a copy: corruption edits it
    if not isinstance(spec, str):
        raise ValueError(f"binarize: expected a string or a callable, got {type(spec).__name__}")
    kind, _, arg = spec.partition(":")
    try:
        if kind == "threshold" and arg:
            t = int(arg)
            return None, lambda y: (y >= t).astype(np.uint8)
        if kind == "parity" and not arg:
            return None, lambda y: (y % 2).astype(np.uint8)  # odd -> 1
        if kind == "pair" and arg:
            a, b = (int(v) for v in arg.split(","))
            if a == b:
                raise ValueError
            return (lambda y: (y == a) | (y == b)), lambda y: (y == b).astype(np.uint8)
        if kind == "binary" and not arg:
            return None, lambda y: y.astype(np.uint8)
    except ValueError:
        pass
    raise ValueError(
        "binarize: expected 'threshold:T' (label >= T -> 1), 'parity' (odd -> 1), "
        f"'pair:A,B' (only classes A, B; B -> 1), 'binary' or a callable, got {spec!r}"
    )


def _check_images(images, labels, what: str):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(f"{what}: expected images of shape (N, H, W) or (N, H, W, C), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{what}: expected {len(images)} labels in a 1-d array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: expected integer class labels, got dtype {labels.dtype}")
    return images, labels


def _check_test_split(images, test_images, test_labels):
    if test_images is None or test_labels is None:
        raise ValueError("test_images: test_images and test_labels go together")
    test_images, test_labels = _check_images(test_images, test_labels, "test_images")
    if test_images.shape[1:] != images.shape[1:]:
        raise ValueError(
            f"test_images: expected images of shape {images.shape[1:]}, got {test_images.shape[1:]}"
        )
    return test_images, test_labels


def _pool(labels, keep) -> np.ndarray:
    return np.arange(len(labels)) if keep is None else np.flatnonzero(keep(labels))


def _check_args(train_size, test_size, seed, corrupt_fraction, corrupt_mode, scale):
    for field, v in (("train_size", train_size), ("test_size", test_size), ("seed", seed)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{field}: expected a non-negative integer, got {v!r}")
    if test_size < 1:
        raise ValueError(f"test_size: expected >= 1, got {test_size}")
    check_corruption(corrupt_fraction, corrupt_mode)
    if scale not in _SCALES:
        raise ValueError(f"scale: expected one of {_SCALES}, got {scale!r}")


def _check_sizes(n: int, n_test_pool: int | None, train_size: int, test_size: int):
    """``n_test_pool`` is the separate test split's pool size, or None when E comes from S's pool."""
    if n_test_pool is not None:
        if test_size > n_test_pool:
            raise ValueError(f"test_size: expected <= N_test = {n_test_pool}, got {test_size}")
        if train_size > n:
            raise ValueError(f"train_size: expected <= N = {n}, got {train_size}")
    else:
        if test_size > n:
            raise ValueError(f"test_size: expected <= N = {n}, got {test_size}")
        if train_size > n - test_size:
            raise ValueError(
                f"train_size: expected <= N - test_size = {n - test_size}, got {train_size}"
            )


def _split(rng, train_pool, test_pool, train_size: int, test_size: int):
    """-> (rows forming S, rows forming E); E from ``test_pool`` when given, else from S's pool."""
    n = len(train_pool)
    if test_pool is not None:
        train_idx = train_pool[rng.choice(n, train_size, replace=False)]
        test_idx = test_pool[rng.choice(len(test_pool), test_size, replace=False)]
        return train_idx, test_idx
    chosen = train_pool[rng.choice(n, train_size + test_size, replace=False)]
    return chosen[:train_size], chosen[train_size:]


def _pixel_max(pixel_max, images, test_images) -> float:
    if pixel_max is None:
        if images.dtype == np.uint8:
            pixel_max = 255.0
        elif np.issubdtype(images.dtype, np.floating):
            pixel_max = 1.0
        else:
            raise ValueError(f"pixel_max: required for images of dtype {images.dtype}")
    top = max(float(images.max(initial=0)),
              float(test_images.max(initial=0)) if test_images is not None else 0.0)
    if not pixel_max > 0 or top > pixel_max:
        raise ValueError(f"pixel_max: expected > 0 and >= the largest pixel {top:g}, got {pixel_max!r}")
    return pixel_max


def _inputs(x_train_src, x_test_src, pixel_max: float, scale: str, flatten: bool, meta: dict):
    """Scaled float32 inputs for S and E (standardisation statistics from S go into ``meta``)."""
    def prep(x):
        x = x.astype(np.float32) / np.float32(pixel_max)
        return x[..., None] if x.ndim == 3 else x

    x_train, x_test = prep(x_train_src), prep(x_test_src)
    if scale == "standardize":
        if len(x_train) < 1:
            raise ValueError("scale: 'standardize' needs train_size >= 1 (statistics come from S)")
        mean = x_train.mean(axis=(0, 1, 2), dtype=np.float64)
        std = x_train.std(axis=(0, 1, 2), dtype=np.float64)
        if (std == 0).any():
            raise ValueError("scale: a channel of S is constant; cannot standardize")
        x_train = ((x_train - mean) / std).astype(np.float32)
        x_test = ((x_test - mean) / std).astype(np.float32)
        meta.update(channel_mean=mean, channel_std=std)
    if flatten:
        x_train = x_train.reshape(len(x_train), -1)
        x_test = x_test.reshape(len(x_test), -1)
    return np.ascontiguousarray(x_train), np.ascontiguousarray(x_test)


def image_task(
    images,
    labels,
    *,
    train_size: int = 10_000,
    test_size: int = 100,
    seed: int = 0,
    binarize: str | Callable = "threshold:5",
    corrupt_fraction: float = 0.0,
    corrupt_mode: str = "flip",
    scale: str = "unit",
    pixel_max: float | None = None,
    flatten: bool = False,
    test_images=None,
    test_labels=None,
    name: str | None = None,
) -> Task:
    """Build a binary :class:`Task` from a labelled image array.

    S (``train_size``) and E (``test_size``) are drawn without replacement and without overlap
    from ``images``, or E from ``test_images`` when given (e.g. the dataset's test split).
    ``corrupt_fraction`` of S (rounded to the nearest count) gets its binary label flipped
    (``corrupt_mode="flip"``) or redrawn uniformly (``"redraw"``, which changes about half of
    them, as in the paper's authors' code; ``tasks._corruption``). The split does not depend
    on the corruption, so a corrupted task shares S and E with its clean twin.
    ``scale="unit"`` divides by ``pixel_max`` (255 for uint8); ``"standardize"`` then removes
    the per-channel mean and std of S. Inputs come out float32 as (N, H, W, C), or (N, H*W*C) with ``flatten=True``.
    """
    images, labels = _check_images(images, labels, "images")
    separate = test_images is not None or test_labels is not None
    if separate:
        test_images, test_labels = _check_test_split(images, test_images, test_labels)
    keep, to_bits = parse_binarize(binarize)
    _check_args(train_size, test_size, seed, corrupt_fraction, corrupt_mode, scale)
    train_pool = _pool(labels, keep)
    test_pool = _pool(test_labels, keep) if separate else None
    _check_sizes(len(train_pool), len(test_pool) if separate else None, train_size, test_size)

    # Independent streams: the split is the same whatever the corruption settings.
    split_seq = np.random.SeedSequence(int(seed)).spawn(2)[0]
    train_idx, test_idx = _split(np.random.default_rng(split_seq), train_pool, test_pool,
                                 train_size, test_size)
    x_train_src, y_train_src = images[train_idx], labels[train_idx]
    x_test_src, y_test_src = (test_images[test_idx], test_labels[test_idx]) if separate else (
        images[test_idx], labels[test_idx])

    y_train = to_bits(y_train_src)
    y_test = to_bits(y_test_src)
    corrupted = corrupt_labels(y_train, corrupt_fraction, corrupt_mode, corruption_rng(seed))
    pixel_max = _pixel_max(pixel_max, images, test_images if separate else None)
    meta = {}
    x_train, x_test = _inputs(x_train_src, x_test_src, pixel_max, scale, flatten, meta)

    if name is None:
        tag = binarize if isinstance(binarize, str) else getattr(binarize, "__name__", "custom")
        name = f"images-{tag}-m{train_size}-k{test_size}-seed{seed}"
        if len(corrupted):
            name += f"-corrupt{corrupt_fraction:g}" + ("" if corrupt_mode == "flip" else f"-{corrupt_mode}")
    meta.update(
        binarize=binarize if isinstance(binarize, str) else repr(binarize),
        seed=int(seed),
        scale=scale,
        pixel_max=float(pixel_max),
        corrupt_fraction=float(corrupt_fraction),
        corrupt_mode=corrupt_mode,
        corrupted_index=corrupted,  # positions in S whose label was corrupted
        source_train_index=train_idx,  # rows of `images` forming S
        source_test_index=test_idx,  # rows of `images` (or `test_images`) forming E
        test_from_separate_split=separate,
        train_labels_orig=y_train_src.astype(np.int64),
        test_labels_orig=y_test_src.astype(np.int64),
    )
    return Task(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, meta=meta)


_DATASETS = {"digits": "digits", "mnist": "mnist", "fashion-mnist": "fashion-mnist",
             "fashion_mnist": "fashion-mnist", "mnist-fashion": "fashion-mnist", "cifar10": "cifar10",
             "cifar-10": "cifar10"}


def _load(dataset: str, split: str | None, path, download: bool):
    from ..datasets import load_cifar10, load_digits, load_fashion_mnist, load_mnist

    if dataset == "digits":
        # one split only: "train"/"test" are accepted (generic configs pass one) and mean all 1797
        if split not in (None, "all", "train", "test"):
            raise ValueError(f"split: expected 'all', 'train' or 'test', got {split!r}")
        if path is not None:
            raise ValueError("path: digits ship with scikit-learn and take no path")
        return load_digits()
    split = split or "train"
    if dataset == "mnist":
        return load_mnist(split, path=path, download=download)
    if dataset == "fashion-mnist":
        return load_fashion_mnist(split, path=path)
    if path is None:
        raise ValueError("path: CIFAR-10 needs the directory of its python batches "
                         "(data_batch_1 ... test_batch); got none")
    return load_cifar10(split, path=path)


def make_image_task(
    dataset: str,
    *,
    split: str | None = None,
    test_split: str | None = None,
    path=None,
    download: bool = False,
    **kwargs,
) -> Task:
    """Load ``dataset`` ("digits", "mnist", "fashion-mnist", "cifar10") and call :func:`image_task`.

    S and E come from ``split`` (default "train"; digits have one split, all 1797 images), or
    E from ``test_split`` when given (the paper's setting draws E from the test split).
    ``path``/``download`` go to the loader, ``kwargs`` to :func:`image_task`.
    """
    if dataset not in _DATASETS:
        raise ValueError(f"dataset: expected one of {sorted(set(_DATASETS.values()))}, got {dataset!r}")
    dataset = _DATASETS[dataset]
    if test_split is not None and dataset == "digits":
        raise ValueError("test_split: digits has a single split")
    if test_split is not None and test_split == (split or "train"):  # digits excluded above
        raise ValueError(f"test_split: must differ from split ({test_split!r}) so S and E cannot overlap")
    images, labels = _load(dataset, split, path, download)
    if test_split is not None:
        kwargs["test_images"], kwargs["test_labels"] = _load(dataset, test_split, path, download)
    if dataset == "digits":
        kwargs.setdefault("pixel_max", 16.0)
    task = image_task(images, labels, **kwargs)
    split_name = "all" if dataset == "digits" else split or "train"
    task.meta.update(dataset=dataset, split=split_name, test_split=test_split)
    if "name" in kwargs:
        return task
    return dataclasses.replace(task, name=f"{dataset}-{split_name}-" + task.name.removeprefix("images-"))
