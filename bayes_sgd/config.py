"""Experiment configuration: TOML files, validated field by field.

Every section is a dataclass whose fields carry their constraints; ``load_config`` merges a
TOML file (or the embedded default) with ``--set key=value`` overrides and raises
``ConfigError`` naming the dotted field and what was expected.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config field is missing, unknown, or has a value outside what it accepts."""


def _spec(default, *, choices=None, min=None, max=None, help="", default_factory=None,
          allow_empty=False, exclusive_min=False):
    meta = {"choices": choices, "min": min, "max": max, "help": help, "allow_empty": allow_empty,
            "exclusive_min": exclusive_min}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad", "rmsprop")
LOSSES = ("bce", "mse")


@dataclass
class TaskConfig:
    kind: str = _spec("boolean", choices=("boolean", "image"))
    # Boolean tasks
    n: int = _spec(7, min=1, max=20, help="number of input bits")
    target: str = _spec("and4", help="truth table of 2^n '0'/'1', 'random:SEED' or a preset name")
    train_size: int = _spec(32, min=1)
    train_seed: int = _spec(0, min=0)
    train_mask: str = _spec("", help="2^n '0'/'1', 1 = in S; overrides train_size")
    # Image tasks
    dataset: str = _spec("digits", choices=("digits", "mnist", "fashion-mnist", "cifar10"))
    data_path: str = _spec("", help="folder of the dataset files ('' = default location)")
    split: str = _spec("test", choices=("train", "test"))
    test_split: str = _spec("", choices=("", "train", "test"),
                            help="split E is drawn from ('' = the same split as S, disjoint)")
    binarize: str = _spec("threshold:5", help="threshold:T (label >= T -> 1) or parity")
    test_size: int = _spec(100, min=1)
    corrupt_fraction: float = _spec(0.0, min=0.0, max=1.0)
    scale: str = _spec("unit", choices=("unit", "standardize"))


@dataclass
class ModelConfig:
    arch: str = _spec("fcn", choices=("fcn", "cnn"))
    widths: list[int] = _spec(None, default_factory=lambda: [40, 40], min=1)
    activation: str = _spec("relu", choices=("relu", "tanh", "erf", "linear"))
    sigma_w: float = _spec(1.0, min=0.0)
    sigma_b: float = _spec(1.0, min=0.0)
    # CNN
    filters: list[int] = _spec(None, default_factory=lambda: [32, 32, 32, 32], min=1)
    kernel_sizes: list[int] = _spec(None, default_factory=lambda: [5, 2, 5, 2], min=1)
    strides: list[int] = _spec(None, default_factory=lambda: [1, 1, 1, 1], min=1)
    padding: list[str] = _spec(None, default_factory=lambda: ["VALID", "SAME", "VALID", "SAME"],
                               choices=("VALID", "SAME"))
    pooling: str = _spec("none", choices=("none", "max", "avg"))
    dense_widths: list[int] = _spec(None, default_factory=list, min=1, allow_empty=True,
                                    help="CNN hidden dense layers after the conv stack; [] = "
                                         "linear readout (the paper's CNN)")


class SamplerSection:
    """Base of a sampler's config section: ``counts`` (counts functions, as opposed to scoring
    those the counting samplers found) and ``validate(cfg)``, its cross-field checks (run once,
    by ``config_from_dict``, before any work)."""

    counts: ClassVar[bool] = True

    def validate(self, cfg: "Config") -> None:
        pass


@dataclass
class RejectionConfig(SamplerSection):
    enabled: bool = _spec(True)
    n_samples: int = _spec(2_000_000, min=1)
    chunk_size: int = _spec(0, min=0, help="networks per batch; 0 = choose from memory")
    record_prior: bool = _spec(False, help="also count P(f) on all 2^n inputs")
    output_draws: int = _spec(1, min=1, help="output layers per hidden-layer draw; > 1: samples "
                              "not independent (ESS reported), FCN only, without record_prior")

    def validate(self, cfg: "Config") -> None:
        k, arch = self.output_draws, cfg.model.arch
        if k > 1:
            if arch != "fcn":
                raise ConfigError(f"samplers.rejection.output_draws: expected 1 for model.arch = "
                                  f"{arch!r} (several output layers per hidden draw: FCN only), got {k}")
            if self.record_prior:
                raise ConfigError(f"samplers.rejection.output_draws: expected 1 with record_prior = "
                                  f"true (the prior's whole tables repeat within a hidden draw), got {k}")
            if self.chunk_size % k:
                raise ConfigError(f"samplers.rejection.chunk_size: expected a multiple of "
                                  f"output_draws = {k} (or 0), got {self.chunk_size}")


