"""Convolutional network with the NNGP initialisation convention, same API as :class:`FCN`.

Conv layer l computes h_{l+1} = W_l * phi(h_l) + b_l (no phi on the input; NHWC cross-
correlation as in TF/JAX) with W_l ~ N(0, sigma_w^2 / fan_in), fan_in = k_h * k_w * C_in, and
b_l ~ N(0, sigma_b^2); the flattened (or globally pooled) last feature map feeds dense layers
with the same convention and a scalar readout. Parameters are a tuple of ``{"w", "b"}`` dicts
(conv kernels HWIO); a batch of ``n`` networks carries a leading axis ``n`` on every leaf.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .._conv import feature_shapes, out_size as _out_size
from ._activations import get_activation

_PADDINGS = ("VALID", "SAME")
_POOLINGS = (None, "max", "avg")


def _pair(v, field: str, i: int) -> tuple[int, int]:
    try:
        t = (operator.index(v),) * 2 if not isinstance(v, (tuple, list)) else tuple(map(operator.index, v))
    except TypeError:
        t = ()
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{field}[{i}]: expected a positive int or a pair of them, got {v!r}")
    return t


@dataclass(frozen=True)
class CNN:
    """``input_shape`` (H, W[, C]) -> conv layers -> [global pooling] -> dense_widths... -> 1.

    ``kernel_sizes``/``strides`` take ints or (h, w) pairs; ``strides`` defaults to 1 and
    ``padding`` to "VALID" in every layer. ``pooling`` ("max"/"avg") pools the last feature
    map globally instead of flattening it. ``intermediate_pooling`` marks conv layers followed
    by a 2x2, stride 2, SAME max-pool (after the activation).
    """

    input_shape: tuple[int, ...]
    filters: tuple[int, ...]
    kernel_sizes: tuple
    strides: tuple | None = None
    padding: tuple[str, ...] | None = None
    pooling: str | None = None
    intermediate_pooling: tuple[bool, ...] | None = None
    activation: str = "relu"
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    dense_widths: tuple[int, ...] = ()
    # "xla", "nhwc" (XLA's, every backward convolution NHWC x HWIO: _conv_nhwc), "im2col" or
    # "auto" (see conv_impl); the same function either way, up to float32 rounding
    conv: str = "auto"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        shape = tuple(int(d) for d in self.input_shape)
        if len(shape) == 2:
            shape += (1,)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape: expected (H, W) or (H, W, C), got {self.input_shape!r}")
        set_("input_shape", shape)
        if not isinstance(self.filters, (tuple, list)):
            raise ValueError(f"filters: expected one channel count per conv layer, got {self.filters!r}")
        n = len(self.filters)
        set_("filters", tuple(int(f) for f in self.filters))
        if n == 0 or min(self.filters) < 1:
            raise ValueError(f"filters: expected one or more positive channel counts, got {self.filters!r}")
        defaults = {"strides": (1,) * n, "padding": ("VALID",) * n, "intermediate_pooling": (False,) * n}
        for field in ("kernel_sizes", "strides", "padding", "intermediate_pooling"):
            v = getattr(self, field)
            v = defaults[field] if v is None else tuple(v)
            if len(v) != n:
                raise ValueError(f"{field}: expected {n} entries (one per conv layer), got {len(v)}")
            set_(field, v)
        set_("kernel_sizes", tuple(_pair(k, "kernel_sizes", i) for i, k in enumerate(self.kernel_sizes)))
        set_("strides", tuple(_pair(s, "strides", i) for i, s in enumerate(self.strides)))
        set_("padding", tuple(str(p).upper() for p in self.padding))
        set_("intermediate_pooling", tuple(bool(p) for p in self.intermediate_pooling))
        for i, p in enumerate(self.padding):
            if p not in _PADDINGS:
                raise ValueError(f"padding[{i}]: expected 'VALID' or 'SAME', got {p!r}")
        if self.pooling == "none":  # the config spelling of None
            set_("pooling", None)
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling: expected one of {_POOLINGS}, got {self.pooling!r}")
        set_("dense_widths", tuple(int(w) for w in self.dense_widths))
        if self.conv not in ("auto", "xla", "nhwc", "im2col"):
            raise ValueError(f"CNN.conv: expected 'auto', 'xla', 'nhwc' or 'im2col', got {self.conv!r}")
        get_activation(self.activation)  # validate early
        self.feature_shapes  # noqa: B018  (raises if a kernel does not fit)

    @classmethod
    def paper(cls, input_shape: Sequence[int], *, filters: int | Sequence[int] = 100, n_layers: int = 4, **kw):
        """The paper's CNN: filter sizes 5, 2, 5, 2, ...; padding VALID, SAME, ...; stride 1;
        no pooling; dense readout. The paper's text leaves the channel count open; 100 per
        layer is the default of its authors' code (nn-pacbayes)."""
        filters = (filters,) * n_layers if isinstance(filters, int) else tuple(filters)
        return cls(
            input_shape=tuple(input_shape),
            filters=filters,
            kernel_sizes=((5, 2) * n_layers)[:n_layers],
            padding=(("VALID", "SAME") * n_layers)[:n_layers],
            **kw,
        )

    @property
    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(H, W, C) after each conv layer (and its intermediate pooling)."""
        return feature_shapes(self.input_shape, self.filters, self.kernel_sizes, self.strides,
                              self.padding, self.intermediate_pooling)

    @property
    def readout_dim(self) -> int:
        h, w, c = self.feature_shapes[-1]
        return c if self.pooling else h * w * c

    @property
    def layer_shapes(self) -> list[tuple[tuple[int, ...], tuple[int]]]:
        """(w shape, b shape) for every layer of one network."""
        shapes, c_in = [], self.input_shape[-1]
        for c, (kh, kw) in zip(self.filters, self.kernel_sizes):
            shapes.append(((kh, kw, c_in, c), (c,)))
            c_in = c
        dims = [self.readout_dim, *self.dense_widths, 1]
        shapes += [((i, o), (o,)) for i, o in zip(dims[:-1], dims[1:])]
        return shapes

    @property
    def n_params(self) -> int:
        return sum(math.prod(w) + math.prod(b) for w, b in self.layer_shapes)

    def init(self, *, key: jax.Array, n: int, dtype=jnp.float32):
        """Draw ``n`` independent networks from the prior; every leaf has leading axis ``n``."""
        return _init(self, key, int(n), jnp.dtype(dtype))

    def _as_nhwc(self, x: jax.Array) -> jax.Array:
        h, w, c = self.input_shape
        ok = {(h, w, c), (h * w * c,)} | ({(h, w)} if c == 1 else set())
        if tuple(x.shape[1:]) not in ok:
            raise ValueError(f"CNN.apply: expected inputs of shape (N, {h}, {w}, {c}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], h, w, c)

    def apply(self, params, x: jax.Array) -> jax.Array:
        """Outputs of ONE network (unbatched params) on inputs (N, H, W[, C]) or (N, H*W*C) -> (N,)."""
        phi = get_activation(self.activation)
        n_conv = len(self.filters)
        h = self._as_nhwc(x)
        for l in range(n_conv):
            if l > 0:
                h = phi(h)
                if self.intermediate_pooling[l - 1]:
                    h = _max_pool_2x2(h)
            h = _conv(h, params[l]["w"], self.strides[l], self.padding[l],
                      None if self.conv == "auto" else self.conv) + params[l]["b"]
        h = phi(h)
        if self.intermediate_pooling[-1]:
            h = _max_pool_2x2(h)
        if self.pooling == "avg":
            h = h.mean(axis=(1, 2))
        elif self.pooling == "max":
            h = h.max(axis=(1, 2))
        else:
            h = h.reshape(h.shape[0], -1)
        for l, layer in enumerate(params[n_conv:]):
            if l > 0:
                h = phi(h)
            h = h @ layer["w"] + layer["b"]
        return h[:, 0]

    def apply_batched(self, params, x: jax.Array) -> jax.Array:
        """Outputs of a batch of networks on shared inputs: (n, N)."""
        return jax.vmap(self.apply, in_axes=(0, None))(params, x)


@partial(jax.jit, static_argnums=(0, 2, 3))
def _init(model: CNN, key, n: int, dtype):
    # One standard-normal draw for all leaves, sliced and scaled: one RNG kernel to compile
    # instead of one per leaf shape (each costs seconds on CPU), same iid law.
    shapes = [s for pair in model.layer_shapes for s in pair]
    z = jax.random.normal(key, (n, sum(math.prod(s) for s in shapes)), dtype)
    leaves, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        leaves.append(z[:, offset:offset + size].reshape(n, *shape))
        offset += size
    layers = []
    for w, b in zip(leaves[::2], leaves[1::2]):
        fan_in = math.prod(w.shape[1:-1])  # k_h * k_w * C_in for conv, in_dim for dense
        layers.append({"w": (model.sigma_w / math.sqrt(fan_in)) * w, "b": model.sigma_b * b})
    return tuple(layers)


def conv_impl() -> str:
    """How convolutions are computed by default: "im2col" on CPU, XLA's convolution elsewhere.

    Under jaxlib's default flags XLA:CPU hands convolutions to YNNPACK, which is slow for this
    package's shapes, most of all in the backward pass and when vmapped over networks (a
    grouped convolution): one paper-layout CNN epoch (32 channels, |S| = 128) took 26 s per
    network under ``lax.map`` and 54 s vmapped, vs ~0.6 s in PyTorch.  As shifted slices and
    one matrix product per layer the forward and backward passes are plain (batched) GEMMs.
    Same function up to float32 rounding.  One network at a time (the SGD sampler's "scan"
    slots) XLA's own convolution is faster still when the executable is compiled with
    ``xla_conv_compiler_options`` (``SGDTrainer`` does that)."""
    return "im2col" if jax.default_backend() == "cpu" else "xla"


_YNN_TYPES = "xla_cpu_experimental_ynn_fusion_type"


@lru_cache(maxsize=None)
def xla_conv_compiler_options() -> dict | None:
    """``jax.jit`` compiler options under which XLA:CPU computes ``lax.conv_general_dilated``
    with its own (Eigen) kernels instead of YNNPACK's: jaxlib's default YNNPACK fusion types
    without ``LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``, so dots and reductions compile as
    by default (bit for bit): {} if the default does not send convolutions to YNNPACK, None
    if the defaults cannot be read (a private jaxlib API; callers then keep im2col).

    The paper CNN (32 channels) on one CPU device, jaxlib 0.10.2, best of 5: a training step
    on 32 images 30 ms (im2col 113 ms; YNNPACK's convolution 97 ms), the forward pass on 1,000
    images in chunks of 128 0.26 s (im2col 0.83 s, YNNPACK 1.38 s); outputs and gradients
    agree with im2col's to ~1e-6 relative (``benchmarks/probe_cnn_conv.py``)."""
    try:
        from jax._src.lib import _jax

        opts = _jax.CompileOptions()  # held: its build options point into it
        build = opts.executable_build_options
        text = str(build.debug_options)
    except Exception:  # noqa: BLE001  (any change of the private API)
        return None
    types = re.findall(rf"^{_YNN_TYPES}: (\w+)$", text, re.M)
    conv = "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    if conv not in types:
        return {}
    return {_YNN_TYPES: ",".join(t for t in types if t != conv)}


def _conv(h, w, strides, padding: str, impl: str | None = None):
    """NHWC x HWIO cross-correlation with TF/JAX ``padding`` (SAME pads the extra row after)."""
    impl = impl or conv_impl()
    if impl == "nhwc" and tuple(strides) == (1, 1):
        return _conv_nhwc(h, w, padding)
    if impl in ("xla", "nhwc"):
        return lax.conv_general_dilated(h, w, window_strides=strides, padding=padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw, c_in, c_out = w.shape
    (sh, sw), (H, W) = strides, h.shape[1:3]
    oh, ow = _out_size(H, kh, sh, padding), _out_size(W, kw, sw, padding)
    if padding == "SAME":
        ph, pw = max((oh - 1) * sh + kh - H, 0), max((ow - 1) * sw + kw - W, 0)
        h = jnp.pad(h, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    # patch columns in (i, j, c) order: the row-major order of the HWIO kernel's first 3 axes
    cols = [h[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]
            for i in range(kh) for j in range(kw)]
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return patches @ w.reshape(kh * kw * c_in, c_out)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _pads(h_shape, w_shape, padding: str):
    return lax.padtype_to_pads(h_shape[1:3], w_shape[:2], (1, 1), padding)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_nhwc(h, w, padding: str):
    """Stride-1 ``lax.conv_general_dilated`` whose backward convolutions are NHWC x HWIO too.

    XLA:CPU runs a convolution with its Eigen kernels only in that form; its pass that rewrites
    other forms (ConvCanonicalization) visits the entry computation alone, so the transposed
    convolutions of autodiff inside a loop (the SGD sampler's epochs) fell back to an
    unoptimised loop nest (a 1-epoch paper-CNN run: 31 s instead of ~1 s).  Here they are
    written in that form, the transposes explicit:
      dL/dh = g (padded by k - 1 - pad) * w flipped in space, in/out swapped;
      dL/dw[i, j, c, o] = sum_{n,y,x} h_pad[n, y + i, x + j, c] g[n, y, x, o], a convolution
      with C_in as the batch, the images as the features and g as the kernel."""
    return lax.conv_general_dilated(h, w, (1, 1), padding, dimension_numbers=_NHWC)


def _conv_nhwc_fwd(h, w, padding):
    return _conv_nhwc(h, w, padding), (h, w)


def _conv_nhwc_bwd(padding, res, g):
    h, w = res
    kh, kw = w.shape[:2]
    (lo_h, hi_h), (lo_w, hi_w) = _pads(h.shape, w.shape, padding)
    w_flip = jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2))  # (kh, kw, C_out, C_in)
    dh = lax.conv_general_dilated(
        g, w_flip, (1, 1), ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w)),
        dimension_numbers=_NHWC)
    dw = lax.conv_general_dilated(
        jnp.transpose(h, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), (1, 1),
        ((lo_h, hi_h), (lo_w, hi_w)), dimension_numbers=_NHWC)  # (C_in, kh, kw, C_out)
    return dh, jnp.transpose(dw, (1, 2, 0, 3))


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def _max_pool_2x2(h: jax.Array) -> jax.Array:
    return lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
