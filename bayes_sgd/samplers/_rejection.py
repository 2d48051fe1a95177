"""Rejection sampler of the Bayesian posterior P_B(f|S) with the 0-1 likelihood.

Draw theta from the initialisation prior, keep it iff the network fits S exactly, and count
the function on E of each kept network:  P_B(f|S) ~= #{kept with function f} / #kept.
Optionally the unconditional prior P(f) over the whole truth table is counted from the same
draws.  Work is split into chunks whose keys are ``fold_in(stream, chunk_index)``, so a run is
a deterministic function of (seed, chunk_size) however the chunks are scheduled.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..counting import FunctionCounter
from ._common import EvalLayout, pack_bits_jax


@dataclass
class RejectionResult:
    posterior: FunctionCounter  # functions on E of networks that fit S
    prior: FunctionCounter | None  # full truth tables (if recorded)
    n_samples: int = 0
    n_accepted: int = 0
    chunks_done: set = field(default_factory=set)
    chunk_size: int = 0  # networks per chunk (the unit of the random streams), if known
    # hidden-layer draws ("groups": output_draws networks each; 1 network when independent)
    # and the sum over groups of (accepted in the group)^2: the effective sample sizes
    n_groups: int = 0
    sum_accepted_sq: int = 0
    output_draws: int = 1
    # wall seconds of sampling over every session, and the samples drawn in them (a checkpoint
    # from before these were kept counts its samples as untimed); runs whose pass was shared
    # (``run_shared_rejection_chunks``): each is charged the pass's whole time
    seconds: float = 0.0
    timed_samples: int = 0
    shared_runs: int = 1

    def merge(self, other: "RejectionResult") -> None:
        self.posterior.merge(other.posterior)
        if self.prior is not None and other.prior is not None:
            self.prior.merge(other.prior)
        self.n_samples += other.n_samples
        self.n_accepted += other.n_accepted
        self.n_groups += other.n_groups
        self.sum_accepted_sq += other.sum_accepted_sq
        self.chunks_done |= other.chunks_done
        self.seconds += other.seconds
        self.timed_samples += other.timed_samples

    def samples_per_s(self) -> float | None:
        """Prior draws per second of the timed sessions (None if none was timed)."""
        return self.timed_samples / self.seconds if self.timed_samples and self.seconds > 0 else None

    def effective_sample_sizes(self) -> dict:
        """ESS of the draws when ``output_draws`` K networks share each hidden-layer draw.

        With a_g the networks accepted in group g (G groups, A = sum a_g accepted, n samples,
        p = A / n):

        * acceptance (the estimate of P(S)): n / deff with deff = Var(a_g) / (K p (1 - p)), the
          ratio of the groups' observed variance to that of K independent draws;
        * posterior (the functions on E of the accepted networks): at least A^2 / sum a_g^2
          (Kish), the ESS if networks accepted in the same group always had the same function.

        Both equal the sample counts for independent draws (K = 1: A^2 / sum a_g^2 = A)."""
        n, a, g, k = self.n_samples, self.n_accepted, self.n_groups, self.output_draws
        if not a or g < 2 or a == n:
            return {"acceptance": float(n), "posterior_lower": float(a), "efficiency": 1.0}
        p = a / n
        var = (self.sum_accepted_sq - a * a / g) / (g - 1)
        deff = var / (k * p * (1 - p)) if var > 0 else 1.0
        ess_acc = n / max(deff, 1e-12)
        ess_post = a * a / self.sum_accepted_sq
        return {"acceptance": ess_acc, "posterior_lower": ess_post,
                "efficiency": min(1.0, ess_acc / n, ess_post / a)}


@contextmanager
def unrolled_threefry():
    """Compile JAX's threefry2x32 hash unrolled on CPU inside this block.

    On CPU, JAX lowers threefry2x32 as a rolled loop of 5 iterations (to keep large programs
    quick to compile); each iteration streams the whole array of counters through memory with
    rotation amounts read at run time.  The unrolled lowering (JAX's own rule for other
    platforms) fuses all 20 rounds into one loop with constant rotations: the same bits
    (``tests/test_rejection.py`` pins the chunk's parameters to ``model.init``) at about half
    the CPU time, and drawing the parameters is most of the cost of a chunk.  Executables
    compiled inside the block keep the unrolled code; nothing else changes.  Falls back to
    JAX's default if its internals differ.
    """
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as _tf

        table = mlir._platform_specific_lowerings["cpu"]
        prim, rule = _tf.threefry2x32_p, _tf._threefry2x32_lowering_rule
        old = table.get(prim)
        if old is None:
            raise LookupError
        table[prim] = type(old)(rule, old.inline)
    except Exception:  # noqa: BLE001 - any mismatch of JAX internals: default lowering
        yield
        return
    try:
        yield
    finally:
        table[prim] = old


# Networks per step of the forward pass inside a chunk.  A chunk's parameters are drawn at once
# (the random-number generator is fastest on large batches), but its forward pass runs over
# sub-batches of this many networks with ``lax.map`` so that the (sub-batch, inputs, width)
# activations stay in the core's cache: ~1.8x fewer CPU-seconds per network on the full
# 128-input table than one (chunk, 128, 40) pass.  The outputs are those of ``apply_batched``.
FORWARD_SUB_BATCH = 8
# The S-first path evaluates E in a second executable (which redraws the chunk's parameters
# from its key) for chunks with fitting networks.  Gathering the fitting networks' parameters
# inside the S executable instead forces all parameters of the chunk to memory (~1.4x the CPU
# time per chunk), so it is only worth it once most chunks have fits: the path switches when
# more than this fraction of the chunks so far had at least one.
GATHER_IN_S_ABOVE = 0.3
# Several devices: one executable over the device mesh (``RejectionChunkFn.dispatch_many``:
# compiled once, not once per device) when True.  Off by default: its one throughput
# measurement (``benchmarks/bench_startup.py``, a heavily shared machine) was 0.82x the
# per-device path; to be re-measured on a quiet machine before it becomes the default.
SPMD = False

def _forward(model, params, x, n: int):
    """(n, N) outputs of a chunk of ``n`` networks on ``x``, in cache-sized sub-batches."""
    sub = FORWARD_SUB_BATCH
    if n <= sub or n % sub:
        return model.apply_batched(params, x)
    blocks = jax.tree_util.tree_map(lambda a: a.reshape((n // sub, sub) + a.shape[1:]), params)
    return jax.lax.map(lambda p: model.apply_batched(p, x), blocks).reshape(n, -1)


def _shared_hidden(model, k: int, chunk_size: int):
    """(draw, outputs) for chunks of G = chunk_size / k hidden-layer draws with k output
    layers each (an FCN).  Network i = g k + j has the hidden layers of draw g and output layer
    (g, j); every network is a draw from the prior, but networks of one group are dependent.

    ``draw(key) -> (hidden, w, b)``: ``hidden`` as ``model.init(n=G)`` without its output layer,
    w (G, k, fan_in) ~ N(0, sigma_w^2 / fan_in), b (G, k) ~ N(0, sigma_b^2).
    ``outputs(hidden, w, b, x) -> (G, k, N)``: the features of the last hidden layer are
    computed once per group and shared by its k output layers."""
    g_count = chunk_size // k
    fan_in = model.layer_sizes[-1][0]

    def draw(key):
        kh, kw, kb = jax.random.split(key, 3)
        hidden = model.init(key=kh, n=g_count)[:-1]
        w_std = model.sigma_w / jnp.sqrt(jnp.float32(fan_in))
        w = w_std * jax.random.normal(kw, (g_count, k, fan_in), jnp.float32)
        b = model.sigma_b * jax.random.normal(kb, (g_count, k), jnp.float32)
        return hidden, w, b

    def outputs(hidden, w, b, x):
        n = w.shape[0]
        sub = FORWARD_SUB_BATCH
        if n > sub and n % sub == 0:  # cache-sized sub-batches, as in _forward
            blocks = jax.tree_util.tree_map(
                lambda a: a.reshape((n // sub, sub) + a.shape[1:]), (hidden, w, b))
            out = jax.lax.map(lambda t: outputs(*t, x), blocks)
            return out.reshape((n,) + out.shape[2:])
        h = jax.vmap(model.features, in_axes=(0, None))(hidden, x)  # (G, N, fan_in)
        return jnp.einsum("gni,gki->gkn", h, w) + b[:, :, None]

    return draw, outputs


def assemble_shared(hidden, w, b):
    """The parameters of all G k networks of a shared-hidden chunk, in network order, in the
    model's own layout (for checks against ``model.apply``)."""
    g_count, k, fan_in = w.shape
    rep = jax.tree_util.tree_map(lambda a: jnp.repeat(a, k, axis=0), hidden)
    return tuple(rep) + ({"w": w.reshape(g_count * k, fan_in, 1), "b": b.reshape(g_count * k, 1)},)


def make_chunk_fn(model, layout: EvalLayout, y_train: np.ndarray, chunk_size: int,
                  record_prior: bool, output_draws: int = 1) -> "RejectionChunkFn":
    """``RejectionChunkFn(...)``: the callable ``key -> (fits, packed_E, packed_table)``."""
    return RejectionChunkFn(model, layout, y_train, chunk_size, record_prior, output_draws)


class _ChunkDispatch:
    """``dispatch`` of both chunk functions: the prior recorded (``_full``), or the fits with
    the first fitting networks' functions (``_fit_gather``), or the fits alone (``_fit``)."""

    def dispatch(self, key, device=None, c: int = -1):
        """Queue chunk ``fold_in(key, c)`` (``c >= 0``) or ``key`` itself (``c < 0``)."""
        c = np.int32(c)
        if device is not None:
            key = jax.device_put(key, device)
        with unrolled_threefry():
            if self.record_prior:
                return key, c, self._full(key, c)
            if self.gather_size:
                return key, c, self._fit_gather(key, c, self.gather_size)
            return key, c, (self._fit(key, c), None)


class RejectionChunkFn(_ChunkDispatch):
    """One chunk of ``chunk_size`` prior draws: ``fn(key) -> (fits, packed_E of the fitting
    networks, packed_table)``.

    Without the prior, S is evaluated first and E only for the (rare) networks that fit S:
    at |S| = 32 of 128 inputs this does a quarter of the forward work of a full evaluation.
    E is evaluated by a second executable that redraws the chunk's parameters from its key,
    only for chunks that have fits; once most chunks have fits (small S), the S executable
    evaluates E for up to a fixed number of fitting networks itself.  All paths give exactly
    the same functions.

    ``dispatch(key, device=None, c=-1) -> handle`` queues a chunk and returns at once;
    ``collect(handle)`` waits for it and returns the triple; ``run_rejection_chunks`` queues a
    block of chunks before collecting the first, so that the host's bookkeeping overlaps the
    device's work.  ``dispatch_many(key, cs, devices)`` / ``collect_many`` do the same for one
    chunk per device in one executable over the device mesh.  ``warm(devices)`` compiles the
    executables the run uses;
    ``shared_params(key)`` (``output_draws > 1``, for tests) the chunk's networks in the
    model's layout.
    """

    def __init__(self, model, layout: EvalLayout, y_train: np.ndarray, chunk_size: int,
                 record_prior: bool, output_draws: int = 1):
        self.model, self.chunk_size, self.record_prior = model, chunk_size, record_prior
        self.output_draws = k_out = int(output_draws)
        if k_out > 1 and (record_prior or chunk_size % k_out or not hasattr(model, "layer_sizes")):
            raise ValueError("output_draws: expected 1 with record_prior, a CNN, or a "
                             "chunk_size that it does not divide")
        self.n_e_bytes = (len(layout.e_idx) + 7) // 8
        # chunks collected, chunks with fits, networks evaluated on E inside on_s_gather (0: off)
        self.n_collected = self.n_with_fits = self.gather_size = 0
        self._compile(layout, np.asarray(y_train, bool))
        if k_out > 1:
            draw = self._draw_shared
            self.shared_params = jax.jit(lambda key: assemble_shared(*draw(key)))

    def _compile(self, layout: EvalLayout, y: np.ndarray) -> None:
        """The jitted executables.  numpy constants are embedded in them: the same code runs on
        any device.  Each takes (key, c) and draws the chunk from fold_in(key, c) when c >= 0
        (the runner's chunk c of a stream: no eager fold_in per chunk), else from key."""
        model, chunk_size, k_out = self.model, self.chunk_size, self.output_draws
        x = np.asarray(layout.x, np.float32)
        x_s, x_e = x[layout.s_idx], x[layout.e_idx]
        s_idx, e_idx = np.asarray(layout.s_idx), np.asarray(layout.e_idx)

        def chunk_key(key, c):
            return jax.lax.cond(c >= 0, lambda: jax.random.fold_in(key, c), lambda: key)

        def fits_on_s(params):
            return jnp.all((_forward(model, params, x_s, chunk_size) > 0) == y, axis=1)

        if k_out > 1:
            draw_shared, outputs_shared = _shared_hidden(model, k_out, chunk_size)
            self._draw_shared = draw_shared

        def full(key, c):
            params = model.init(key=chunk_key(key, c), n=chunk_size)
            bits = _forward(model, params, x, chunk_size) > 0
            fits = jnp.all(bits[:, s_idx] == y, axis=1)
            return fits, pack_bits_jax(bits[:, e_idx]), pack_bits_jax(bits)

        def on_s(key, c):
            if k_out > 1:
                out = outputs_shared(*draw_shared(chunk_key(key, c)), x_s)  # (G, k, |S|)
                return jnp.all((out > 0) == y, axis=-1).reshape(-1)
            return fits_on_s(model.init(key=chunk_key(key, c), n=chunk_size))

        def on_s_gather(key, c, k_max):
            params = model.init(key=chunk_key(key, c), n=chunk_size)
            fits = fits_on_s(params)
            idx = jnp.nonzero(fits, size=k_max, fill_value=0)[0]
            sub = jax.tree_util.tree_map(lambda a: a[idx], params)
            return fits, pack_bits_jax(model.apply_batched(sub, x_e) > 0)

        @jax.jit
        def on_e(key, c, idx):
            if k_out > 1:
                hidden, w, b = draw_shared(chunk_key(key, c))
                g, j = idx // k_out, idx % k_out
                sub = jax.tree_util.tree_map(lambda a: a[g], hidden)
                out = outputs_shared(sub, w[g, j][:, None, :], b[g, j][:, None], x_e)[:, 0]
                return pack_bits_jax(out > 0)
            params = model.init(key=chunk_key(key, c), n=chunk_size)
            sub = jax.tree_util.tree_map(lambda a: a[idx], params)
            return pack_bits_jax(model.apply_batched(sub, x_e) > 0)

        self._raw = dict(full=full, on_s=on_s, on_s_gather=on_s_gather)
        self._full, self._on_s, self._on_e = jax.jit(full), jax.jit(on_s), on_e
        self._on_s_gather = jax.jit(on_s_gather, static_argnums=2)
        self._fit, self._fit_gather = self._on_s, self._on_s_gather
        self._mesh_cache: dict = {}

    def _mesh(self, devices) -> tuple:
        """(replicated sharding, full, on_s, on_s_gather) as ONE executable each over a
        ``jax.sharding.Mesh`` of ``devices``: ``f(key, cs)`` runs chunk ``cs[j]`` on device j
        (``shard_map``; the per-device program of ``dispatch``, no communication) and returns
        the chunks' outputs stacked along a leading axis of ``len(devices)``."""
        devices = tuple(devices)
        if devices not in self._mesh_cache:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec as Spec

            mesh = Mesh(np.array(devices), ("d",))
            split, same = NamedSharding(mesh, Spec("d")), NamedSharding(mesh, Spec())

            def spmd(f, static=False):
                def call(key, cs, *k_max):  # k_max: on_s_gather's static size
                    def per_device(k, c):
                        return jax.tree_util.tree_map(lambda a: a[None], f(k, c[0], *k_max))

                    return jax.shard_map(per_device, mesh=mesh, in_specs=(Spec(), Spec("d")),
                                         out_specs=Spec("d"), check_vma=False)(key, cs)

                return jax.jit(call, in_shardings=(same, split), out_shardings=split,
                               static_argnums=(2,) if static else ())

            raw = self._raw
            self._mesh_cache[devices] = (same, spmd(raw["full"]), spmd(raw["on_s"]),
                                         spmd(raw["on_s_gather"], static=True))
        return self._mesh_cache[devices]

    def collect(self, handle):
        """Wait for a dispatched chunk: ``(fits, packed_E of the fitting networks, table)``."""
        key, c, out = handle
        if self.record_prior:
            fits, packed_e, packed_all = (np.asarray(a) for a in out)
            return fits, packed_e[fits], packed_all
        return self._finish(key, c, np.asarray(out[0]),
                            None if out[1] is None else np.asarray(out[1]))

    def dispatch_many(self, key, cs, devices):
        """Queue chunks ``fold_in(key, c)`` for ``c`` in ``cs`` (at most ``len(devices)``), chunk
        j on device j, in ONE call of an executable over the mesh of ``devices`` (``_mesh``);
        the devices left over repeat the last chunk (discarded by ``collect_many``)."""
        same, full, on_s, on_s_gather = self._mesh(devices)
        n = len(cs)
        cs = np.asarray(list(cs) + [cs[-1]] * (len(devices) - n), np.int32)
        mkey = jax.device_put(key, same)
        with unrolled_threefry():
            if self.record_prior:
                out = full(mkey, cs)
            elif self.gather_size:
                out = on_s_gather(mkey, cs, self.gather_size)
            else:
                out = (on_s(mkey, cs), None)
        return key, cs[:n], out

    def collect_many(self, handle) -> list:
        """Wait for ``dispatch_many``'s chunks: one ``collect`` triple per chunk, in order."""
        key, cs, out = handle
        if self.record_prior:
            fits, packed_e, packed_all = (np.asarray(a) for a in out)
            return [(fits[j], packed_e[j][fits[j]], packed_all[j]) for j in range(len(cs))]
        fits = np.asarray(out[0])
        packed = None if out[1] is None else np.asarray(out[1])
        return [self._finish(key, np.int32(c), fits[j], None if packed is None else packed[j])
                for j, c in enumerate(cs)]

    def _finish(self, key, c, fits, packed):
        """``collect`` without the prior: the functions on E of the chunk's fitting networks,
        from ``packed`` (on_s_gather's, if it holds them all) or from the E executable."""
        n_fit = int(fits.sum())
        self.n_collected += 1
        self.n_with_fits += n_fit > 0
        if n_fit == 0:
            return fits, np.empty((0, self.n_e_bytes), np.uint8), None
        if packed is not None and n_fit <= packed.shape[0]:
            return fits, packed[:n_fit], None
        # Evaluate E for the fitting networks (indices padded to a power of two, so that on_e
        # compiles for a handful of shapes); switch to (or widen) on_s_gather if fits are common.
        size = 1 << int(np.ceil(np.log2(n_fit)))
        if (self.output_draws == 1 and self.n_collected >= 8
                and self.n_with_fits > GATHER_IN_S_ABOVE * self.n_collected):
            self.gather_size = min(self.chunk_size, max(self.gather_size, 2 * size, 16))
        padded = np.pad(np.flatnonzero(fits), (0, size - n_fit), mode="edge")
        with unrolled_threefry():
            packed = np.asarray(self._on_e(key, c, padded))
        return fits, packed[:n_fit].reshape(-1, self.n_e_bytes), None

    def __call__(self, key):
        return self.collect(self.dispatch(key))

    def warm(self, devices=None, fit_sizes=(1, 2, 4), *, spmd: bool | None = None) -> None:
        """Compile the executables ``run_rejection_chunks`` uses for ``devices``: with ``spmd``
        (default ``SPMD``) once over the mesh of ``devices`` (``dispatch_many``) and E once on
        the default device, else on every device (executables are per device); the S (or
        full) executable and, without the prior, E for chunks with ``fit_sizes`` fits."""
        key0 = jax.random.key(0)
        meshed = bool((SPMD if spmd is None else spmd) and devices and len(devices) > 1)
        if meshed:
            jax.block_until_ready(self.dispatch_many(key0, [0], devices)[2])
            if self.record_prior:
                return
            devices = [None]  # E: one executable on the default device
        for d in list(devices or [None]):
            key = key0 if d is None else jax.device_put(key0, d)
            with unrolled_threefry():
                if self.record_prior:
                    jax.block_until_ready(self._full(key, np.int32(-1)))
                    continue
                if not meshed:
                    jax.block_until_ready(self._on_s(key, np.int32(-1)))
                for size in fit_sizes:
                    jax.block_until_ready(self._on_e(key, np.int32(-1), np.zeros(size, np.int64)))


def default_chunk_size(model, n_inputs: int, *, in_flight: int = 8) -> int:
    """Networks per chunk: activations and parameters of a chunk within ~48 MB (cache-friendly
    for small nets, bounded for large ones), and ``in_flight`` chunks within 1/8 of the memory
    that is available now (``os.sysconf``, or ``psutil`` where that is missing)."""
    width = max(getattr(model, "widths", (64,)) or (64,))
    per_net = 4 * n_inputs * width * 3 + 4 * model.n_params
    budget = min(48e6, available_memory_bytes() / 8 / max(in_flight, 1))
    return int(np.clip(2 ** np.floor(np.log2(max(budget, 1) / per_net)), 64, 4096))


def rejection_chunk_size(model, n_inputs: int, output_draws: int) -> int:
    """The automatic chunk size for ``output_draws`` K: ``default_chunk_size`` when K = 1; for K > 1, ``default_chunk_size`` hidden draws of K networks each
    (a network then costs its output layer, K times less than a whole one: a chunk of the
    independent size would be all dispatch), at most 2^18 networks."""
    base = default_chunk_size(model, n_inputs)
    if output_draws <= 1:
        return base
    return max(output_draws, min(base * output_draws, (1 << 18) // output_draws * output_draws))


def available_memory_bytes() -> int:
    """Physical memory available to this process now (bytes): ``psutil``'s estimate (free plus
    reclaimable), else ``os.sysconf`` free pages; capped by a cgroup v2 memory limit if set."""
    avail = 0
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with dask.distributed
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 30
    try:  # a container's limit, if lower
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                avail = min(avail, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return max(int(avail), 1 << 26)


def run_rejection_chunks(chunk_fn, stream: jax.Array, chunk_ids, *, chunk_size: int,
                         n_samples: int, n_test: int, n_table: int | None,
                         progress=None, devices=None, spmd: bool | None = None
                         ) -> RejectionResult:
    """Run the given chunk indices (the last chunk of the run may be partial).

    Chunk ``c`` draws its networks with the key ``fold_in(stream, c)``.  All chunks are queued
    before the first is collected (``chunk_fn.dispatch``), chunk ``c`` on
    ``devices[c % len(devices)]`` when several devices are given: the results do not depend on
    the placement, only on the keys.  Pass blocks of a few chunks so that little is in flight.
    ``spmd`` (default ``SPMD``): each call runs ``len(devices)`` consecutive chunks, one per
    device, in one executable over the device mesh (compiled once, ``dispatch_many``); else
    one call and one executable per device.  Both give the same counts.
    """
    k = chunk_fn.output_draws
    res = RejectionResult(FunctionCounter(n_test),
                          FunctionCounter(n_table) if n_table else None, chunk_size=chunk_size,
                          output_draws=k)
    chunk_ids = [int(c) for c in chunk_ids]
    devs = list(devices) if devices else [None]
    if (SPMD if spmd is None else spmd) and len(devs) > 1:
        d = len(devs)
        handles = [chunk_fn.dispatch_many(stream, chunk_ids[i:i + d], devs)
                   for i in range(0, len(chunk_ids), d)]
        outputs = (out for h in handles for out in chunk_fn.collect_many(h))
    else:
        handles = [chunk_fn.dispatch(stream, devs[c % len(devs)], c) for c in chunk_ids]
        outputs = (chunk_fn.collect(h) for h in handles)
    for c, (fits, packed_e, packed_all) in zip(chunk_ids, outputs):
        n_valid = min(chunk_size, n_samples - c * chunk_size)
        fits = np.asarray(fits)
        if n_valid < chunk_size:  # partial last chunk: keep the first n_valid networks
            packed_e = packed_e[: int(fits[:n_valid].sum())]
            fits = fits[:n_valid]
        res.posterior.add_packed(packed_e, half=c % 2)
        if res.prior is not None:
            res.prior.add_packed(np.asarray(packed_all)[:n_valid], half=c % 2)
        res.n_samples += n_valid
        res.n_accepted += int(fits.sum())
        # networks i = g K + j share hidden draw g; a partial last group counts as a group
        per_group = np.add.reduceat(fits.astype(np.int64), np.arange(0, n_valid, k))
        res.n_groups += len(per_group)
        res.sum_accepted_sq += int((per_group ** 2).sum())
        res.chunks_done.add(c)
        if progress is not None:
            progress(n_valid, int(fits.sum()))
    return res


# ---- one pass over the prior for several training sets on the same inputs ----------------------

# As in ``RejectionChunkFn``: with independent draws (output_draws 1) the shared S executable
# evaluates the whole tables of up to ``gather_size`` fitting networks itself
# (``on_u_gather``) once more than GATHER_IN_S_ABOVE of the chunks had a fit (with several
# targets nearly every chunk has one); with output_draws > 1 never: gathering forces the
# chunk's parameters to memory, 50 vs 21 ms of CPU a chunk of 32,768 networks of the paper's
# setting, while the table executable that redraws the chunk for its fits costs ~1 ms (XLA
# generates only the parameters it reads).  Measured once, niced on the shared machine.
SHARED_GATHER = True


def _pack_words(bits):
    """(n, k) bool -> (n, ceil(k / 32)) uint32; bit j of word w is column 32 w + j."""
    n, k = bits.shape
    b = jnp.pad(bits.astype(jnp.uint32), ((0, 0), (0, (-k) % 32))).reshape(n, -1, 32)
    return jnp.sum(b << jnp.arange(32, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)


def make_shared_chunk_fn(model, x: np.ndarray, train_sets, chunk_size: int, record_prior: bool,
                         output_draws: int = 1) -> "SharedRejectionChunkFn":
    """``SharedRejectionChunkFn(...)``: one chunk of prior draws tested against every
    ``(s_idx, y_train)`` of ``train_sets`` (rows of ``x``, the inputs all targets share)."""
    return SharedRejectionChunkFn(model, x, train_sets, chunk_size, record_prior, output_draws)


class SharedRejectionChunkFn(_ChunkDispatch):
    """One chunk of ``chunk_size`` prior draws for T targets that share the model, the prior
    and the inputs ``x`` and differ only in their training set S_t and its labels y_t.

    The chunk is drawn exactly as ``RejectionChunkFn``'s (``fold_in(stream, c)``, the same
    parameters), evaluated once on the union U of the S_t, and network i fits target t iff its
    signs on S_t equal y_t (U's bits packed into 32-bit words: T word comparisons a network).
    The whole truth table on ``x`` is then evaluated for the networks that fit some target
    (inside the same executable for up to ``gather_size`` of them once fits are common, else
    by a second executable that redraws the chunk), from which each target takes its E.
    With ``record_prior`` every network's table is evaluated and returned.

    ``collect(dispatch(key, device, c)) -> (fits (T, n), idx, tables, packed_all)``: ``idx``
    the networks that fit at least one target (ascending), ``tables`` their packed tables
    (``np.packbits`` of the signs on ``x``), ``packed_all`` every network's (record_prior)
    or None.
    """

    def __init__(self, model, x: np.ndarray, train_sets, chunk_size: int, record_prior: bool,
                 output_draws: int = 1):
        self.model, self.chunk_size, self.record_prior = model, chunk_size, record_prior
        self.output_draws = k_out = int(output_draws)
        if k_out > 1 and (record_prior or chunk_size % k_out or not hasattr(model, "layer_sizes")):
            raise ValueError("output_draws: expected 1 with record_prior, a CNN, or a "
                             "chunk_size that it does not divide")
        x = np.asarray(x, np.float32)
        self.n_inputs, self.n_bytes = len(x), (len(x) + 7) // 8
        self.n_targets = len(train_sets)
        union = np.unique(np.concatenate([np.asarray(s, np.int64) for s, _ in train_sets]))
        words = -(-len(union) // 32)
        masks = np.zeros((self.n_targets, words), np.uint32)
        values = np.zeros_like(masks)
        for t, (s_idx, y) in enumerate(train_sets):
            pos = np.searchsorted(union, np.asarray(s_idx, np.int64))
            for p, label in zip(pos, np.asarray(y, bool)):
                masks[t, p // 32] |= np.uint32(1 << (p % 32))
                if label:
                    values[t, p // 32] |= np.uint32(1 << (p % 32))
        self.union = union
        self.n_collected = self.n_with_fits = self.gather_size = 0
        self._compile(x, union, masks, values)

    def _compile(self, x, union, masks, values) -> None:
        model, chunk_size, k_out = self.model, self.chunk_size, self.output_draws
        x_u = x[union]
        if k_out > 1:
            draw_shared, outputs_shared = _shared_hidden(model, k_out, chunk_size)

        def chunk_key(key, c):
            return jax.lax.cond(c >= 0, lambda: jax.random.fold_in(key, c), lambda: key)

        def draw(key, c):
            if k_out > 1:
                return draw_shared(chunk_key(key, c))
            return model.init(key=chunk_key(key, c), n=chunk_size)

        def outputs(params, xs):  # (chunk, len(xs))
            if k_out > 1:
                return outputs_shared(*params, xs).reshape(chunk_size, -1)
            return _forward(model, params, xs, chunk_size)

        def sub_outputs(params, idx, xs):  # (len(idx), len(xs)): networks idx of the chunk
            if k_out > 1:
                hidden, w, b = params
                g, j = idx // k_out, idx % k_out
                sub = jax.tree_util.tree_map(lambda a: a[g], hidden)
                return outputs_shared(sub, w[g, j][:, None, :], b[g, j][:, None], xs)[:, 0]
            sub = jax.tree_util.tree_map(lambda a: a[idx], params)
            return model.apply_batched(sub, xs)

        def fits_of(bits_u):  # (n, |U|) -> (T, n)
            w = _pack_words(bits_u)
            return jnp.all((w[None] & masks[:, None]) == values[:, None], axis=-1)

        def full(key, c):
            bits = outputs(draw(key, c), x) > 0
            return fits_of(bits[:, union]), pack_bits_jax(bits)

        def on_u(key, c):
            return fits_of(outputs(draw(key, c), x_u) > 0)

        def on_u_gather(key, c, k_max):
            params = draw(key, c)
            fits = fits_of(outputs(params, x_u) > 0)
            idx = jnp.nonzero(jnp.any(fits, axis=0), size=k_max, fill_value=0)[0]
            return fits, pack_bits_jax(sub_outputs(params, idx, x) > 0)

        def on_all(key, c, idx):
            return pack_bits_jax(sub_outputs(draw(key, c), idx, x) > 0)

        self._full, self._on_u, self._on_all = jax.jit(full), jax.jit(on_u), jax.jit(on_all)
        self._on_u_gather = jax.jit(on_u_gather, static_argnums=2)
        self._fit, self._fit_gather = self._on_u, self._on_u_gather

    def collect(self, handle):
        """Wait for a dispatched chunk: ``(fits (T, n), idx, tables, packed_all)``."""
        key, c, out = handle
        fits, packed = np.asarray(out[0]), None if out[1] is None else np.asarray(out[1])
        idx = np.flatnonzero(fits.any(axis=0))
        if self.record_prior:
            return fits, idx, packed[idx], packed
        self.n_collected += 1
        self.n_with_fits += len(idx) > 0
        if not len(idx):
            return fits, idx, np.empty((0, self.n_bytes), np.uint8), None
        if packed is not None and len(idx) <= packed.shape[0]:
            return fits, idx, packed[:len(idx)], None
        # padded to a power of two >= 16: with several targets a chunk often has tens of fits,
        # and each new size is one more compilation (~2 s)
        size = max(16, 1 << int(np.ceil(np.log2(len(idx)))))
        if (SHARED_GATHER and self.output_draws == 1 and self.n_collected >= 8
                and self.n_with_fits > GATHER_IN_S_ABOVE * self.n_collected):
            self.gather_size = min(self.chunk_size, max(self.gather_size, 2 * size, 16))
        padded = np.pad(idx, (0, size - len(idx)), mode="edge")
        with unrolled_threefry():
            tables = np.asarray(self._on_all(key, c, padded))
        return fits, idx, tables[:len(idx)], None

    def __call__(self, key):
        return self.collect(self.dispatch(key))

    def warm(self, devices=None, fit_sizes=(16, 32, 64, 128)) -> None:
        """Compile the chunk executable on ``devices``, and the table one for ``fit_sizes``."""
        key0 = jax.random.key(0)
        for d in list(devices or [None]):
            key = key0 if d is None else jax.device_put(key0, d)
            with unrolled_threefry():
                if self.record_prior:
                    jax.block_until_ready(self._full(key, np.int32(-1)))
                    continue
                jax.block_until_ready(self._on_u(key, np.int32(-1)))
                for size in fit_sizes:
                    jax.block_until_ready(self._on_all(key, np.int32(-1), np.zeros(size, np.int64)))


def run_shared_rejection_chunks(chunk_fn: SharedRejectionChunkFn, stream: jax.Array, chunk_ids,
                                *, chunk_size: int, n_samples: int, e_idx, n_table: int | None,
                                skip=None, progress=None, devices=None) -> list[RejectionResult]:
    """``run_rejection_chunks`` for the T targets of ``chunk_fn``: one ``RejectionResult`` per
    target, each equal to what ``run_rejection_chunks`` gives for that target alone on the
    same chunks (same keys, same networks).  ``e_idx[t]``: target t's E (rows of the shared
    inputs); ``skip[t]``: chunks target t already has (left out of its result only)."""
    k = chunk_fn.output_draws
    results = [RejectionResult(FunctionCounter(len(e)),
                               FunctionCounter(n_table) if n_table else None,
                               chunk_size=chunk_size, output_draws=k) for e in e_idx]
    chunk_ids = [int(c) for c in chunk_ids]
    devs = list(devices) if devices else [None]
    handles = [chunk_fn.dispatch(stream, devs[c % len(devs)], c) for c in chunk_ids]
    for c, h in zip(chunk_ids, handles):
        fits, idx, tables, packed_all = chunk_fn.collect(h)
        n_valid = min(chunk_size, n_samples - c * chunk_size)
        fits = fits[:, :n_valid]
        keep = idx < n_valid  # partial last chunk: its first n_valid networks
        idx, tables = idx[keep], tables[keep]
        bits = np.unpackbits(tables, axis=1, count=chunk_fn.n_inputs).astype(bool)
        prior = None
        for t, res in enumerate(results):
            if skip is not None and c in skip[t]:
                continue
            f = fits[t]
            rows = bits[f[idx]]
            res.posterior.add_packed(np.packbits(rows[:, e_idx[t]], axis=1), half=c % 2)
            if res.prior is not None:
                if prior is None:  # the same tables for every target: counted once
                    prior = FunctionCounter(n_table)
                    prior.add_packed(np.asarray(packed_all)[:n_valid], half=c % 2)
                res.prior.merge(prior)
            n_acc = int(f.sum())
            res.n_samples += n_valid
            res.n_accepted += n_acc
            per_group = np.add.reduceat(f.astype(np.int64), np.arange(0, n_valid, k))
            res.n_groups += len(per_group)
            res.sum_accepted_sq += int((per_group ** 2).sum())
            res.chunks_done.add(c)
        if progress is not None:
            progress(n_valid, [int(f.sum()) for f in fits])
    return results
