"""Feature-map sizes of a conv stack, in plain Python (no JAX), shared by the CNN and by config
validation, which checks that every kernel fits before any work."""
from __future__ import annotations


def out_size(size: int, k: int, s: int, padding: str) -> int:
    # TF/JAX conventions; SAME pads the extra row/column after (matters for even kernels)
    return -(-size // s) if padding == "SAME" else (size - k) // s + 1


def feature_shapes(input_shape, filters, kernel_sizes, strides, padding,
                   intermediate_pooling=None) -> list[tuple[int, int, int]]:
    """(H, W, C) after each conv layer (and its 2x2 intermediate max-pool, where marked) of
    inputs (H, W, C); ``kernel_sizes``/``strides`` are (h, w) pairs or ints.  Raises
    ``ValueError`` naming ``kernel_sizes[i]`` when a VALID kernel is larger than its input."""
    h, w = input_shape[:2]
    pools = intermediate_pooling or (False,) * len(filters)
    shapes = []
    for i, (c, k, s, pad, pool) in enumerate(zip(filters, kernel_sizes, strides, padding, pools)):
        (kh, kw), (sh, sw) = (_pair(k), _pair(s))
        if pad == "VALID" and (kh > h or kw > w):
            raise ValueError(f"kernel_sizes[{i}]: a {kh}x{kw} VALID conv does not fit the {h}x{w} "
                             f"feature map it receives (input_shape={tuple(input_shape)})")
        h, w = out_size(h, kh, sh, pad), out_size(w, kw, sw, pad)
        if pool:
            h, w = out_size(h, 2, 2, "SAME"), out_size(w, 2, 2, "SAME")
        shapes.append((h, w, c))
    return shapes


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
