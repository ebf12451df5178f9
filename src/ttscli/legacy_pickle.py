"""Former home of the restricted unpickler, now ``ttscli.checkpoints.safe_pickle`` (re-exported)."""

from ttscli.checkpoints.safe_pickle import (
    ALLOWED_GLOBALS,
    LEGACY_MAGIC_NUMBER,
    PickledObject,
    is_pickled_module,
    module_attributes,
    module_state_dict,
    read_pickled_checkpoint,
)

__all__ = [
    "ALLOWED_GLOBALS",
    "LEGACY_MAGIC_NUMBER",
    "PickledObject",
    "is_pickled_module",
    "module_attributes",
    "module_state_dict",
    "read_pickled_checkpoint",
]
