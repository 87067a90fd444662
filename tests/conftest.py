"""Shared test helpers: a small MiniMind model that builds in milliseconds, a small trained
tokenizer and a chat model sized to it, and a counter of the model's forward calls."""

from __future__ import annotations

import time

import pytest
import torch

from minimind_lib.model import MiniMindConfig, MiniMindForCausalLM

# A multi-turn conversation in both languages, with a system turn (chat and server tests).
HISTORY = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "3 plus 4 equals 7."},
    {"role": "user", "content": "那 5 加 6 呢？"},
]

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


def small_tokenizer():
    """A byte-level BPE of 300 tokens trained on a few bilingual sentences and sums (about 1 s)."""
    from minimind_lib.tokenizer import train_tokenizer

    corpus = [
        "The capital of Vomia is Bel. 沃米亚的首都是贝尔。 3 plus 4 equals 7. 五加六等于十一。"
    ] * 30
    corpus += [f"{a} + {b} = {a + b}" for a in range(20) for b in range(20)]
    return train_tokenizer(corpus, vocab_size=300)


def small_chat_model(tokenizer, seed: int = 0, **overrides) -> MiniMindForCausalLM:
    """`small_model` with the tokenizer's vocabulary, whose special tokens get logit 0, below
    the random maximum: greedy decoding never stops early.

    With tied embeddings (the default) a random model mostly repeats the last token (after a
    chat prompt: newlines); `tie_word_embeddings=False` makes it write varied text."""
    model = small_model(seed, vocab_size=len(tokenizer), **overrides)
    with torch.no_grad():
        model.lm_head.weight[:3] = 0  # tied: the same tensor as the embeddings
    return model


class CountedForward:
    """Counts (and optionally slows down) the model's forward calls: one per generated token."""

    def __init__(self, model, monkeypatch, delay: float = 0.0):
        self.calls = 0
        forward = model.forward

        def counted(*args, **kwargs):
            self.calls += 1
            time.sleep(delay)
            return forward(*args, **kwargs)

        monkeypatch.setattr(model, "forward", counted)
