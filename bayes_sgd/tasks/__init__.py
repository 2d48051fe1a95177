"""Tasks: inputs, a binary target, and the split into training set S and test set E."""
from ..config import task_field_error
from ._boolean import ENCODINGS, PRESETS, boolean_inputs, boolean_task, parse_target, train_mask
from ._images import image_task, make_image_task, parse_binarize  # loaders load on first use
from ._task import Task

__all__ = ["ENCODINGS", "PRESETS", "Task", "boolean_inputs", "boolean_task", "build_task",
           "image_task", "make_image_task", "parse_binarize", "parse_target", "train_mask"]


def build_task(cfg) -> Task:
    """The task described by a ``TaskConfig``."""
    try:
        if cfg.kind == "boolean":
            return boolean_task(cfg.n, cfg.target, train_size=cfg.train_size, seed=cfg.train_seed,
                                mask=cfg.train_mask or None,
                                encoding=cfg.encoding, drop_zero_input=cfg.drop_zero_input,
                                corrupt_fraction=cfg.corrupt_fraction,
                                corrupt_mode=cfg.corrupt_mode)
        return make_image_task(dataset=cfg.dataset, path=cfg.data_path or None, split=cfg.split,
                               test_split=getattr(cfg, "test_split", "") or None,
                               binarize=cfg.binarize, train_size=cfg.train_size,
                               test_size=cfg.test_size, seed=cfg.train_seed,
                               corrupt_fraction=cfg.corrupt_fraction,
                               corrupt_mode=cfg.corrupt_mode, scale=cfg.scale)
    except ValueError as e:
        # checks that need the data (sizes against N, pixels): name the config field
        err = task_field_error(e)
        if err is None:
            raise
        raise err from None

