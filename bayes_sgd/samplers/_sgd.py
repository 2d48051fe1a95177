"""The SGD sampler of P_SGD(f|S): many independent runs, each trained until it fits S.

Run r starts from theta_0 ~ prior drawn with ``fold_in(stream, r)``, is trained with an optax
optimiser on minibatches reshuffled every epoch (also keyed by r), is checked for 100 %
training accuracy at every epoch boundary, trains ``epochs_after_fit`` more epochs once it
fits, and stops at ``max_epochs`` otherwise.  P_SGD(f|S) = #{fitted runs with function f on E}
/ #{fitted runs}.  Runs that never fit, or diverge (non-finite loss or parameters), are
recorded in ``runs`` and excluded from the counts.

Many runs train at once in *slots* (``jax.vmap``); a finished slot is refilled with the next
run id, so throughput does not wait for the slowest run of a batch.  Every random number of
run r depends on r alone, so results are independent of slot count and scheduling (up to
floating-point reassociation in batched kernels).

SGLD (``sgld_temperature`` T > 0) adds N(0, 2 lr T) noise to every parameter after each
optimiser step: theta <- theta - lr grad L + sqrt(2 lr T) xi, with L the minibatch mean loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..counting import FunctionCounter
from ._common import pack_bits_jax


def make_optimizer(name: str, lr: float, momentum: float = 0.9) -> optax.GradientTransformation:
    table = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=momentum),
        "adam": lambda: optax.adam(lr),
        "adagrad": lambda: optax.adagrad(lr),
        "rmsprop": lambda: optax.rmsprop(lr),
    }
    if name not in table:
        raise ValueError(f"samplers.sgd.optimizer: expected one of {sorted(table)}, got {name!r}")
    return table[name]()


def loss_fn(name: str):
    if name == "bce":
        return lambda out, y: optax.sigmoid_binary_cross_entropy(out, y)
    if name == "mse":
        # MSE on 0/1 labels with the output offset by 1/2, so that the decision threshold stays
        # at output 0 and a function means the same thing for every sampler.
        return lambda out, y: (out + 0.5 - y) ** 2
    raise ValueError(f"samplers.sgd.loss: expected 'bce' or 'mse', got {name!r}")


class SlotState(NamedTuple):
    params: tuple
    opt_state: tuple
    run_id: jax.Array  # (P,) int32; -1 = idle slot
    epoch: jax.Array  # epochs trained so far
    fit_epoch: jax.Array  # first epoch boundary with 100 % train accuracy, -1 = not yet
    done: jax.Array
    diverged: jax.Array


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

    @classmethod
    def from_config(cls, c) -> "SGDSettings":
        return cls(n_runs=c.n_runs, optimizer=c.optimizer, lr=c.lr, momentum=c.momentum,
                   batch_size=c.batch_size, loss=c.loss, max_epochs=c.max_epochs,
                   epochs_after_fit=c.epochs_after_fit, slots=c.slots,
                   sgld_temperature=c.sgld_temperature)


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

    def __init__(self, model, task, settings: SGDSettings, *, stream: jax.Array):
        self.model, self.s = model, settings
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
        if settings.slots:
            self.P = settings.slots
        else:  # enough slots to amortise dispatch, not so many that the tail idles
            self.P = int(np.clip(2 ** np.round(np.log2(max(settings.n_runs, 1) / 8)), 32, 1024))
        self._build()

    # -- per-run randomness ------------------------------------------------------------------
    def _run_key(self, run_id, purpose):
        return jax.random.fold_in(jax.random.fold_in(self.stream, run_id), purpose)

    def _init_one(self, run_id):
        params = jax.tree_util.tree_map(
            lambda a: a[0], self.model.init(key=self._run_key(run_id, 0), n=1))
        return params, self.opt.init(params)

    def _fits(self, params):
        out = self.model.apply(params, self.x_s)
        return jnp.all((out > 0) == (self.y_s > 0.5))

    def _build(self):
        model, opt, loss, s = self.model, self.opt, self.loss, self.s
        m, bs, n_steps = self.m, self.bs, self.n_steps
        pad = n_steps * bs - m
        max_epochs, after = s.max_epochs, s.epochs_after_fit
        noise_scale = float(np.sqrt(2 * s.lr * s.sgld_temperature))

        def batch_loss(params, xb, yb, wb):
            out = model.apply(params, xb)
            return jnp.sum(wb * loss(out, yb)) / jnp.sum(wb)

        grad = jax.value_and_grad(batch_loss)

        def one_epoch(params, opt_state, run_id, epoch, fit_epoch, done, diverged):
            # Check at the epoch boundary before training: a run that already fits S
            # (initialisation included) records its fit epoch.
            fits_now = self._fits(params)
            fit_epoch = jnp.where((fit_epoch < 0) & fits_now, epoch, fit_epoch)
            finished = ((fit_epoch >= 0) & (epoch - fit_epoch >= after)) | (epoch >= max_epochs)
            done = done | finished | diverged
            perm = jax.random.permutation(
                jax.random.fold_in(self._run_key(run_id, 1), epoch), m)
            perm = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
            weights = jnp.concatenate([jnp.ones((m,)), jnp.zeros((pad,))])

            def step(i, carry):
                p, o, bad = carry
                idx = jax.lax.dynamic_slice(perm, (i * bs,), (bs,))
                w = jax.lax.dynamic_slice(weights, (i * bs,), (bs,))
                val, g = grad(p, self.x_s[idx], self.y_s[idx], w)
                upd, o = opt.update(g, o, p)
                p = optax.apply_updates(p, upd)
                if noise_scale > 0:
                    k = jax.random.fold_in(jax.random.fold_in(self._run_key(run_id, 2), epoch), i)
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
            bad = bad | ~finite
            keep = done
            params = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), params, new_p)
            opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), opt_state, new_o)
            diverged = diverged | (bad & ~keep)
            done = done | diverged
            epoch = jnp.where(keep, epoch, epoch + 1)
            return params, opt_state, run_id, epoch, fit_epoch, done, diverged

        v_epoch = jax.vmap(one_epoch)

        def run_epochs(state: SlotState, n_epochs):
            def body(_, st):
                return SlotState(*v_epoch(*st))
            return jax.lax.fori_loop(0, n_epochs, body, state)

        self.run_epochs = jax.jit(run_epochs, static_argnums=1)

        def refill(state: SlotState, mask, new_ids):
            p, o = jax.vmap(self._init_one)(new_ids)
            sel = lambda a, b: jax.vmap(jnp.where)(mask, a, b) if a.ndim else a
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
                jnp.where(mask, False, state.diverged))

        self.refill = jax.jit(refill)
        self.functions_on_test = jax.jit(
            lambda params: pack_bits_jax(model.apply_batched(params, self.x_e) > 0))

    def empty_state(self) -> SlotState:
        ids = jnp.full((self.P,), -1, jnp.int32)
        p, o = jax.vmap(self._init_one)(jnp.zeros((self.P,), jnp.int32))
        z = jnp.zeros((self.P,), jnp.int32)
        return SlotState(p, o, ids, z, z - 1, jnp.ones((self.P,), bool), jnp.zeros((self.P,), bool))

    def run(self, run_ids, *, epochs_per_sync: int = 4, progress=None,
            on_sync=None) -> SGDResult:
        """Train the given run ids to completion; returns their counts and records."""
        queue = list(run_ids)[::-1]
        res = SGDResult(FunctionCounter(self.n_test))
        state = self.empty_state()
        idle = np.ones(self.P, bool)
        while True:
            # refill idle slots
            if queue and idle.any():
                new = np.full(self.P, -1, np.int32)
                mask = np.zeros(self.P, bool)
                for i in np.flatnonzero(idle):
                    if not queue:
                        break
                    new[i], mask[i] = queue.pop(), True
                state = self.refill(state, jnp.asarray(mask), jnp.asarray(new))
                idle &= ~mask
            if idle.all():
                break
            state = self.run_epochs(state, epochs_per_sync)
            done = np.asarray(state.done) & ~idle
            if done.any():
                ids = np.asarray(state.run_id)[done]
                fit_epoch = np.asarray(state.fit_epoch)[done]
                epochs = np.asarray(state.epoch)[done]
                div = np.asarray(state.diverged)[done]
                packed = np.asarray(self.functions_on_test(state.params))[done]
                fitted = (fit_epoch >= 0) & ~div
                res.counter.add_packed(packed[fitted], half=ids[fitted] % 2)
                for r, f, fe, ep, d in zip(ids, fitted, fit_epoch, epochs, div):
                    res.records[int(r)] = (bool(f), int(fe), int(ep), bool(d))
                idle |= done
                if progress is not None:
                    progress(int(done.sum()), int(fitted.sum()))
                if on_sync is not None:
                    on_sync(res)
        return res