@dataclass
class SGDConfig(SamplerSection):
    enabled: bool = _spec(True)
    n_runs: int = _spec(2000, min=1)
    optimizer: str = _spec("sgd", choices=OPTIMIZERS)
    lr: float = _spec(0.1, min=0.0)
    momentum: float = _spec(0.9, min=0.0, max=1.0)
    batch_size: int = _spec(8, min=1)
    loss: str = _spec("bce", choices=LOSSES)
    max_epochs: int = _spec(2000, min=1)
    epochs_after_fit: int = _spec(0, min=0)
    slots: int = _spec(0, min=0, help="networks trained at once; 0 = choose from the task")
    sgld_temperature: float = _spec(0.0, min=0.0, help="> 0 adds Langevin noise (SGLD)")


@dataclass
class GPConfig(SamplerSection):
    counts: ClassVar[bool] = False  # scores the functions the counting samplers found
    enabled: bool = _spec(False)
    method: str = _spec("ep", choices=("ep", "exact", "minimax-tilting"))
    mode: str = _spec("joint", choices=("joint", "conditional"))
    kernel: str = _spec("analytic", choices=("analytic", "monte-carlo"))
    mc_samples: int = _spec(20000, min=1)
    tilting_samples: int = _spec(10000, min=10)
    max_functions: int = _spec(2000, min=1, help="most frequent functions to score")
    prior_min_count: int = _spec(10, min=1, help="with rejection.record_prior (Boolean): GP "
                                 "P(f) of prior functions seen at least this often")


@dataclass
class NUTSConfig(SamplerSection):
    enabled: bool = _spec(False)
    beta: float = _spec(30.0, min=0.0, exclusive_min=True,
                        help="likelihood temperature: Bernoulli(y | logits = beta f)")
    num_chains: int = _spec(4, min=1)
    num_warmup: int = _spec(500, min=1)
    num_samples: int = _spec(1000, min=1)
    thin: int = _spec(1, min=1)

    def validate(self, cfg: "Config") -> None:
        if self.enabled and cfg.model.arch != "fcn":
            raise ConfigError(f"samplers.nuts.enabled: NUTS samples FCN weights; expected false "
                              f"with model.arch = {cfg.model.arch!r}")


@dataclass
class SamplersConfig:
    """One section per sampler: the four built in here, then those registered with
    ``register_sampler_section`` (``samplers_config_class`` builds the class with them)."""

    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    sgd: SGDConfig = field(default_factory=SGDConfig)
    gp: GPConfig = field(default_factory=GPConfig)
    nuts: NUTSConfig = field(default_factory=NUTSConfig)

    def sections(self) -> dict[str, SamplerSection]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_EXTRA_SECTIONS: dict[str, type] = {}
_SECTIONS_CLASS: list = [SamplersConfig, ()]  # (class, the extra sections it was built for)


def register_sampler_section(name: str, cls: type) -> None:
    """Add ``samplers.<name>`` (a ``SamplerSection`` dataclass with an ``enabled`` field)."""
    if name in {f.name for f in dataclasses.fields(SamplersConfig)} or \
            _EXTRA_SECTIONS.get(name, cls) is not cls:
        raise ValueError(f"register_sampler_section: {name!r} is taken")
    _EXTRA_SECTIONS[name] = cls


def unregister_sampler_section(name: str) -> None:
    _EXTRA_SECTIONS.pop(name, None)


def sampler_names(*, counts: bool | None = None) -> tuple[str, ...]:
    """Sampler sections, the counting ones first then the scorers (registration order within
    each), or only those with ``counts`` as given: the order of the agreement pairs."""
    secs = {f.name: f.type for f in dataclasses.fields(SamplersConfig)}
    secs = {n: (c if isinstance(c, type) else get_type_hints(SamplersConfig)[n])
            for n, c in secs.items()} | _EXTRA_SECTIONS
    names = [n for n, c in secs.items() if c.counts] + [n for n, c in secs.items() if not c.counts]
    return tuple(n for n in names if counts is None or secs[n].counts == counts)


def samplers_config_class() -> type:
    """``SamplersConfig`` extended by the registered sections."""
    key = tuple(_EXTRA_SECTIONS.items())
    if _SECTIONS_CLASS[1] != key:
        _SECTIONS_CLASS[:] = [dataclasses.make_dataclass(
            "SamplersConfig", [(n, c, field(default_factory=c)) for n, c in key],
            bases=(SamplersConfig,)) if key else SamplersConfig, key]
    return _SECTIONS_CLASS[0]


@dataclass
class AnalysisConfig:
    min_counts: list[int] = _spec(None, default_factory=lambda: [2, 5, 10], min=1)
    plot: bool = _spec(True)


