"""Image datasets as ``(images uint8 (N, H, W[, C]), labels int64 (N,))``, validated on read."""
from . import _loaders
from ._idx import DatasetFormatError, read_idx, write_idx
from ._loaders import (
    FASHION_MNIST_DIR,
    IMAGE_SHAPES,
    MNIST_MD5,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)

__all__ = ["DatasetFormatError", "read_idx", "write_idx", *_loaders.__all__]
