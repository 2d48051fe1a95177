"""Config loading, --set overrides and validation errors (each naming its dotted field), and
the CLI's error path."""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest

from bayes_sgd import cli
from bayes_sgd.config import (Config, ConfigError, config_from_dict, default_config_path,
                              load_config)
from bayes_sgd.tasks import build_task

from conftest import QUICK_CONFIG  # noqa: E402  (shared helper)


@pytest.mark.parametrize("path", [None, QUICK_CONFIG], ids=["default", "quick"])
def test_config_equals_the_toml_file(path):
    file = default_config_path() if path is None else Path(path)
    raw = tomllib.loads(file.read_text())
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    # every value present in the file is the loaded value, section by section
    for section in ("task", "model"):
        for k, v in raw[section].items():
            assert getattr(getattr(cfg, section), k) == v, (section, k)
    for sampler, fields in raw["samplers"].items():
        for k, v in fields.items():
            assert getattr(getattr(cfg.samplers, sampler), k) == v, (sampler, k)
    assert cfg.name == raw["name"] and cfg.seed == raw["seed"]
    assert cfg.analysis.min_counts == raw["analysis"]["min_counts"]
    # fields the file leaves out keep the dataclass defaults
    assert cfg.samplers.sgd.sgld_temperature == 0.0
    assert cfg.samplers.nuts.enabled is False
    assert cfg.analysis.plot is True
    assert load_config(file) == cfg


def test_default_config_is_the_papers_target_6():
    """The values the README documents for the default experiment: the authors' target 6 with
    its own S (PAPER_TARGETS_N7, from their analysis script) at the paper's SGD settings."""
    from bayes_sgd.reproduce import PAPER_S6_N7, PAPER_TARGETS_N7

    cfg = load_config()
    assert cfg.name == "boolean_n7"
    assert (cfg.task.n, cfg.task.target, cfg.task.train_mask) == (7, "0011" * 32, PAPER_S6_N7)
    assert PAPER_TARGETS_N7["t6"][:2] == (cfg.task.target, cfg.task.train_mask)
    assert cfg.task.train_mask.count("1") == 32
    assert (cfg.task.encoding, cfg.task.drop_zero_input) == ("binary", False)
    assert (cfg.model.widths, cfg.model.sigma_w, cfg.model.sigma_b) == ([40, 40], 1.0, 1.0)
    sgd = cfg.samplers.sgd
    assert (sgd.optimizer, sgd.lr, sgd.batch_size, sgd.loss) == ("sgd", 0.01, 8, "bce")
    assert (sgd.max_epochs, sgd.epochs_after_fit) == (5000, 0)
    gp = cfg.samplers.gp
    assert (gp.enabled, gp.method, gp.mode, gp.kernel) == (True, "ep", "joint", "analytic")
    assert gp.max_functions >= sgd.n_runs  # every function SGD finds is scored
    assert sgd.n_runs == 20_000
    rej = cfg.samplers.rejection
    assert (rej.enabled, rej.n_samples, rej.output_draws) == (True, 100_000_000, 64)
    # the same settings as the paper-scale file, but the sample counts
    paper = load_config(default_config_path().with_name("paper_targets_n7.toml"))
    assert cfg.model == paper.model
    for k in ("optimizer", "lr", "batch_size", "loss", "max_epochs", "epochs_after_fit"):
        assert getattr(sgd, k) == getattr(paper.samplers.sgd, k), k


def test_quick_config_is_the_old_default():
    cfg = load_config(QUICK_CONFIG)
    assert cfg.name == "quick_and4_n7"
    assert (cfg.task.n, cfg.task.target, cfg.task.train_size) == (7, "and4", 16)
    assert cfg.model.widths == [40, 40]
    assert cfg.samplers.rejection.n_samples == 6_000_000
    assert cfg.samplers.sgd.n_runs == 10_000
    assert cfg.samplers.sgd.lr == 0.1
    assert cfg.samplers.gp.enabled is False


def test_to_dict_roundtrip():
    cfg = load_config(QUICK_CONFIG, ["model.widths=[3, 4, 5]", "samplers.sgd.lr=0.25"])
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


