"""What every sampler is to ``run_experiment``: a ``Sampler`` in a registry.

A sampler is one class with

* ``name`` (its config section ``samplers.<name>`` and its rows' ``sampler`` column),
  ``stream`` (its fixed RNG stream id, so enabling one sampler never changes another's random
  numbers) and ``config`` (its ``SamplerSection`` dataclass, which says whether it counts
  functions or scores those the counting samplers found, and holds ``validate(cfg)``);
* ``resume(ctx, arrays)``: its state from the arrays of its checkpoint (None: a fresh start),
  raising ``ValueError`` when they are not this run's; ``state_arrays(state)`` the reverse;
* ``run(ctx, state) -> SamplerOutput``: the work, saving checkpoints with ``ctx.save``;
  a sampler that can send work to a Dask scheduler reads ``ctx.scheduler``.

``register(sampler)`` adds it (and its config section).  ``run_experiment`` runs the enabled
counting samplers in registration order, then the scorers.  This module does not import JAX.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import (SamplersConfig, register_sampler_section, unregister_sampler_section)
from ..interrupts import Interrupts
from ..results_folder import Checkpoint, checkpoint_seconds

__all__ = ["REGISTRY", "STREAM", "RunContext", "Sampler", "SamplerOutput", "counting_names",
           "enabled_samplers",
           "register", "unregister"]

# Fixed stream ids so that enabling one sampler never changes another's random numbers.
STREAM = {"rejection": 1, "sgd": 2, "nuts": 3, "gp": 4}


@dataclass
class SamplerOutput:
    """What a sampler hands back: function-table rows, its ``summary.json`` section, its final
    state, other tables (``{"runs.parquet": frame}``) and counters whose whole table replaces
    that sampler's rows in ``functions.parquet`` (streamed: memory stays bounded)."""

    frames: list
    summary: dict
    state: Any = None
    tables: dict = field(default_factory=dict)
    full_tables: dict = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a sampler's ``run`` may use; ``frame`` and ``outputs`` hold the function
    table and outputs of the samplers that ran before (scorers read them)."""

    cfg: Any
    task: Any
    model: Any
    out: Path
    interrupts: Interrupts
    show: bool = False
    scheduler: Any = None
    frame: Any = None
    outputs: dict = field(default_factory=dict)
    saved: set = field(default_factory=set)  # samplers that wrote a checkpoint this session

    def checkpoint(self, name: str) -> Checkpoint:
        return Checkpoint(self.out / "checkpoints" / f"{name}.npz")

    def save(self, sampler: "Sampler", state) -> None:
        """Write ``sampler``'s checkpoint; signals wait until it is whole."""
        with self.interrupts.critical():
            self.checkpoint(sampler.name).save(**sampler.state_arrays(state))
            self.saved.add(sampler.name)

    def every(self):
        """A callable that says True once per checkpoint interval."""
        every, last = checkpoint_seconds(), [time.monotonic()]

        def due() -> bool:
            if time.monotonic() - last[0] > every:
                last[0] = time.monotonic()
                return True
            return False
        return due

    def progress(self, total: int, initial: int, desc: str, unit: str, **kw):
        from ..progress import progress as tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not self.show,
                    dynamic_ncols=True, **kw)


class Sampler:
    """Base class of the samplers (see the module docstring)."""

    name: ClassVar[str]
    stream: ClassVar[int]
    config: ClassVar[type]

    @property
    def counts(self) -> bool:
        return self.config.counts

    def settings(self, cfg):
        return getattr(cfg.samplers, self.name)

    def validate(self, cfg) -> None:
        self.settings(cfg).validate(cfg)

    def resume(self, ctx: RunContext, arrays: dict | None):
        return None

    def state_arrays(self, state) -> dict:
        return {}

    def load(self, ctx: RunContext):
        """``resume`` from the checkpoint; a damaged or foreign one is one line naming it."""
        ck = ctx.checkpoint(self.name)
        try:
            return self.resume(ctx, ck.load())
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise ck.damaged(f"does not belong to this run ({e})") from None

    def run(self, ctx: RunContext, state) -> SamplerOutput:
        raise NotImplementedError


REGISTRY: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    """Add a sampler; its config section ``samplers.<name>`` becomes valid."""
    if sampler.name in REGISTRY and type(REGISTRY[sampler.name]) is not type(sampler):
        raise ValueError(f"register: sampler {sampler.name!r} is taken")
    if sampler.stream in STREAM.values() and STREAM.get(sampler.name) != sampler.stream:
        raise ValueError(f"register: stream id {sampler.stream} of {sampler.name!r} is taken")
    if sampler.name not in {f.name for f in dataclasses.fields(SamplersConfig)}:
        register_sampler_section(sampler.name, sampler.config)
    STREAM[sampler.name] = sampler.stream
    REGISTRY[sampler.name] = sampler
    return sampler


def unregister(name: str) -> None:
    if REGISTRY.pop(name, None) is not None:
        unregister_sampler_section(name)
        STREAM.pop(name, None)


def counting_names() -> list[str]:
    """Names of the registered samplers that count functions (the GP scores theirs)."""
    return [n for n, s in REGISTRY.items() if s.counts]


def enabled_samplers(cfg) -> list[Sampler]:
    """The enabled samplers: counting ones first, then scorers, each in registration order."""
    on = [s for s in REGISTRY.values() if s.settings(cfg).enabled]
    return [s for s in on if s.counts] + [s for s in on if not s.counts]

