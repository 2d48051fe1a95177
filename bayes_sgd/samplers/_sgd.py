"""The SGD sampler of P_SGD(f|S): many independent runs, each trained until it fits S.

Run r starts from theta_0 ~ prior drawn with ``fold_in(stream, r)``, is trained with an optax
optimiser on minibatches reshuffled every epoch (also keyed by r), is checked for 100 %
training accuracy at every epoch boundary, trains ``epochs_after_fit`` more epochs once it
fits (then on until it fits S again, if those epochs lost the fit), and stops at ``max_epochs``
otherwise.  A run counts as fitted when its final network classifies S exactly; P_SGD(f|S) =
#{fitted runs with function f on E} / #{fitted runs}.  Runs that never fit, or diverge (non-finite loss or parameters), are
recorded in ``runs`` and excluded from the counts.

Many runs train at once in *slots* (``jax.vmap``); a finished slot is refilled with the next
run id, so throughput does not wait for the slowest run of a batch.  Every random number of
run r depends on r alone, so results are independent of slot count and scheduling (up to
floating-point reassociation in batched kernels).

Memory.  The automatic slot count (``slots = 0``) is also capped by ``n_runs`` and by a
memory budget (``SGDSettings.memory_budget_bytes``, 2 GiB): per slot, parameters, optimiser
state, gradients and their temporaries, plus every intermediate activation of one forward
pass (measured from the model's jaxpr) times the rows evaluated at once (3 x batch for the
backward pass, the fit-check chunk, |E|); slots trained one after another (``slot_layout``
"scan", CNNs on CPU) share one slot's activations.  The 100 %-training-accuracy check
evaluates S in chunks of ``FIT_CHUNK`` rows when |S| is larger, so activation memory does not
grow with |S| (images: a CNN's feature maps on |S| = 10,000 would otherwise need GBs per
slot).

The training step differentiates the model's ``train_apply`` where it has one (``FCN``: the
outputs of ``apply`` bit for bit, the weight gradients of small layers as unrolled sums of
per-row outer products, which XLA:CPU runs ~6x faster than a batched GEMM with contraction
length = the minibatch); the fit check and the functions on E use ``apply``.

SGLD (``sgld_temperature`` T > 0) adds N(0, 2 lr T) noise to every parameter after each
optimiser step: theta <- theta - lr grad L + sqrt(2 lr T) xi, with L the minibatch mean loss.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax

from ..counting import FunctionCounter
from ..models._cnn import xla_conv_compiler_options
from ._common import pack_bits_jax, stream_key

# "scan" slots on CPU from this many forward FLOPs per training step (forward_flops x batch).
# Measured at the two ends only: the Boolean FCN 7-40-40-1 at batch 8 (3.1e4) gains ~3x from
# vmapped slots; the MNIST FCN 784-512-512-1 at batch 32 (4.3e7) trains 1.9x faster under
# "scan" (runs of ~6 epochs).  1e6, between them, is where a step is GEMMs of ~10^5
# multiply-adds or more per network.
SCAN_MIN_STEP_FLOPS = 1 << 20
RANK_MAX_M = 256  # epoch_permutation by counting up to this |S| (m^2 work), by sorting above
FIT_CHUNK = 128  # rows of S per forward pass in the fit check when |S| is larger
DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes for all slots' working set (automatic slot count)


def activation_floats_per_input(model, input_shape) -> int:
    """Floats of every intermediate value of ONE network's forward pass per input row.

    Read off the jaxpr of ``model.apply`` at 2 and 1 input rows (the difference removes
    parameter-only values): for an FCN the sum of its widths (pre- and post-activation), for a
    CNN the sum of its feature maps. An upper bound on what the backward pass keeps per row.
    """
    params = jax.eval_shape(
        lambda k: jax.tree_util.tree_map(lambda a: a[0], model.init(key=k, n=1)),
        jax.random.key(0))

    def total(n):
        x = jax.ShapeDtypeStruct((n, *input_shape), jnp.float32)
        jaxpr = jax.make_jaxpr(model.apply)(params, x)
        return sum(math.prod(v.aval.shape) for eqn in jaxpr.eqns for v in eqn.outvars
                   if hasattr(v.aval, "shape"))

    return max(1, total(2) - total(1))


def forward_flops(model, input_shape) -> int:
    """FLOPs of ONE network's forward pass on one input row: 2 x the multiply-adds of every
    matrix product and convolution in the jaxpr of ``model.apply`` (an FCN: 2 x its weights;
    a CNN: its convolutions, whatever their implementation)."""
    params = jax.eval_shape(
        lambda k: jax.tree_util.tree_map(lambda a: a[0], model.init(key=k, n=1)),
        jax.random.key(0))
    jaxpr = jax.make_jaxpr(model.apply)(params, jax.ShapeDtypeStruct((1, *input_shape),
                                                                     jnp.float32))

    def count(jx) -> int:
        total = 0
        for eqn in jx.eqns:
            out = math.prod(eqn.outvars[0].aval.shape)
            if eqn.primitive.name == "dot_general":
                (lc, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                total += 2 * out * math.prod(lhs[i] for i in lc)
            elif eqn.primitive.name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape
                spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
                total += 2 * out * rhs[spec[1]] * math.prod(rhs[i] for i in spec[2:])
            for v in eqn.params.values():  # nested jaxprs (pjit, custom_jvp, ...)
                for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        total += count(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        total += count(sub)
        return total

    return count(jaxpr.jaxpr)


def slot_memory(model, input_shape, opt, *, batch_size: int, fit_rows: int,
                n_test: int) -> tuple[int, int]:
    """Estimated bytes of one training slot (float32), as (state, activations): parameters x 4
    (params, gradient, update, the kept copy) + optimiser state x 2, and the activations of
    max(3 x batch, fit_rows, n_test) rows (``activation_floats_per_input``).  Vmapped slots
    each hold both; slots trained one after another (``SGDTrainer.slot_layout = "scan"``)
    each hold their state, and the activations of one slot at a time."""
    p1 = jax.eval_shape(
        lambda k: jax.tree_util.tree_map(lambda a: a[0], model.init(key=k, n=1)),
        jax.random.key(0))
    n_params = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(p1))
    n_opt = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(jax.eval_shape(opt.init, p1))
                if hasattr(a, "shape"))
    rows = max(3 * batch_size, fit_rows, n_test)
    act = activation_floats_per_input(model, input_shape)
    return 4 * (4 * n_params + 2 * n_opt), 4 * rows * act


def slot_bytes(model, input_shape, opt, *, batch_size: int, fit_rows: int, n_test: int) -> int:
    """Estimated bytes of one vmapped training slot: the sum of ``slot_memory``."""
    return sum(slot_memory(model, input_shape, opt, batch_size=batch_size, fit_rows=fit_rows,
                           n_test=n_test))


def epoch_permutation(key: jax.Array, m: int) -> jax.Array:
    """The minibatch order of one epoch: 0..m-1 sorted by a random 64-bit key per row.

    Row k gets ``(hi_k, lo_k) = jax.random.bits(key, (2, m), uint32)[:, k]``; the permutation
    lists the rows in increasing (hi, lo, k) order (``np.lexsort((k, lo, hi))``), a uniformly
    random permutation up to 64-bit key ties (probability < m^2 / 2^65).  For m <= RANK_MAX_M
    it is computed by counting, for each row, the rows that sort before it (an m x m
    comparison: ~3.5x faster than ``jax.random.permutation``'s sort when vmapped over
    training slots on CPU); larger m sort.  Both give the same permutation."""
    hi, lo = jax.random.bits(key, (2, m), jnp.uint32)
    return order_by_keys(hi, lo)


def order_by_keys(hi: jax.Array, lo: jax.Array) -> jax.Array:
    """Row indices in increasing (hi, lo, index) order (``np.lexsort((idx, lo, hi))``)."""
    m = hi.shape[0]
    idx = jnp.arange(m, dtype=jnp.int32)
    if m > RANK_MAX_M:
        return jax.lax.sort((hi, lo, idx), num_keys=3)[2]
    # before[k, l]: row l sorts before row k
    before = (hi[None, :] < hi[:, None]) | ((hi[None, :] == hi[:, None]) & (
        (lo[None, :] < lo[:, None]) | ((lo[None, :] == lo[:, None]) & (idx[None, :] < idx[:, None]))))
    rank = jnp.sum(before, axis=1, dtype=jnp.int32)
    return jnp.sum(jnp.where(rank[None, :] == idx[:, None], idx[None, :], 0), axis=1,
                   dtype=jnp.int32)


def make_optimizer(name: str, lr: float, momentum: float = 0.9) -> optax.GradientTransformation:
    table = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=momentum),
        "adam": lambda: optax.adam(lr),
        "adagrad": lambda: optax.adagrad(lr),
        "rmsprop": lambda: optax.rmsprop(lr),
    }
    if name not in table:
        raise ValueError(f"name: expected an optimizer, one of {sorted(table)}, got {name!r}")
    return table[name]()


def loss_fn(name: str):
    if name == "bce":
        return lambda out, y: optax.sigmoid_binary_cross_entropy(out, y)
    if name == "mse":
        # MSE on 0/1 labels with the output offset by 1/2, so that the decision threshold stays
        # at output 0 and a function means the same thing for every sampler.
        return lambda out, y: (out + 0.5 - y) ** 2
    raise ValueError(f"name: expected a loss, 'bce' or 'mse', got {name!r}")


def sync_epochs_for(mean_epochs: float) -> int:
    """Epochs between host syncs for runs of ``mean_epochs`` on average: the power of two
    nearest ``mean_epochs / 24``, in [8, 16].  A finished slot idles ~1.5 syncs (the pipelined
    sync of ``SGDTrainer.run``); each sync costs the host a few ms of a core that the devices
    share.  Measured on 2 cores, 32 slots per device: lr 0.01 at |S| = 32 (~360 epochs per run)
    289 runs/s at 16 epochs per sync vs 269 at 8; lr 0.1 at |S| = 16 (~44 epochs) 2,476 runs/s
    at 8 vs 2,183 at 4 and 2,367 at 16."""
    if not mean_epochs > 0:
        return 8
    return int(np.clip(2 ** np.round(np.log2(mean_epochs / 24)), 8, 16))


class TrainData(NamedTuple):
    """The task's arrays, passed to the executables as ARGUMENTS: closed over, they were
    constants of the compiled program, and XLA constant-folded work on them at compile time
    (a CNN's im2col patches of every image: minutes of compiling, tens of MB of constants)."""
    x_s: jax.Array
    y_s: jax.Array
    x_s_chunks: jax.Array  # S padded to whole FIT_CHUNK-row chunks (fit check)
    x_e: jax.Array


class SlotState(NamedTuple):
    params: tuple
    opt_state: tuple
    run_id: jax.Array  # (P,) int32; -1 = idle slot
    epoch: jax.Array  # epochs trained so far
    fit_epoch: jax.Array  # first epoch boundary with 100 % train accuracy, -1 = not yet
    done: jax.Array
    diverged: jax.Array
    fits: jax.Array  # 100 % training accuracy at the last epoch boundary checked


@dataclass
class SGDSettings:
    n_runs: int
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 8
    loss: str = "bce"
    max_epochs: int = 2000
    epochs_after_fit: int = 0
    slots: int = 0
    sgld_temperature: float = 0.0
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET  # caps the automatic slot count

    @classmethod
    def from_config(cls, c) -> "SGDSettings":
        """The training fields of a (validated) ``SGDConfig``; the rest keep their defaults."""
        return cls(**{f.name: getattr(c, f.name) for f in fields(cls) if hasattr(c, f.name)})


@dataclass
class SGDResult:
    counter: FunctionCounter
    records: dict = field(default_factory=dict)  # run_id -> (fitted, epoch_fit, epochs, diverged)

    @property
    def n_runs(self) -> int:
        return len(self.records)

    @property
    def n_fitted(self) -> int:
        return sum(r[0] for r in self.records.values())

    def merge(self, other: "SGDResult") -> None:
        self.counter.merge(other.counter)
        self.records.update(other.records)


class SGDTrainer:
    """Vmapped training slots for one (model, task, settings)."""

    def __init__(self, model, task, settings: SGDSettings, *, stream: jax.Array,
                 slot_layout: str | None = None, train_apply: bool = True):
        self.s = settings
        self.stream = stream
        self.x_s = jnp.asarray(task.x_train)
        self.y_s = jnp.asarray(task.y_train, jnp.float32)
        self.x_e = jnp.asarray(task.x_test)
        self.m = task.m
        self.n_test = task.n_test
        bs = min(settings.batch_size, self.m)
        self.bs = bs
        self.n_steps = -(-self.m // bs)
        self.opt = make_optimizer(settings.optimizer, settings.lr, settings.momentum)
        self.loss = loss_fn(settings.loss)
        # fit check in chunks of FIT_CHUNK rows once S is larger (bounded activation memory)
        self.fit_chunk = self.m if self.m <= FIT_CHUNK else FIT_CHUNK
        n_chunks = -(-self.m // self.fit_chunk)
        pad_idx = np.arange(n_chunks * self.fit_chunk) % self.m
        self.x_s_chunks = self.x_s[pad_idx].reshape(
            (n_chunks, self.fit_chunk) + self.x_s.shape[1:])
        self.data = TrainData(self.x_s, self.y_s, self.x_s_chunks, self.x_e)
        self._data_cache: dict = {}  # device (or mesh sharding) -> self.data placed there
        # How slots share an executable: vmapped (batched kernels), or one network after
        # another (lax.map) for CNNs on CPU, where XLA's batched convolution layouts are
        # slower than a loop of unbatched ones (1.8x per network-epoch at 32 channels).
        # Every run's random numbers depend on its run id alone either way (None: automatic).
        if slot_layout not in (None, "vmap", "scan"):
            raise ValueError(f"slot_layout: expected 'vmap', 'scan' or None, got {slot_layout!r}")
        # FCNs too once one training step is large (an MNIST FCN, batch 32: 4.3e7 FLOPs): its
        # GEMMs keep a core busy alone, and finished slots are skipped instead of computed
        # (runs of ~6 epochs: 57 vs 111 ms per useful network-epoch, bench_sgd_images.py).
        big_step = forward_flops(model, task.input_shape) * bs >= SCAN_MIN_STEP_FLOPS
        self.slot_layout = slot_layout or (
            "scan" if (hasattr(model, "filters") or big_step)
            and jax.default_backend() == "cpu" else "vmap")
        # CNNs one network at a time on CPU: XLA's own (Eigen) convolution in executables
        # compiled without YNNPACK's convolutions, 3-4x faster per network than im2col
        # (``xla_conv_compiler_options``).  A CNN built with ``conv="im2col"`` keeps im2col.
        self._jit_options = None
        if (self.slot_layout == "scan" and getattr(model, "conv", None) == "auto"
                and jax.default_backend() == "cpu"):
            opts = xla_conv_compiler_options()
            if opts is not None:
                model = dataclasses.replace(model, conv="nhwc")
                self._jit_options = opts or None
        self.model = model
        # the model's ``train_apply`` (same outputs, a backward pass tuned for small minibatches,
        # FCNs) in the training step; False: ``apply`` (the benchmark's baseline)
        self._train_apply = (model.train_apply if train_apply and hasattr(model, "train_apply")
                             else model.apply)
        state_b, act_b = slot_memory(model, task.input_shape, self.opt, batch_size=bs,
                                     fit_rows=self.fit_chunk, n_test=self.n_test)
        self.slot_bytes = state_b + act_b
        if settings.slots:
            self.P = settings.slots
        else:  # enough slots to amortise dispatch, not so many that the tail idles
            P = int(np.clip(2 ** np.round(np.log2(max(settings.n_runs, 1) / 8)), 32, 1024))
            # ... nor more than there are runs, nor more than the memory budget holds: every
            # slot's activations when vmapped, one slot's at a time under "scan"
            if self.slot_layout == "scan":
                P_mem = max(1, int((settings.memory_budget_bytes - act_b) // state_b))
            else:
                P_mem = max(1, int(settings.memory_budget_bytes // self.slot_bytes))
            self.P = max(1, min(P, settings.n_runs, P_mem))
        self._build()

    def _jit(self, f, **kw):
        """``jax.jit`` with the trainer's compiler options (CNN convolutions on CPU)."""
        if self._jit_options:
            kw["compiler_options"] = self._jit_options
        return jax.jit(f, **kw)

    # -- per-run randomness ------------------------------------------------------------------
    def _run_key(self, run_id, purpose):
        return jax.random.fold_in(jax.random.fold_in(self.stream, run_id), purpose)

    def _init_one(self, run_id):
        params = jax.tree_util.tree_map(
            lambda a: a[0], self.model.init(key=self._run_key(run_id, 0), n=1))
        return params, self.opt.init(params)

    def _fits(self, params, data: TrainData | None = None):
        d = self.data if data is None else data
        if self.fit_chunk >= self.m:
            out = self.model.apply(params, d.x_s)
        else:  # S in chunks (padded with its first rows, cut off after)
            out = jax.lax.map(lambda xb: self.model.apply(params, xb),
                              d.x_s_chunks).reshape(-1)[: self.m]
        return jnp.all((out > 0) == (d.y_s > 0.5))

    def data_on(self, where) -> TrainData:
        """``self.data`` placed on ``where`` (a device or a sharding), once per place."""
        if where not in self._data_cache:
            self._data_cache[where] = jax.device_put(self.data, where)
        return self._data_cache[where]

    def _build(self):
        opt, loss, s = self.opt, self.loss, self.s
        m, bs, n_steps = self.m, self.bs, self.n_steps
        pad = n_steps * bs - m
        max_epochs, after = s.max_epochs, s.epochs_after_fit
        noise_scale = float(np.sqrt(2 * s.lr * s.sgld_temperature))
        scan = self.slot_layout == "scan"

        apply = self._train_apply

        def batch_loss(params, xb, yb, wb):
            out = apply(params, xb)
            return jnp.sum(wb * loss(out, yb)) / jnp.sum(wb)

        grad = jax.value_and_grad(batch_loss)

        def one_epoch(d, params, opt_state, run_id, epoch, fit_epoch, done, diverged, fits):
            # Check at the epoch boundary before training: a run that already fits S
            # (initialisation included) records its fit epoch.  A run stops only on a boundary
            # where it fits S (P_SGD is conditioned on S: training past the fit may lose it).
            fits = self._fits(params, d)
            fit_epoch = jnp.where((fit_epoch < 0) & fits, epoch, fit_epoch)
            finished = (((fit_epoch >= 0) & (epoch - fit_epoch >= after) & fits)
                        | (epoch >= max_epochs))
            done = done | finished | diverged
            def train(_):
                perm = epoch_permutation(jax.random.fold_in(self._run_key(run_id, 1), epoch), m)
                perm = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
                weights = jnp.concatenate([jnp.ones((m,)), jnp.zeros((pad,))])

                def step(i, carry):
                    p, o, bad = carry
                    idx = jax.lax.dynamic_slice(perm, (i * bs,), (bs,))
                    w = jax.lax.dynamic_slice(weights, (i * bs,), (bs,))
                    val, g = grad(p, d.x_s[idx], d.y_s[idx], w)
                    upd, o = opt.update(g, o, p)
                    p = optax.apply_updates(p, upd)
                    if noise_scale > 0:
                        k = jax.random.fold_in(
                            jax.random.fold_in(self._run_key(run_id, 2), epoch), i)
                        leaves, tdef = jax.tree_util.tree_flatten(p)
                        ks = jax.random.split(k, len(leaves))
                        leaves = [a + noise_scale * jax.random.normal(kk, a.shape, a.dtype)
                                  for a, kk in zip(leaves, ks)]
                        p = jax.tree_util.tree_unflatten(tdef, leaves)
                    bad = bad | ~jnp.isfinite(val)
                    return p, o, bad

                new_p, new_o, bad = jax.lax.fori_loop(0, n_steps, step, (params, opt_state, False))
                finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(a))
                                            for a in jax.tree_util.tree_leaves(new_p)]))
                return new_p, new_o, bad | ~finite

            if scan:  # one network at a time: a finished run's epoch of training is skipped
                new_p, new_o, bad = jax.lax.cond(
                    done, lambda _: (params, opt_state, jnp.zeros((), bool)), train, None)
            else:  # vmapped: computed for every slot, discarded for finished ones below
                new_p, new_o, bad = train(None)
            keep = done
            params = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), params, new_p)
            opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), opt_state, new_o)
            diverged = diverged | (bad & ~keep)
            done = done | diverged
            epoch = jnp.where(keep, epoch, epoch + 1)
            return params, opt_state, run_id, epoch, fit_epoch, done, diverged, fits

        def run_epochs(state: SlotState, n_epochs, d: TrainData):
            def epoch_of(*st):
                return one_epoch(d, *st)

            if scan:  # one network at a time within the executable
                def slot_epochs(st):
                    # All n_epochs of ONE slot, then the next slot (slots are independent, so
                    # the order of the two loops does not change a number).  A finished run
                    # that did not diverge is frozen: one_epoch would return its state
                    # unchanged (its fit flag was computed on the parameters it still holds),
                    # so its loop stops.  Frozen slots wait one to two syncs (8-16 epochs) for
                    # their harvest in the pipelined ``run``: recomputed, a 1-epoch CNN run at
                    # |S| = 256 cost 9x its useful work (bench_sgd_images.py).  Slots outside
                    # the epoch loop, each slot's state is copied in and out of the stacked
                    # state once per call, not once per epoch (an MNIST FCN slot's is 8 MB:
                    # ~8 ms per idle slot and epoch when the epoch loop was outside).
                    def active(c):
                        return (c[0] < n_epochs) & ~(c[1][5] & ~c[1][6])

                    return jax.lax.while_loop(active, lambda c: (c[0] + 1, epoch_of(*c[1])),
                                              (jnp.zeros((), jnp.int32), st))[1]

                return SlotState(*jax.lax.map(slot_epochs, tuple(state)))

            def body(_, st):
                return SlotState(*jax.vmap(epoch_of)(*st))
            return jax.lax.fori_loop(0, n_epochs, body, state)

        # n_epochs is traced: the sync cadence adapts without recompiling
        self._run_epochs_fn = run_epochs
        self.run_epochs = _WithData(self._jit(run_epochs), self)
        self._mesh_cache: dict = {}
        self._build_refill()

    def _build_refill(self):
        """The jitted slot refill (new runs' inits) and the functions on E of finished runs."""
        model = self.model

        def refill(state: SlotState, mask, new_ids):
            p, o = jax.vmap(self._init_one)(new_ids)
            params = jax.tree_util.tree_map(lambda a, b: jnp.where(
                mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), p, state.params)
            opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(
                mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), o, state.opt_state)
            z = jnp.zeros_like(state.epoch)
            return SlotState(
                params, opt_state,
                jnp.where(mask, new_ids, state.run_id),
                jnp.where(mask, z, state.epoch),
                jnp.where(mask, z - 1, state.fit_epoch),
                jnp.where(mask, new_ids < 0, state.done),
                jnp.where(mask, False, state.diverged),
                jnp.where(mask, False, state.fits))

        def functions_on_test(params, d: TrainData):
            if self.slot_layout == "scan":  # one network's activations on E at a time
                out = jax.lax.map(lambda p: model.apply(p, d.x_e), params)
            else:
                out = model.apply_batched(params, d.x_e)
            return pack_bits_jax(out > 0)

        def harvest_and_refill(state: SlotState, harvest, mask, new_ids, d: TrainData):
            # functions on E of the slots ``harvest`` (K indices; finished runs, read before
            # their slots are refilled): K forward passes on E, not P
            hp = jax.tree_util.tree_map(lambda a: a[harvest], state.params)
            return refill(state, mask, new_ids), functions_on_test(hp, d)

        self._refill_fn, self._harvest_fn = refill, harvest_and_refill
        self.refill = self._jit(refill)
        self.harvest_and_refill = _WithData(self._jit(harvest_and_refill), self)
        self.functions_on_test = _WithData(self._jit(functions_on_test), self)

    def mesh_fns(self, devices) -> "MeshFns":
        """``run_epochs``, ``refill`` and ``harvest_and_refill`` as ONE executable each over a
        ``jax.sharding.Mesh`` of ``devices`` (compiled once, not once per device).

        The state holds ``len(devices) * P`` slots, the slot axis split over the mesh
        (``NamedSharding``); each device runs the per-device program on its own ``P`` slots
        (``shard_map``: no communication), so every run's numbers are those of the per-device
        path.  ``harvest`` holds ``K`` local slot indices per device; the functions on E come
        back as ``(devices x K, bytes)``."""
        devices = tuple(devices)
        if devices in self._mesh_cache:
            return self._mesh_cache[devices]
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as Spec

        mesh = Mesh(np.array(devices), ("d",))
        split, same = NamedSharding(mesh, Spec("d")), NamedSharding(mesh, Spec())

        def spmd(f, in_specs, **jit_kw):
            # check_vma off: the per-device code is unchanged (no collectives to check)
            return self._jit(jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=Spec("d"),
                                           check_vma=False),
                             **jit_kw)

        # the task's arrays: one replicated copy per device, an argument of the executables
        fns = MeshFns(
            mesh, split,
            _WithData(spmd(self._run_epochs_fn, (Spec("d"), Spec(), Spec()),
                           in_shardings=(split, same, same), out_shardings=split), self, same),
            spmd(self._refill_fn, (Spec("d"),) * 3, in_shardings=split, out_shardings=split),
            _WithData(spmd(self._harvest_fn, (Spec("d"),) * 4 + (Spec(),),
                           in_shardings=(split,) * 4 + (same,), out_shardings=split), self, same))
        self._mesh_cache[devices] = fns
        return fns

    def warm(self, devices=None, *, spmd: bool | None = None) -> float:
        """Compile the executables ``run`` uses for ``devices`` (``spmd`` as there) and run them
        once on idle slots; returns the seconds taken (the start-up cost)."""
        t0 = time.perf_counter()
        devs = list(devices) if devices else [None]
        P = self.P
        K = min(P, max(8, P // 4))
        if (SPMD if spmd is None else spmd) and len(devs) > 1:
            fns, n = self.mesh_fns(devs), len(devs) * P
            steps = [(jax.device_put(self.empty_state(n), fns.split), fns, len(devs) * K)]
        else:
            steps = [(self.empty_state() if d is None else jax.device_put(self.empty_state(), d),
                      self, K) for d in devs]
        outs = []
        for st, f, k in steps:
            n = st.epoch.shape[0]
            st = f.refill(st, np.ones(n, bool), np.full(n, -1, np.int32))
            st = f.run_epochs(st, np.int32(1))
            outs.append(f.harvest_and_refill(st, np.zeros(k, np.int32), np.zeros(n, bool),
                                             np.full(n, -1, np.int32)))
        jax.block_until_ready(outs)
        return time.perf_counter() - t0

    def empty_state(self, n: int | None = None) -> SlotState:
        """``n`` idle slots (default ``P``)."""
        n = self.P if n is None else n
        ids = jnp.full((n,), -1, jnp.int32)
        # Idle slots only need the shapes (refill draws every run's init): zeros from
        # eval_shape instead of an eager vmapped init, which compiled op by op (~6 s CPU).
        shapes = jax.eval_shape(jax.vmap(self._init_one), jnp.zeros((n,), jnp.int32))
        p, o = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        z = jnp.zeros((n,), jnp.int32)
        f = jnp.zeros((n,), bool)
        return SlotState(p, o, ids, z, z - 1, jnp.ones((n,), bool), f, f)

    def _harvest(self, st, ahead, idle, new_ids, K):
        """Read up to ``K`` finished slots of ``st``, refill them in ``ahead`` with new run ids;
        returns the new state and (records, packed functions on E) of the finished runs, or
        ``(ahead, None)`` when none finished.  Updates ``idle`` in place."""
        done = np.asarray(st.done) & ~idle
        if not done.any():
            return ahead, None
        slots = np.flatnonzero(done)[:K]
        recs = _records_of(st, slots)
        harvest = np.zeros(K, np.int32)
        harvest[: len(slots)] = slots
        ids, mask = new_ids(slots)
        new_state, packed = self.harvest_and_refill(ahead, harvest, mask, ids)
        idle[slots] = ids[slots] < 0
        return new_state, (recs, packed)

    def run(self, run_ids, *, epochs_per_sync: int = 4, progress=None,
            on_sync=None, devices=None, max_sync_seconds: float = 2.0,
            spmd: bool | None = None) -> SGDResult:
        """Train the given run ids to completion; returns their counts and records.

        Slots are synced with the host every ``epochs_per_sync`` epochs (0: adapted to the
        runs' mean length, ``sync_epochs_for``), or every epoch once two syncs in a row take
        longer than ``max_sync_seconds``, not counting syncs that compile (large models: an
        interrupt or a checkpoint then waits one epoch, not sixteen; ``_SyncSchedule``).
        Results do not depend on either.

        Pipelined: before reading a device's slots the next ``epochs_per_sync`` epochs are
        already queued on it, so the device trains while the host does the bookkeeping.  That
        is exact because a finished slot is frozen (``one_epoch`` keeps its parameters): the
        slots read as finished are refilled in the state one chunk of epochs later, and their
        functions on E are computed there, with the refill (``harvest_and_refill``), for at
        most ``K = max(8, P // 4)`` slots per sync (more wait, frozen, for the next sync).

        With several ``devices``, each holds its own ``P`` slots and trains concurrently.  Run
        ids go to whichever slot frees first; the results do not depend on it (run r's
        randomness depends on r alone).  ``spmd`` (default ``SPMD``): all devices' slots in one
        state over a device mesh, one executable for all (``mesh_fns``: compiled once);
        otherwise one state and one executable per device.  Both give the same records and
        counts."""
        devs = list(devices) if devices else [None]
        if (SPMD if spmd is None else spmd) and len(devs) > 1:
            return self._run_mesh(run_ids, devs, epochs_per_sync=epochs_per_sync,
                                  progress=progress, on_sync=on_sync,
                                  max_sync_seconds=max_sync_seconds)
        P = self.P
        K = min(P, max(8, P // 4))
        queue = _Queue(run_ids)  # lazy: run ids are drawn as slots free up
        res = SGDResult(FunctionCounter(self.n_test))
        cur = [self.empty_state() if d is None else jax.device_put(self.empty_state(), d)
               for d in devs]
        idles = [np.ones(P, bool) for _ in devs]  # slots without a run (in cur)
        pend = [None] * len(devs)  # (records, packed functions on E) of the last harvest
        harvested = [False] * len(devs)

        def new_ids(slots):
            ids = np.full(P, -1, np.int32)
            mask = np.zeros(P, bool)
            for i in slots:
                mask[i] = True
                if queue:
                    ids[i] = queue.pop()
            return ids, mask

        for j in range(len(devs)):  # first fill
            if queue:
                ids, mask = new_ids(range(P))
                cur[j] = self.refill(cur[j], mask, ids)
                idles[j] = ids < 0
        sched = _SyncSchedule(epochs_per_sync, max_sync_seconds)
        while any(not idle.all() for idle in idles) or any(p is not None for p in pend):
            sched.start()
            n_ep = np.int32(sched.epochs)
            ahead = [c if idle.all() else self.run_epochs(c, n_ep)
                     for c, idle in zip(cur, idles)]  # queued on every device first
            n_done = n_fit = n_ep_done = 0
            for j, idle in enumerate(idles):
                if pend[j] is not None:  # functions of the runs harvested last sync
                    d_done, d_fit, d_ep = _record(res, *pend[j])
                    pend[j] = None
                    n_done, n_fit, n_ep_done = n_done + d_done, n_fit + d_fit, n_ep_done + d_ep
                if idle.all():
                    continue
                # cur[j] is computed (ahead[j] runs on it now): reading does not wait long
                cur[j], pend[j] = self._harvest(cur[j], ahead[j], idle, new_ids, K)
                if pend[j] is not None and not harvested[j]:  # compiles harvest_and_refill
                    harvested[j] = True
                    sched.compiling()
            sched.end(res, n_done, n_fit, n_ep_done, progress, on_sync)
        return res

    def _run_mesh(self, run_ids, devs, *, epochs_per_sync, progress, on_sync,
                  max_sync_seconds) -> SGDResult:
        """``run`` with the slots of all ``devs`` in one state over a mesh (``mesh_fns``): the
        same schedule as the per-device loop, with one dispatch per step for all devices."""
        fns = self.mesh_fns(devs)
        P, D = self.P, len(devs)
        K = min(P, max(8, P // 4))  # per device, as in the per-device loop
        queue = _Queue(run_ids)
        res = SGDResult(FunctionCounter(self.n_test))
        cur = jax.device_put(self.empty_state(D * P), fns.split)
        idle = np.ones(D * P, bool)  # global slot g = device g // P, local slot g % P
        pend, harvested = None, False

        def new_ids(slots):
            ids = np.full(D * P, -1, np.int32)
            mask = np.zeros(D * P, bool)
            for i in slots:
                mask[i] = True
                if queue:
                    ids[i] = queue.pop()
            return ids, mask

        if queue:  # first fill
            ids, mask = new_ids(range(D * P))
            cur = fns.refill(cur, mask, ids)
            idle = ids < 0
        sched = _SyncSchedule(epochs_per_sync, max_sync_seconds)
        while not idle.all() or pend is not None:
            sched.start()
            ahead = cur if idle.all() else fns.run_epochs(cur, np.int32(sched.epochs))
            n_done = n_fit = n_ep_done = 0
            if pend is not None:
                n_done, n_fit, n_ep_done = _record(res, pend[0], np.asarray(pend[1])[pend[2]])
                pend = None
            if not idle.all():
                done = np.asarray(cur.done) & ~idle
                if done.any():
                    # up to K finished slots per device (the harvest is local to each device)
                    slots = np.concatenate([j * P + np.flatnonzero(done[j * P:(j + 1) * P])[:K]
                                            for j in range(D)])
                    local = np.zeros((D, K), np.int32)
                    rows = []
                    for j in range(D):
                        mine = slots[slots // P == j] % P
                        local[j, : len(mine)] = mine
                        rows.extend(j * K + np.arange(len(mine)))
                    recs = _records_of(cur, slots)
                    ids, mask = new_ids(slots)
                    if not harvested:  # this call compiles harvest_and_refill
                        harvested = True
                        sched.compiling()
                    cur, packed = fns.harvest_and_refill(ahead, local.reshape(-1), mask, ids)
                    idle[slots] = ids[slots] < 0
                    pend = (recs, packed, np.asarray(rows, np.int64))
                else:
                    cur = ahead
            sched.end(res, n_done, n_fit, n_ep_done, progress, on_sync)
        return res


class _SyncSchedule:
    """Epochs per host sync in ``SGDTrainer.run`` (both paths), and the per-sync callbacks.

    ``epochs_per_sync`` 0 adapts the cadence to the runs' mean length (``sync_epochs_for``,
    8 until 16 runs are recorded); once two syncs in a row take longer than
    ``max_sync_seconds`` every later sync is one epoch.  Syncs that compile are not counted:
    the first (the training executable) and those marked with ``compiling`` (each device's
    first harvest).  Counting the first harvest, which compiles ``harvest_and_refill`` (~3 s
    on 2 cores), had put every run of the small n = 7 net on one epoch per sync: 476 against
    1,212 runs/s (10^5 runs of paper target 6, compilation included)."""

    def __init__(self, epochs_per_sync: int, max_sync_seconds: float):
        self.adapt = epochs_per_sync == 0
        self.epochs = 8 if self.adapt else epochs_per_sync
        self.max_seconds, self.slow, self.first = max_sync_seconds, False, True
        self.epochs_seen, self.t0, self.over, self.skip = 0, 0.0, 0, False

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def compiling(self) -> None:
        """This sync compiles an executable: its time says nothing about the model."""
        self.skip = True

    def end(self, res: "SGDResult", n_done: int, n_fit: int, epochs_done: int, progress,
            on_sync) -> None:
        """After a sync that recorded ``n_done`` runs (``n_fit`` fitted, ``epochs_done``
        epochs in all): the next cadence, then ``progress`` and ``on_sync``."""
        self.epochs_seen += epochs_done
        if not (self.first or self.skip or self.epochs == 1):
            # one long sync may be a hiccup (another process, a page-in); two are the model
            self.over = self.over + 1 if time.perf_counter() - self.t0 > self.max_seconds else 0
        if self.slow or self.over >= 2:
            self.slow, self.epochs = True, 1
        elif self.adapt and len(res.records) >= 16:
            self.epochs = sync_epochs_for(self.epochs_seen / len(res.records))
        self.first = self.skip = False
        if n_done and progress is not None:
            progress(n_done, n_fit)
        if on_sync is not None:
            on_sync(res)


class _WithData:
    """A jitted ``fn(first, *args, data)`` called as ``(first, *args)``: the trainer's
    ``TrainData`` placed on the device of ``first`` (or on ``where``, a mesh sharding)."""

    def __init__(self, fn, trainer: SGDTrainer, where=None):
        self.fn, self.trainer, self.where = fn, trainer, where

    def __call__(self, first, *args):
        where = self.where
        if where is None:
            leaf = jax.tree_util.tree_leaves(first)[0]
            devs = leaf.devices() if isinstance(leaf, jax.Array) else ()
            where = next(iter(devs)) if len(devs) == 1 else None
        data = self.trainer.data if where is None else self.trainer.data_on(where)
        return self.fn(first, *args, data)

    def _cache_size(self) -> int:
        return self.fn._cache_size()


class MeshFns(NamedTuple):
    """``SGDTrainer.mesh_fns``: the mesh, the slot-axis sharding and the three executables."""
    mesh: object
    split: object
    run_epochs: object
    refill: object
    harvest_and_refill: object


def _records_of(st: SlotState, slots) -> list:
    """(run id, fitted, fit epoch, epochs, diverged) of the finished ``slots`` of ``st``."""
    run_id = np.asarray(st.run_id)[slots]
    fit_epoch = np.asarray(st.fit_epoch)[slots]
    epochs = np.asarray(st.epoch)[slots]
    div = np.asarray(st.diverged)[slots]
    fitted = np.asarray(st.fits)[slots] & ~div
    return [(int(r), bool(f), int(fe), int(ep), bool(d))
            for r, f, fe, ep, d in zip(run_id, fitted, fit_epoch, epochs, div)]


def _record(res: SGDResult, recs, packed) -> tuple[int, int, int]:
    """Add harvested runs to ``res``; returns (runs, fitted runs, epochs trained)."""
    packed = np.asarray(packed)[: len(recs)]
    fitted = np.array([r[1] for r in recs], bool)
    ids = np.array([r[0] for r in recs], np.int64)
    res.counter.add_packed(packed[fitted], half=ids[fitted] % 2)
    epochs = 0
    for r, f, fe, ep, d in recs:
        res.records[r] = (f, fe, ep, d)
        epochs += ep
    return len(recs), int(fitted.sum()), epochs


class _Queue:
    """Run ids taken one at a time from any iterable (a range of 10^12 is never a list)."""

    def __init__(self, ids):
        self._it, self._head = iter(ids), []

    def __bool__(self) -> bool:
        if not self._head:
            self._head.extend(itertools.islice(self._it, 1))
        return bool(self._head)

    def pop(self) -> int:
        if not self:
            raise IndexError("pop from an empty queue")
        return self._head.pop()


SPMD = True  # SGDTrainer.run's default on several devices: one executable over a mesh
SPMD_MAX_WORK = 1.3e9  # the runner's mesh/per-device threshold in FLOPs, see spmd_for
EPOCHS_PER_SYNC = 0  # SGD epochs between host syncs: 0 = adapted to the runs (sync_epochs_for)
CPU_MAX_SLOTS = 32  # automatic SGD slots per CPU device: more leave the core's cache (slower)


def spmd_for(n_runs: int, flops_per_row: int, m: int) -> bool:
    """Whether ``n_runs`` runs of a model of ``flops_per_row`` forward FLOPs per input
    (``forward_flops``) on |S| = ``m`` should train on several devices with one executable
    over the mesh (``spmd=True``) rather than one executable per device.

    The mesh compiles 1.5-1.8x faster but trains 0.85-0.88x as fast in steady state
    (``bench_startup.py --devices 2``), so it wins only while the per-device path's training
    time is below dC r / (1 - r) (dC: compile time saved, r: throughput ratio), 25-43 s in
    the settings measured.  A run's epoch count is not known in advance, so the rule uses the
    work of one epoch of every run, W = n_runs x m x flops_per_row: mesh iff
    W <= ``SPMD_MAX_WORK``.  Measured on the idle machine (FCN 7-40-40-1, 3,840 FLOPs per
    row, the default config's S of 32 inputs), the crossover is at 29,500 runs (W = 3.6e9)
    at lr 0.1 (~44 epochs per run) and 3,950 runs (W = 4.9e8) at lr 0.01 (~360 epochs): the
    same W, 7.5x apart, because W cannot see the runs' lengths.  The threshold 1.3e9 is their
    geometric mean: each setting then loses at most ~13 % end to end near it (3 s at lr 0.1,
    7 s of 81 s at lr 0.01, both at ~10,800 runs), against 14 % of every long run if the mesh
    were always used and the compile saving (4-6 s) if it never were.  The default run
    (10^4 runs, W = 1.2e9) stays on the mesh; image models train per device from the first
    run (one MNIST FCN run: W = 1.3e9, the paper's CNN at 32 channels: 2.9e10)."""
    return n_runs * m * flops_per_row <= SPMD_MAX_WORK


def sgd_trainer_and_run_kwargs(cfg, task, model, *, slots: int | None = None):
    """The runner's ``SGDTrainer`` and ``run`` keyword arguments for ``cfg`` (also used by the
    benchmark and the distributed workers).  Every JAX device trains ``P`` slots concurrently
    (on CPU one device per core, see ``bayes_sgd._cpu_devices``).  An automatic slot count
    (``slots = 0``) shares ``n_runs`` and the memory budget between the devices and is capped
    at ``CPU_MAX_SLOTS`` per device on CPU, where larger vmapped batches fall out of the core's
    cache and train fewer runs per second; ``EPOCHS_PER_SYNC`` epochs between host syncs;
    one executable over the devices' mesh or one per device by ``spmd_for``.
    Results do not depend on any of these (every run's random numbers depend on its run id
    alone)."""
    settings = SGDSettings.from_config(cfg.samplers.sgd)
    devices = jax.devices()
    n_dev = len(devices)
    if slots:
        settings.slots = slots
    else:
        settings.memory_budget_bytes //= n_dev
    trainer = SGDTrainer(model, task, settings, stream=stream_key(cfg.seed, "sgd"))
    if not settings.slots:
        trainer.P = max(1, min(trainer.P, -(-settings.n_runs // n_dev)))
        if jax.default_backend() == "cpu":
            trainer.P = min(trainer.P, CPU_MAX_SLOTS)
    spmd = n_dev > 1 and spmd_for(settings.n_runs, forward_flops(model, task.input_shape),
                                  task.m)
    return trainer, dict(epochs_per_sync=EPOCHS_PER_SYNC,
                         devices=devices if n_dev > 1 else None, spmd=spmd)