OVERRIDES = [  # (--set item, path, expected value, expected type)
    ("task.n=5", ("task", "n"), 5, int),
    ("seed=12", ("seed",), 12, int),
    ("samplers.sgd.lr=0.01", ("samplers", "sgd", "lr"), 0.01, float),
    ("samplers.sgd.lr=1", ("samplers", "sgd", "lr"), 1.0, float),  # int accepted for a float
    ("samplers.sgd.lr=1e-3", ("samplers", "sgd", "lr"), 1e-3, float),
    ("model.widths=[8, 4]", ("model", "widths"), [8, 4], list),
    ("model.widths=[16]", ("model", "widths"), [16], list),
    ("analysis.min_counts=[1,3]", ("analysis", "min_counts"), [1, 3], list),
    ("task.target=parity", ("task", "target"), "parity", str),  # a bare word is a string
    ("task.target='xor2'", ("task", "target"), "xor2", str),
    ('task.target="random:3"', ("task", "target"), "random:3", str),
    ("task.target=random:3", ("task", "target"), "random:3", str),
    ("task.target=" + "0110" * 32, ("task", "target"), "0110" * 32, str),  # leading 0: not TOML
    ("task.target=" + "1000" * 32, ("task", "target"), "1000" * 32, str),  # a str field: as typed
    ("samplers.sgd.optimizer=adam", ("samplers", "sgd", "optimizer"), "adam", str),
    ("analysis.plot=false", ("analysis", "plot"), False, bool),
    (" samplers.rejection.record_prior = true ", ("samplers", "rejection", "record_prior"), True, bool),
    ("samplers.sgd.momentum=1.0", ("samplers", "sgd", "momentum"), 1.0, float),  # max is inclusive
    ("task.n=16", ("task", "n"), 16, int),
]


@pytest.mark.parametrize("item, path, value, tp", OVERRIDES, ids=[o[0][:40] for o in OVERRIDES])
def test_set_overrides(item, path, value, tp):
    cfg = load_config(QUICK_CONFIG, [item])
    node = cfg
    for p in path:
        node = getattr(node, p)
    assert node == value and type(node) is tp
    # nothing else changed
    base = load_config(QUICK_CONFIG).to_dict()
    got = cfg.to_dict()
    d_base, d_got = base, got
    for p in path[:-1]:
        d_base, d_got = d_base[p], d_got[p]
    d_base.pop(path[-1]), d_got.pop(path[-1])
    assert got == base


def test_later_set_wins():
    cfg = load_config(QUICK_CONFIG, ["task.n=5", "task.n=6"])
    assert cfg.task.n == 6


