"""minimind_lib: the thin shared library of the MiniMind course notebooks.

Importing it registers the `minimind` model type with transformers' Auto classes, so every
process that loads a checkpoint (a notebook, a trl reference model, a DDP worker) can.
"""

from .model import (
    MiniMindConfig,
    MiniMindForCausalLM,
    MiniMindForSequenceClassification,
    MiniMindModel,
)
from .profiles import Profile, get_profile

__all__ = [
    "MiniMindConfig",
    "MiniMindForCausalLM",
    "MiniMindForSequenceClassification",
    "MiniMindModel",
    "Profile",
    "get_profile",
]
