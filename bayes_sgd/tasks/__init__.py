"""Tasks: inputs, a binary target, and the split into training set S and test set E."""
from ._boolean import ENCODINGS, PRESETS, boolean_inputs, boolean_task, parse_target, train_mask
from ._task import Task

__all__ = ["ENCODINGS", "PRESETS", "Task", "boolean_inputs", "boolean_task", "build_task",
           "parse_target", "train_mask"]


def build_task(cfg) -> Task:
    """The task described by a ``TaskConfig``."""
    try:
        if cfg.kind == "boolean":
            return boolean_task(cfg.n, cfg.target, train_size=cfg.train_size, seed=cfg.train_seed,
                                mask=cfg.train_mask or None,
                                encoding=cfg.encoding, drop_zero_input=cfg.drop_zero_input,
                                corrupt_fraction=cfg.corrupt_fraction,
                                corrupt_mode=cfg.corrupt_mode)
        from ._images import make_image_task  # heavy loaders only when needed

        return make_image_task(dataset=cfg.dataset, path=cfg.data_path or None, split=cfg.split,
                               test_split=getattr(cfg, "test_split", "") or None,
                               binarize=cfg.binarize, train_size=cfg.train_size,
                               test_size=cfg.test_size, seed=cfg.train_seed,
                               corrupt_fraction=cfg.corrupt_fraction,
                               corrupt_mode=cfg.corrupt_mode, scale=cfg.scale)
    except ValueError as e:
        # checks that need the data (sizes against N, pixels): name the config field
        err = _field_error(e)
        if err is None:
            raise
        raise err from None


# argument of the task builders -> TaskConfig field
_FIELDS = {"path": "data_path", "seed": "train_seed", "mask": "train_mask", "target": "target",
           "encoding": "encoding", "dataset": "dataset", "split": "split",
           "test_split": "test_split", "binarize": "binarize", "train_size": "train_size",
           "test_size": "test_size", "corrupt_fraction": "corrupt_fraction", "corrupt_mode": "corrupt_mode",
           "scale": "scale"}


def _field_error(e: ValueError) -> ValueError | None:
    """A task builder's ``"arg: ..."`` error as ``"task.<field>: ..."``; None when it names no
    config field (the loaders' file errors, which name their files)."""
    arg, sep, rest = str(e).partition(": ")
    if not sep or arg not in _FIELDS or type(e) is not ValueError:
        return None
    return ValueError(f"task.{_FIELDS[arg]}: {rest}")