BAD = [  # (--set items, substring the message must contain)
    (["task.foo=1"], "task.foo"),
    (["samplers.nuts.beta=0"], "samplers.nuts.beta: expected a number > 0.0, got 0"),
    (["task.target=0110"], "task.target: expected a truth table of 2^7 = 128"),  # wrong length
    (["task.target=and9"], "task.target"),
    (["task.train_mask=0101"], "task.train_mask: expected 128"),
    (["samplers.sgd.learning_rate=0.1"], "samplers.sgd.learning_rate"),
    (["bogus=1"], "bogus"),
    (["task.n=abc"], "task.n"),  # wrong type (bare word -> string)
    (["task.n='7'"], "task.n"),
    (["task.n=5.0"], "task.n"),  # float for int
    (["task.n=true"], "task.n"),  # bool for int
    (["samplers.sgd.lr=true"], "samplers.sgd.lr"),  # bool for float
    (["samplers.sgd.lr='fast'"], "samplers.sgd.lr"),
    (["samplers.sgd.lr=nan"], "samplers.sgd.lr"),
    (["samplers.rejection.enabled=1"], "samplers.rejection.enabled"),  # int for bool
    (["task.target=7"], "task.target"),  # int for string
    (["task.n=0"], "task.n"),  # out of range
    (["task.n=21"], "task.n"),
    (["seed=-1"], "seed"),
    (["samplers.sgd.lr=-0.1"], "samplers.sgd.lr"),
    (["samplers.sgd.momentum=1.5"], "samplers.sgd.momentum"),
    (["model.sigma_w=-1"], "model.sigma_w"),
    (["samplers.gp.tilting_samples=9"], "samplers.gp.tilting_samples"),
    (["samplers.sgd.optimizer=lbfgs"], "samplers.sgd.optimizer"),  # bad choice
    (["samplers.sgd.loss=hinge"], "samplers.sgd.loss"),
    (["model.activation=gelu"], "model.activation"),
    (["model.padding=['VALID', 'FULL']"], "model.padding[1]"),
    (["model.widths=[8, 0]"], "model.widths[1]"),  # list entry out of range
    (["model.widths=[8, 2.5]"], "model.widths[1]"),
    (["model.widths=[8, true]"], "model.widths[1]"),  # bool for int inside a list
    (["model.widths=[]"], "model.widths"),
    (["model.widths=8"], "model.widths"),  # scalar for a list
    (["analysis.min_counts=[0]"], "analysis.min_counts[0]"),
    (["task.kind=image", "model.arch=cnn", "model.kernel_sizes=[5, 2]"], "model.kernel_sizes"),
    (["task.kind=image", "model.arch=cnn", "model.strides=[1, 1, 1]"], "model.strides"),
    (["task.kind=image", "model.arch=cnn", "model.filters=[8, 8]"], "model.kernel_sizes"),
    (["task.kind=image", "model.arch=cnn", "model.padding=['SAME']"], "model.padding"),
    (["model.arch=cnn"], "model.arch"),  # cnn needs an image task
    (["samplers.rejection.enabled=false", "samplers.sgd.enabled=false"], "samplers"),
    (["samplers.rejection.output_draws=0"], "samplers.rejection.output_draws"),
    (["samplers.rejection.output_draws=4", "samplers.rejection.record_prior=true"],
     "samplers.rejection.output_draws: expected 1 with record_prior"),
    (["samplers.rejection.output_draws=4", "samplers.rejection.chunk_size=10"],
     "samplers.rejection.chunk_size: expected a multiple of output_draws = 4"),
    (["task.kind=image", "model.arch=cnn", "samplers.rejection.output_draws=4"],
     "samplers.rejection.output_draws: expected 1 for model.arch = 'cnn'"),
    (["task.kind=image", "model.arch=cnn"],  # the default kernels 5, 2, 5 on digits' 8x8
     "model.kernel_sizes[2]: a 5x5 VALID conv does not fit the 4x4 feature map"),
    (["task.kind=image", "task.dataset=cifar10", "model.arch=cnn", "model.filters=[4]",
      "model.kernel_sizes=[33]", "model.strides=[1]", "model.padding=['VALID']"],
     "model.kernel_sizes[0]: a 33x33 VALID conv does not fit the 32x32"),
    (["samplers.gp.enabled=true", "samplers.gp.method=exact"],  # 2^7 inputs
     "samplers.gp.method: expected 'ep' or 'minimax-tilting' here: 'exact' handles at most 20 "
     "dimensions and the joint mode needs 128"),
    (["task.n=5", "samplers.gp.enabled=true", "samplers.gp.method=exact",
      "samplers.gp.mode=conditional", "task.train_size=11"], "the conditional mode needs 21"),
    (["task.kind=image", "task.train_size=15", "task.test_size=6", "samplers.gp.enabled=true",
      "samplers.gp.method=exact"], "the joint mode needs 21"),
    (["samplers.nuts.enabled=true", "samplers.nuts.num_samples=10", "samplers.nuts.thin=20"],
     "samplers.nuts.thin: expected at most num_samples = 10"),
    (["task.n.x=1"], "task.n.x"),  # descending into a scalar
    (["task=3"], "task"),  # scalar for a section
    (["task.n"], "task.n"),  # --set without '='
    (["samplers.sgd.lr"], "--set"),
]


@pytest.mark.parametrize("items, field", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_overrides_raise_config_error_naming_field(items, field):
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_CONFIG, items)
    assert field in str(e.value)
    assert isinstance(e.value, ValueError)  # the CLI catches it as such


def test_cnn_lists_of_matching_length_pass():
    cfg = load_config(QUICK_CONFIG, ["task.kind=image", "model.arch=cnn", "model.filters=[4, 4]",
                             "model.kernel_sizes=[3, 3]", "model.strides=[1, 2]",
                             "model.padding=['SAME', 'VALID']"])
    assert cfg.model.strides == [1, 2]


@pytest.mark.parametrize("items", [
    ["task.n=4", "task.train_size=8", "samplers.gp.enabled=true",
     "samplers.gp.method=exact"],  # 16 inputs
    ["task.n=5", "task.train_size=12", "samplers.gp.enabled=true", "samplers.gp.method=exact",
     "samplers.gp.mode=conditional"],  # 20 inputs in E: the limit
    ["task.kind=image", "model.arch=cnn", "model.filters=[4, 4]", "model.kernel_sizes=[8, 1]",
     "model.strides=[1, 1]", "model.padding=['VALID', 'VALID']"],  # an 8x8 kernel on 8x8 digits: just fits
])
def test_within_the_limits_passes(items):
    load_config(QUICK_CONFIG, items)