@dataclass
class Config:
    name: str = _spec("boolean_n7")
    seed: int = _spec(0, min=0)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    samplers: SamplersConfig = field(default_factory=lambda: samplers_config_class()())
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in _EXTRA_SECTIONS:  # a registered sampler's section only when enabled, so
            if not d["samplers"].get(name, {}).get("enabled"):  # other configs keep their dict
                d["samplers"].pop(name, None)
        return d


# ---- validation ----------------------------------------------------------------------------

def _describe(tp, meta) -> str:
    base = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    origin = get_origin(tp)
    if origin is list:
        (inner,) = get_args(tp)
        return f"a list of {_describe(inner, meta)}s".replace("an integers", "integers")
    text = base.get(tp, str(tp))
    if meta.get("choices"):
        text = f"one of {list(meta['choices'])}"
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        text += f" in [{lo}, {hi}]"
    elif lo is not None:
        text += f" > {lo}" if meta.get("exclusive_min") else f" >= {lo}"
    return text


def _coerce_scalar(path, tp, meta, value):
    def bad():
        return ConfigError(f"{path}: expected {_describe(tp, meta)}, got {value!r}")

    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if value != value:
            raise bad()
    elif tp is str:
        if not isinstance(value, str):
            raise bad()
    if meta.get("choices") and value not in meta["choices"]:
        raise bad()
    if meta.get("min") is not None and (value < meta["min"] or (
            meta.get("exclusive_min") and value == meta["min"])):
        raise bad()
    if meta.get("max") is not None and value > meta["max"]:
        raise bad()
    return value


def _build(cls, data: dict, prefix: str):
    if isinstance(data, _Raw):
        data = data.parsed()
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"{prefix}{key}: unknown field; expected one of {sorted(names)}")
    kwargs = {}
    for name, f in names.items():
        path = f"{prefix}{name}"
        tp = hints[name]
        if tp is SamplersConfig:
            tp = samplers_config_class()
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data.get(name, {}), path + ".")
            continue
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, _Raw):
            value = value.text if tp is str and not value.quoted else value.parsed()
        if get_origin(tp) is list:
            (inner,) = get_args(tp)
            if not isinstance(value, list) or not (value or f.metadata.get("allow_empty")):
                raise ConfigError(f"{path}: expected {_describe(tp, f.metadata)}, got {value!r}")
            value = [_coerce_scalar(f"{path}[{i}]", inner, f.metadata, v)
                     for i, v in enumerate(value)]
        else:
            value = _coerce_scalar(path, tp, f.metadata, value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class _Raw:
    """A ``--set`` value before its field's type is known: a string field takes the text as it
    is (so ``task.target=1000`` stays the truth table '1000'), any other field its TOML value."""

    text: str

    @property
    def quoted(self) -> bool:
        return self.text[:1] in ("'", '"')

    def parsed(self):
        try:
            return tomllib.loads(f"v = {self.text}")["v"]
        except tomllib.TOMLDecodeError:
            return self.text  # a bare word is a string


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. samplers.sgd.lr=0.01")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = _Raw(text.strip())
    return data


def default_config_path() -> Path:
    return Path(str(resources.files("bayes_sgd") / "experiments" / "boolean_n7.toml"))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML config (the embedded n=7 default when ``path`` is None) and validate it."""
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    return config_from_dict(apply_overrides(data, overrides or []))


def config_from_dict(data: dict) -> Config:
    cfg = _build(Config, data, "")
    _cross_validate(cfg)
    return cfg


def _cross_validate(cfg: Config) -> None:
    m = cfg.model
    if m.arch == "cnn":
        n_layers = len(m.filters)
        for name in ("kernel_sizes", "strides", "padding"):
            if len(getattr(m, name)) != n_layers:
                raise ConfigError(
                    f"model.{name}: expected {n_layers} entries (one per model.filters), "
                    f"got {len(getattr(m, name))}")
        if cfg.task.kind != "image":
            raise ConfigError("model.arch: 'cnn' needs task.kind = 'image'")
    if cfg.task.kind == "boolean":
        # the task's own parsers, so a bad truth table or mask fails here, before any folder
        from .tasks import parse_target, train_mask

        try:
            parse_target(cfg.task.target, cfg.task.n)
            train_mask(cfg.task.n, train_size=cfg.task.train_size, seed=cfg.task.train_seed,
                       mask=cfg.task.train_mask or None)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    sections = cfg.samplers.sections()
    for section in sections.values():
        section.validate(cfg)
    if not any(sec.enabled for sec in sections.values() if sec.counts):
        names = ", ".join(n for n, sec in sections.items() if sec.counts)
        raise ConfigError(f"samplers: expected at least one of {names} enabled")
