"""Experiment configuration: TOML files, validated field by field.

Every section is a dataclass whose fields carry their constraints; ``load_config`` merges a
TOML file (or the embedded default) with ``--set key=value`` overrides and raises
``ConfigError`` naming the dotted field and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config field is missing, unknown, or has a value outside what it accepts."""


def _spec(default, *, choices=None, min=None, max=None, help="", default_factory=None,
          allow_empty=False, exclusive_min=False, why=""):
    meta = {"choices": choices, "min": min, "max": max, "help": help, "allow_empty": allow_empty,
            "exclusive_min": exclusive_min, "why": why}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad", "rmsprop")

# Upper bounds on counts and sizes.  Each is far beyond any study the package is meant for (the
# paper's largest: 10^8 random-init samples, 10^5-10^6 SGD runs, widths 1024, |S| <= 10^4) and
# exists so that a typo such as n_runs = 10**12 gets one clear error instead of hours of work or
# memory in proportion to it (the run lists, per-run records and chunk bookkeeping scale with
# the totals).
MAX_REJECTION_SAMPLES = 10**11  # ~11 days at the measured 10^5 samples/s on 2 CPU cores
MAX_SGD_RUNS = 10**7  # ~3 h at ~10^3 runs/s; one record per run is kept and written
MAX_EPOCHS = 10**6
MAX_CHUNK = 1 << 24  # networks (or slots) per batch
MAX_REJECTION_CHUNKS = 10**7  # n_samples / chunk_size: one done-flag per chunk is kept
MAX_EXAMPLES = 10**6  # |S|, |E|, batch size (MNIST/CIFAR splits have <= 6 * 10^4)
MAX_WIDTH = 1 << 16
MAX_GP_FUNCTIONS = 10**6  # one orthant probability (an EP fit) per function
MIN_MC_SAMPLES = 1000  # Monte-Carlo kernel: relative s.e. of K_xx' <= sqrt(2 / n) = 4.5 %
MAX_MC_SAMPLES = 10**9
MAX_NUTS_CHAINS = 1024
MAX_NUTS_DRAWS = 10**7
MAX_SEED = 2**63 - 1  # jax.random.key takes a signed 64-bit seed
GP_BOOLEAN_MAX_N = 12  # the GP's kernel covers all 2^n inputs (2^12: 128 MB, EP O(N^3))
EXACT_MAX_DIM = 20  # bayes_sgd.gp.EXACT_MAX_DIM (scipy's Genz QMC), here without importing JAX

LOSSES = ("bce", "mse")


@dataclass
class TaskConfig:
    kind: str = _spec("boolean", choices=("boolean", "image"))
    # Boolean tasks
    n: int = _spec(7, min=1, max=16, help="number of input bits",
                   why="every input is enumerated and each sampled function is a truth table of "
                       "2^n bits, stored, counted and compared whole; 2^16 = 65,536 bits is the "
                       "most the package handles in bounded time and memory")
    target: str = _spec("and4", help="truth table of 2^n '0'/'1', 'random:SEED' or a preset name")
    train_size: int = _spec(32, min=1, max=MAX_EXAMPLES)
    train_seed: int = _spec(0, min=0, max=MAX_SEED, why="a signed 64-bit seed")
    train_mask: str = _spec("", help="2^n '0'/'1', 1 = in S; fixes |S|: train_size, if set, "
                            "must equal its number of 1s (unset, it takes that number)")
    encoding: str = _spec("binary", choices=("binary", "pm1"),
                          help="Boolean inputs: bits b in {0, 1}, or 2b - 1 in {-1, +1} (the "
                               "authors' --centering); the truth-table order is the same")
    drop_zero_input: bool = _spec(False, help="leave the all-zero input out of S and E (the "
                                  "authors' rule for sigma_b = 0 with 0/1 inputs): |S| + |E| = "
                                  "2^n - 1")
    # Image tasks
    dataset: str = _spec("digits", choices=("digits", "mnist", "fashion-mnist", "cifar10"))
    data_path: str = _spec("", help="folder of the dataset files ('' = default location)")
    split: str = _spec("test", choices=("train", "test"))
    test_split: str = _spec("", choices=("", "train", "test"),
                            help="split E is drawn from ('' = the same split as S, disjoint)")
    binarize: str = _spec("threshold:5", help="threshold:T (label >= T -> 1) or parity")
    test_size: int = _spec(100, min=1, max=MAX_EXAMPLES)
    scale: str = _spec("unit", choices=("unit", "standardize"))
    # Label corruption (Boolean and image tasks): round(corrupt_fraction * |S|) labels of S,
    # chosen at random; E keeps the true labels.  "flip" inverts each chosen label (fraction 1
    # = the complement labels, as simple as the target: label inversion, not random labels);
    # "redraw" replaces each by a fair coin (fraction 1 = fully random labels, about half of
    # them agreeing with the truth by chance).  The default stays "flip", what corrupt_fraction
    # meant before the field existed, so that a results folder written then still matches its
    # config; random-label experiments (reproduce random_labels_n7) set "redraw".
    corrupt_fraction: float = _spec(0.0, min=0.0, max=1.0,
                                    help="fraction of S's labels corrupted (see corrupt_mode)")
    corrupt_mode: str = _spec("flip", choices=("flip", "redraw"),
                              help="flip: chosen labels inverted (fraction 1 = label inversion); "
                                   "redraw: chosen labels drawn uniformly (fraction 1 = random labels)")