def test_exact_max_dim_matches_the_gp():
    from bayes_sgd import config
    from bayes_sgd.gp import EXACT_MAX_DIM

    assert config.EXACT_MAX_DIM == EXACT_MAX_DIM  # config's copy avoids importing JAX


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[task\nn = 3\n")
    with pytest.raises(ConfigError, match=r"^config: .*bad\.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"^config: file .*nope\.toml does not exist"):
        load_config(tmp_path / "nope.toml")
    dup = tmp_path / "dup.toml"
    dup.write_text("seed = 1\nseed = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(dup)


def test_file_values_validated_too(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[samplers.sgd]\nbatch_size = 0\n")
    with pytest.raises(ConfigError, match=r"^samplers\.sgd\.batch_size: expected an integer in \[1, 10\^6\], got 0$"):
        load_config(f)
    f.write_text("[model]\nwidths = [4]\n")  # a minimal file: everything else defaults
    assert load_config(f).model.widths == [4]


def test_error_message_format():
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_CONFIG, ["samplers.sgd.lr=-1"])
    # the README shows "got -1"; the value is coerced to float before the range check
    assert re.fullmatch(r"samplers\.sgd\.lr: expected a number >= 0\.0, got -1(\.0)?", str(e.value))
    with pytest.raises(ConfigError) as e:
        load_config(QUICK_CONFIG, ["samplers.sgd.momentum=2"])
    assert re.fullmatch(r"samplers\.sgd\.momentum: expected a number in \[0\.0, 1\.0\], got 2(\.0)?",
                        str(e.value))


def test_section_error_names_section_without_trailing_dot():
    with pytest.raises(ConfigError, match=r"^task: expected a table"):
        load_config(QUICK_CONFIG, ["task=3"])


@pytest.mark.parametrize("value", ["1000", "'1000'"], ids=["bare", "quoted"])
def test_set_truth_table_starting_with_one(value):
    # a bare value must not become the integer 1000; the quoted form (the old workaround) works too
    assert load_config(QUICK_CONFIG, ["task.n=2", "task.train_size=2", f"task.target={value}"]).task.target == "1000"


def test_default_task_target_builds():
    cfg = config_from_dict({})
    assert build_task(cfg.task).n_test == 128 - cfg.task.train_size


# ---- task.train_size next to task.train_mask ------------------------------------------------
# A mask fixes S; a train_size given explicitly (file, mapping or --set) must agree with its
# number of 1s, while the default (32) says nothing and is replaced by that number.  Cases:
# (base: "paper" = paper_targets_n7.toml, mask of 32 and no train_size; "quick" = QUICK_CONFIG,
# train_size = 16 and no mask; or a mapping), --set items, expected |S| or None for the error.
_MASK64 = "01" * 64
_N3 = {"task": {"kind": "boolean", "n": 3, "target": "majority", "train_mask": "11010100"}}
TRAIN_SIZE_CASES = [
    ("paper", [], 32),
    ("paper", ["task.train_size=32"], 32),
    ("paper", ["task.train_size=16"], None),  # the bug: ran |S| 32 silently
    ("paper", ["task.train_mask=" + "1" * 16 + "0" * 112], 16),
    ("paper", ["task.train_mask=" + "1" * 16 + "0" * 112, "task.train_size=32"], None),
    ("quick", [], 16),
    ("quick", ["task.train_mask=" + _MASK64], None),  # the file's 16 against 64
    ("quick", ["task.train_mask=" + _MASK64, "task.train_size=64"], 64),
    ("n3", [], 4),  # default 32 not given: the mask's 4
    ("n3", ["task.train_size=4"], 4),
    ("n3", ["task.train_size=5"], None),
    ("n3", ["task.drop_zero_input=true", "task.train_mask=01010100"], 3),
]


def _load_case(base, items):
    from bayes_sgd.reproduce import FIGURES, config_path

    if base == "n3":
        return load_config(_N3, items)
    path = config_path(FIGURES["targets_n7"], "paper") if base == "paper" else QUICK_CONFIG
    return load_config(path, items)


@pytest.mark.parametrize("base, items, size", TRAIN_SIZE_CASES,
                         ids=[f"{b}:{' '.join(i)[:60]}" for b, i, _ in TRAIN_SIZE_CASES])
def test_train_size_against_train_mask(base, items, size):
    if size is None:
        with pytest.raises(ConfigError) as e:
            _load_case(base, items)
        msg = str(e.value)
        assert msg.startswith("task.train_size: expected ") and "task.train_mask" in msg
        return
    cfg = _load_case(base, items)
    task = build_task(cfg.task)
    # independent count: the inputs the built task puts in S
    assert cfg.task.train_size == task.m == size
    if cfg.task.train_mask:
        assert cfg.task.train_mask.count("1") == size
    # the resolved config (what manifest.json stores) loads back to itself
    assert config_from_dict(cfg.to_dict()) == cfg


def test_manifest_from_before_train_size_was_resolved_still_matches(tmp_path):
    """A results folder written when a mask's train_size was ignored (default 32 stored next to
    a mask of 4) is still the same config, so it is resumed or skipped, not refused."""
    from bayes_sgd.results_folder import _same_config

    cfg = load_config(_N3)
    old = cfg.to_dict()
    old["task"]["train_size"] = 32
    assert _same_config({"config": old}, cfg)
    other = json.loads(json.dumps(old))
    other["task"]["train_mask"] = "11010101"  # another S is another config
    assert not _same_config({"config": other}, cfg)


# ---- CLI ----------------------------------------------------------------------------------------

CLI_BAD = [
    (["--set", "task.n=0"], "task.n"),
    (["--set", "samplers.sgd.foo=1"], "samplers.sgd.foo"),
    (["--set", "samplers.sgd.optimizer=lbfgs"], "samplers.sgd.optimizer"),
    (["--set", "task.n"], "--set"),
    (["--set", "task.target=0101"], "task.target"),  # a task error (2^7 bits needed)
    (["--set", "task.train_size=128"], "task.train_size"),
    # the file's train_size = 16 against a mask of 64 inputs: refused, not silently |S| 64
    (["--set", "task.train_mask=" + "01" * 64], "task.train_size"),
]


@pytest.mark.parametrize("args, field", CLI_BAD, ids=[a[1] for a in CLI_BAD])
def test_cli_bad_set_returns_2_and_writes_nothing(tmp_path, capsys, monkeypatch, args, field):
    monkeypatch.chdir(tmp_path)  # the default --out results/<name> would land here
    out = tmp_path / "res"
    rc = cli.main(["run", QUICK_CONFIG, "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"error: {field}" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_config_file(tmp_path, capsys):
    rc = cli.main(["run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "error: config: file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_config_prints_resolved_config(capsys):
    rc = cli.main(["config", QUICK_CONFIG, "--set", "task.n=5", "--set", "model.widths=[3]"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_config(QUICK_CONFIG, ["task.n=5", "model.widths=[3]"]).to_dict()
    assert printed["task"]["n"] == 5 and printed["model"]["widths"] == [3]


def test_dataclass_fields_all_have_specs():
    # every leaf field is reachable by --set: set each to its own default and reload
    cfg = load_config(QUICK_CONFIG)
    items = []

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            else:
                items.append(f"{prefix}{f.name}={json.dumps(v)}")

    walk(cfg, "")
    assert len(items) > 50
    assert load_config(QUICK_CONFIG, items) == cfg


@pytest.mark.parametrize("arg", [5, 2.5, [1, 2], ("a",), b"path", object()])
def test_load_config_names_a_non_path_non_mapping(arg):
    with pytest.raises(ConfigError, match=r"^config: expected a path to a TOML file or a mapping"):
        load_config(arg)


@pytest.mark.parametrize("arg", [5, [1], "text", None])
def test_config_from_dict_names_a_non_mapping(arg):
    with pytest.raises(ConfigError, match=r"^config: expected a table \(mapping\) of fields"):
        config_from_dict(arg)


def test_load_config_takes_a_mapping_and_leaves_it_as_is():
    data = {"seed": 3, "samplers": {"sgd": {"lr": 0.5}}}
    cfg = load_config(data, ["samplers.sgd.n_runs=7"])
    assert (cfg.seed, cfg.samplers.sgd.lr, cfg.samplers.sgd.n_runs) == (3, 0.5, 7)
    assert data == {"seed": 3, "samplers": {"sgd": {"lr": 0.5}}}
    with pytest.raises(ConfigError, match="^overrides: expected a list"):
        load_config(data, "seed=1")
