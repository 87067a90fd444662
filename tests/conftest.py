"""Shared test helpers: a small MiniMind model that builds in milliseconds."""

from __future__ import annotations

import pytest
import torch

from minimind_lib.model import MiniMindConfig, MiniMindForCausalLM

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256)


def small_config(**overrides) -> MiniMindConfig:
    """2 layers, 64 wide, 4 query heads sharing 2 key/value heads (GQA), 128 tokens."""
    return MiniMindConfig(**{**SMALL, **overrides})


def small_model(seed: int = 0, **overrides) -> MiniMindForCausalLM:
    """A small model with weights drawn from `seed`, in eval mode."""
    torch.manual_seed(seed)
    return MiniMindForCausalLM(small_config(**overrides)).eval()


@pytest.fixture
def make_model():
    """`small_model` as a fixture: make_model(seed=0, **config overrides)."""
    return small_model