@dataclass
class ModelConfig:
    arch: str = _spec("fcn", choices=("fcn", "cnn"))
    widths: list[int] = _spec(None, default_factory=lambda: [40, 40], min=1, max=MAX_WIDTH)
    activation: str = _spec("relu", choices=("relu", "tanh", "erf", "linear"))
    sigma_w: float = _spec(1.0, min=0.0)
    sigma_b: float = _spec(1.0, min=0.0)
    # CNN
    filters: list[int] = _spec(None, default_factory=lambda: [32, 32, 32, 32], min=1,
                               max=MAX_WIDTH)
    kernel_sizes: list[int] = _spec(None, default_factory=lambda: [5, 2, 5, 2], min=1)
    strides: list[int] = _spec(None, default_factory=lambda: [1, 1, 1, 1], min=1)
    padding: list[str] = _spec(None, default_factory=lambda: ["VALID", "SAME", "VALID", "SAME"],
                               choices=("VALID", "SAME"))
    pooling: str = _spec("none", choices=("none", "max", "avg"))
    dense_widths: list[int] = _spec(None, default_factory=list, min=1, max=MAX_WIDTH, allow_empty=True,
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
    n_samples: int = _spec(2_000_000, min=1, max=MAX_REJECTION_SAMPLES)
    chunk_size: int = _spec(0, min=0, max=MAX_CHUNK, help="networks per batch; 0 = choose from memory")
    record_prior: bool = _spec(False, help="also count P(f) on all 2^n inputs")
    output_draws: int = _spec(1, min=1, max=MAX_CHUNK, help="output layers per hidden-layer draw; > 1: samples "
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
        if self.chunk_size and (n_chunks := -(-self.n_samples // self.chunk_size)) > MAX_REJECTION_CHUNKS:
            raise ConfigError(
                f"samplers.rejection.chunk_size: expected at most {_fmt(MAX_REJECTION_CHUNKS)} chunks "
                f"of n_samples = {self.n_samples:,} (a done-flag is kept per chunk), got "
                f"{n_chunks:,} chunks of {self.chunk_size}; use a larger chunk_size or 0 (automatic)")


@dataclass
class SGDConfig(SamplerSection):
    enabled: bool = _spec(True)
    n_runs: int = _spec(2000, min=1, max=MAX_SGD_RUNS)
    optimizer: str = _spec("sgd", choices=OPTIMIZERS)
    lr: float = _spec(0.1, min=0.0)
    momentum: float = _spec(0.9, min=0.0, max=1.0)
    batch_size: int = _spec(8, min=1, max=MAX_EXAMPLES)
    loss: str = _spec("bce", choices=LOSSES)
    max_epochs: int = _spec(2000, min=1, max=MAX_EPOCHS)
    epochs_after_fit: int = _spec(0, min=0, max=MAX_EPOCHS)
    slots: int = _spec(0, min=0, max=MAX_CHUNK, help="networks trained at once; 0 = choose from the task")
    sgld_temperature: float = _spec(0.0, min=0.0, help="> 0 adds Langevin noise (SGLD)")


@dataclass
class GPConfig(SamplerSection):
    counts: ClassVar[bool] = False  # scores the functions the counting samplers found
    enabled: bool = _spec(False)
    method: str = _spec("ep", choices=("ep", "exact", "minimax-tilting"))
    mode: str = _spec("joint", choices=("joint", "conditional"))
    kernel: str = _spec("analytic", choices=("analytic", "monte-carlo"))
    mc_samples: int = _spec(20000, min=MIN_MC_SAMPLES, max=MAX_MC_SAMPLES,
                            help="networks in the Monte-Carlo kernel",
                            why=f"the Monte-Carlo kernel's entries have relative standard error "
                                f"up to sqrt(2 / mc_samples): 4.5 % at {MIN_MC_SAMPLES}; fewer "
                                f"networks than inputs make it singular")
    tilting_samples: int = _spec(10000, min=10, max=MAX_MC_SAMPLES)
    max_functions: int = _spec(2000, min=1, max=MAX_GP_FUNCTIONS, help="most frequent functions to score")
    prior_min_count: int = _spec(10, min=1, help="with rejection.record_prior (Boolean): GP "
                                 "P(f) of prior functions seen at least this often")

    def validate(self, cfg: "Config") -> None:
        if not self.enabled:
            return
        t = cfg.task
        if t.kind == "boolean" and t.n > GP_BOOLEAN_MAX_N:
            raise ConfigError(
                f"samplers.gp.enabled: the GP's kernel covers all 2^n inputs of a Boolean task "
                f"(2^{t.n} x 2^{t.n} here) and EP costs O(2^(3n)) per function; "
                f"expected false with task.n > {GP_BOOLEAN_MAX_N}, or task.n <= {GP_BOOLEAN_MAX_N}")
        if self.method == "exact":
            # the orthant's dimension: the inputs of S and E (joint) or of E (conditional); for
            # images, before duplicate inputs are merged
            if t.kind == "boolean":
                n_in = 2**t.n - t.drop_zero_input
                n_e = n_in - (t.train_mask.count("1") if t.train_mask else t.train_size)
            else:
                n_in, n_e = t.train_size + t.test_size, t.test_size
            dim = n_in if self.mode == "joint" else n_e
            if dim > EXACT_MAX_DIM:
                raise ConfigError(
                    f"samplers.gp.method: expected 'ep' or 'minimax-tilting' here: 'exact' handles "
                    f"at most {EXACT_MAX_DIM} dimensions and the {self.mode} mode needs {dim} "
                    f"(the inputs of {'S and E' if self.mode == 'joint' else 'E'})")


@dataclass
class NUTSConfig(SamplerSection):
    enabled: bool = _spec(False)
    beta: float = _spec(30.0, min=0.0, exclusive_min=True,
                        help="likelihood temperature: Bernoulli(y | logits = beta f)")
    num_chains: int = _spec(4, min=1, max=MAX_NUTS_CHAINS)
    num_warmup: int = _spec(500, min=1, max=MAX_NUTS_DRAWS)
    num_samples: int = _spec(1000, min=1, max=MAX_NUTS_DRAWS)
    thin: int = _spec(1, min=1, max=MAX_NUTS_DRAWS)

    def validate(self, cfg: "Config") -> None:
        if self.enabled and cfg.model.arch != "fcn":
            raise ConfigError(f"samplers.nuts.enabled: NUTS samples the weights of an FCN only; "
                              f"expected false with model.arch = {cfg.model.arch!r}")
        if self.enabled and self.thin > self.num_samples:
            raise ConfigError(f"samplers.nuts.thin: expected at most num_samples = "
                              f"{self.num_samples} (every thin-th draw is kept), got {self.thin}")


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
    name: str = _spec("boolean_n7", help="the run's name: results/<name> by default")
    seed: int = _spec(0, min=0, max=MAX_SEED, why="jax.random.key takes a signed 64-bit seed")
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
        one = _describe(inner, meta)
        noun = one.split(" in ")[0].split(" >")[0]  # 'an integer', 'a string', 'one of [...]'
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(
            noun, f"values ({noun})")
        return f"a list of {plural}{one[len(noun):]}"
    text = base.get(tp, str(tp))
    if meta.get("choices"):
        text = f"one of {list(meta['choices'])}"
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        text += f" in [{_fmt(lo)}, {_fmt(hi)}]"
    elif lo is not None:
        text += f" > {lo}" if meta.get("exclusive_min") else f" >= {lo}"
    return text


def _fmt(v) -> str:
    """Large bounds as powers (10^11 rather than 100000000000)."""
    if isinstance(v, int) and v >= 1 << 16:
        for base in (10, 2):
            k = round(math.log(v, base))
            if base**k == v:
                return f"{base}^{k}"
    return str(v)


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
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range
            raise bad() from None
        if not math.isfinite(value):  # nan, inf: no field takes them
            raise ConfigError(f"{path}: expected a finite number "
                              f"{_describe(tp, meta).removeprefix('a number').strip()}, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise bad()
    if meta.get("choices") and value not in meta["choices"]:
        raise bad()
    if meta.get("min") is not None and (value < meta["min"] or (
            meta.get("exclusive_min") and value == meta["min"])):
        raise ConfigError(f"{bad()} ({meta['why']})") if meta.get("why") else bad()
    if meta.get("max") is not None and value > meta["max"]:
        e = bad()
        if meta.get("why"):
            e = ConfigError(f"{e} ({meta['why']})")
        elif isinstance(meta["max"], int) and meta["max"] >= 1000:
            e = ConfigError(f"{e} (an upper bound far beyond any study, against typos that would "
                            f"take hours or memory in proportion; see bayes_sgd/config.py)")
        raise e
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
        if not all(parts):
            raise ConfigError(f"--set {item!r}: expected a dotted field name before '=', e.g. "
                              "samplers.sgd.lr=0.01")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = _Raw(text.strip())
    return data


def default_config_path() -> Path:
    return Path(str(resources.files("bayes_sgd") / "experiments" / "boolean_n7.toml"))


def load_config(path: str | Path | Mapping | None = None,
                overrides: list[str] | None = None) -> Config:
    """Read a TOML config (the embedded n=7 default when ``path`` is None; a mapping is taken as
    the config's contents) and validate it."""
    if overrides is not None and (isinstance(overrides, (str, bytes))
                                  or not all(isinstance(o, str) for o in overrides)):
        raise ConfigError(f"overrides: expected a list of 'key=value' strings, got {overrides!r}")
    if isinstance(path, Mapping):
        return config_from_dict(apply_overrides(_plain(path), overrides or []))
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"config: expected a path to a TOML file or a mapping of fields, got "
                          f"{type(path).__name__} {path!r:.60}")
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config: {path} is a directory; expected a TOML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {path} is not UTF-8 text (byte {e.start}); TOML files "
                          "must be UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config: {path} cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    return config_from_dict(apply_overrides(data, overrides or []))


def _plain(data: Mapping) -> dict:
    """A mutable copy of nested mappings (overrides write into it; the caller's stays as is)."""
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def config_from_dict(data: Mapping) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a table (mapping) of fields, got "
                          f"{type(data).__name__} {data!r:.60}")
    data = _plain(data)
    task = data.get("task")
    # whether train_size was given (file, mapping or --set) rather than left at its default:
    # only a given size can contradict a train_mask (the default 32 says nothing about S)
    size_given = isinstance(task, dict) and "train_size" in task
    cfg = _build(Config, data, "")
    _cross_validate(cfg, size_given=size_given)
    return cfg


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _cross_validate(cfg: Config, *, size_given: bool = False) -> None:
    if not _NAME.match(cfg.name):
        raise ConfigError(f"name: expected 1-100 letters, digits, '.', '_' or '-' (not first), "
                          f"a folder name under results/, got {cfg.name!r}")
    _validate_cnn(cfg)
    if cfg.task.kind == "image":
        from .tasks import parse_binarize

        try:
            parse_binarize(cfg.task.binarize)
        except ValueError as e:  # "binarize: ..." about the argument; here it is a config field
            raise ConfigError(f"task.{e}") from None
    if cfg.task.kind == "boolean":
        _validate_boolean_task(cfg, size_given=size_given)
    sections = cfg.samplers.sections()
    for section in sections.values():
        section.validate(cfg)
    if not any(sec.enabled for sec in sections.values() if sec.counts):
        names = ", ".join(n for n, sec in sections.items() if sec.counts)
        raise ConfigError(f"samplers: expected at least one of {names} enabled")
    _validate_boolean_inputs(cfg)
    _validate_cnn_fits(cfg)


def _validate_cnn(cfg: Config) -> None:
    """The CNN's layer lists against each other and against the task."""
    m = cfg.model
    if m.arch != "cnn":
        return
    n_layers = len(m.filters)
    for name in ("kernel_sizes", "strides", "padding"):
        if len(getattr(m, name)) != n_layers:
            raise ConfigError(
                f"model.{name}: expected {n_layers} entries (one per model.filters), "
                f"got {len(getattr(m, name))}")
    if cfg.task.kind != "image":
        raise ConfigError("model.arch: 'cnn' needs task.kind = 'image'")


def _validate_cnn_fits(cfg: Config) -> None:
    """Every VALID kernel of a CNN against the feature map it receives from the dataset's
    images (checked last: the other fields' errors come first, this one names the dataset)."""
    m = cfg.model
    if m.arch != "cnn":
        return
    from ._conv import feature_shapes
    from .datasets import IMAGE_SHAPES

    try:
        feature_shapes(IMAGE_SHAPES[cfg.task.dataset], m.filters, m.kernel_sizes, m.strides,
                       m.padding)
    except ValueError as e:  # "kernel_sizes[i]: ..." about the argument
        raise ConfigError(f"model.{e}, the images of task.dataset = {cfg.task.dataset!r}") from None


def _validate_boolean_task(cfg: Config, *, size_given: bool = False) -> None:
    # the task's own parsers, so a bad truth table or mask fails here, before any folder
    from .tasks import parse_target, train_mask

    t = cfg.task
    try:
        parse_target(t.target, t.n)
        in_s = train_mask(t.n, train_size=t.train_size, seed=t.train_seed,
                          mask=t.train_mask or None, drop_zero_input=t.drop_zero_input)
    except ValueError as e:  # "arg: ..." about the function's argument -> "task.<field>: ..."
        raise (task_field_error(e) or ConfigError(str(e))) from None
    if t.train_mask:
        # the mask fixes S; a size given next to it that disagrees would otherwise be ignored
        # silently (a run of another |S| than asked for)
        n_s = int(in_s.sum())
        if size_given and t.train_size != n_s:
            raise ConfigError(
                f"task.train_size: expected {n_s}, the number of inputs in task.train_mask (the "
                f"mask fixes S), or train_size left unset; got {t.train_size}. Set one of "
                f"task.train_size and task.train_mask, or both consistently")
        # the resolved config (manifest.json) states the |S| it ran with
        t.train_size = n_s
    gp = cfg.samplers.gp
    if (gp.enabled and gp.mode == "conditional" and cfg.model.sigma_b == 0
            and t.encoding == "binary" and in_s[0]):
        # phi(0) = 0 for every activation: the all-zero input's output is exactly 0
        raise ConfigError("samplers.gp.mode: 'conditional' fits EP to S, whose all-zero input "
                          "has zero variance with model.sigma_b = 0; expected 'joint' "
                          "(which handles it) or sigma_b > 0")


# argument of the task builders -> TaskConfig field
_TASK_ARGS = {"path": "data_path", "seed": "train_seed", "mask": "train_mask", "target": "target",
              "encoding": "encoding", "dataset": "dataset", "split": "split",
              "test_split": "test_split", "binarize": "binarize", "train_size": "train_size",
              "test_size": "test_size", "corrupt_fraction": "corrupt_fraction",
              "corrupt_mode": "corrupt_mode", "scale": "scale"}


def task_field_error(e: ValueError) -> ConfigError | None:
    """A task builder's ``"arg: ..."`` error (about its own argument) as ``"task.<field>: ..."``;
    None when it names no config field (the loaders' file errors, which name their files)."""
    arg, sep, rest = str(e).partition(": ")
    if not sep or arg not in _TASK_ARGS or type(e) is not ValueError:
        return None
    return ConfigError(f"task.{_TASK_ARGS[arg]}: {rest}")


def _validate_boolean_inputs(cfg: Config) -> None:
    """``task.encoding`` and ``task.drop_zero_input`` against the rest of the config."""
    t, s = cfg.task, cfg.samplers
    if t.kind != "boolean":
        if t.encoding != "binary":
            raise ConfigError(f"task.encoding: expected 'binary' (the default) for task.kind = "
                              f"{t.kind!r} (Boolean tasks only), got {t.encoding!r}")
        if t.drop_zero_input:
            raise ConfigError(f"task.drop_zero_input: expected false for task.kind = {t.kind!r} "
                              "(Boolean tasks only), got true")
        return
    if t.drop_zero_input and t.encoding != "binary":
        raise ConfigError(f"task.drop_zero_input: expected false with task.encoding = "
                          f"{t.encoding!r} (no input is all-zero; the authors drop it only for "
                          "0/1 inputs), got true")
    if t.drop_zero_input and s.rejection.enabled and s.rejection.record_prior:
        raise ConfigError("samplers.rejection.record_prior: expected false with "
                          "task.drop_zero_input = true (the prior is counted over all 2^n "
                          "inputs), got true")
