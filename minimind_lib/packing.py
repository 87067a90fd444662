"""Packed SFT rows: several whole conversations in one row instead of one row each plus padding.

A padded batch is as long as its longest conversation: on the synthetic SFT set about half
of a batch of 32 is padding. Packing fills each row with whole conversations (trl's
best-fit-decreasing packer: none is cut in two) and keeps them apart: positions restart at
every conversation, and from those positions (with no `attention_mask`) transformers'
`create_causal_mask` lets a token attend only to its own conversation. The model and the loss
on every assistant token stay the same; there are fewer, fuller rows to compute.

    trainer = SFTTrainer(...)                  # tokenizes and builds the assistant-only labels
    packing.use_packed_rows(trainer, seq_len)  # then trains on packed rows
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.compute as pc
import torch
from trl import pack_dataset

IGNORE = -100  # label of a token that is not a target


def pack_rows(dataset, seq_len: int):
    """Tokenized conversations (`input_ids`, `labels`) packed into rows of at most `seq_len`
    tokens; `seq_lengths` lists the conversations of each row."""
    return pack_dataset(dataset.select_columns(["input_ids", "labels"]), seq_len, strategy="bfd")


@dataclass
class PackedCollator:
    """Pads a batch of packed rows and marks where each conversation starts.

    Returns `input_ids`, `labels` (padding and each conversation's first token ignored, so no
    conversation is asked to predict the next one) and `position_ids` (0, 1, ... within each
    conversation; 0 at every padding token, so each is a document of its own). No
    `attention_mask`: the model finds the conversations from where the positions restart."""

    pad_token_id: int

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(rows), width), IGNORE, dtype=torch.long),
            "position_ids": torch.zeros(len(rows), width, dtype=torch.long),
        }
        for i, row in enumerate(rows):
            lengths = torch.as_tensor(row["seq_lengths"])
            n = int(lengths.sum())
            if n != len(row["input_ids"]):
                raise ValueError(f"row {i}: seq_lengths add up to {n}, input_ids has {len(row['input_ids'])}")
            batch["input_ids"][i, :n] = torch.as_tensor(row["input_ids"])
            batch["labels"][i, :n] = torch.as_tensor(row["labels"])
            batch["position_ids"][i, :n] = torch.cat([torch.arange(int(k)) for k in lengths])
        batch["labels"][batch["position_ids"] == 0] = IGNORE
        return batch


def use_packed_rows(trainer, seq_len: int) -> dict:
    """Switch a built `SFTTrainer` (packing off, so it has tokenized and labelled every
    conversation) to packed rows of at most `seq_len` tokens. Returns rows and padding share
    before and after, for one batch size."""
    before = trainer.train_dataset
    packed = pack_rows(before, seq_len)
    trainer.train_dataset = packed
    trainer.data_collator = PackedCollator(trainer.processing_class.pad_token_id)
    batch = trainer.args.per_device_train_batch_size
    return {
        "rows_before": len(before),
        "rows_after": len(packed),
        "padding_before": padding_share(row_lengths(before), batch),
        "padding_after": padding_share(row_lengths(packed), batch),
    }


def row_lengths(dataset) -> list[int]:
    """Tokens in each row, read from the Arrow column (the token lists stay on disk)."""
    return pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_pylist()


def padding_share(lengths: Sequence[int], batch_size: int, seed: int = 0) -> float:
    """Share of padding in batches drawn at random (as the Trainer does), each padded to its
    longest row."""
    lengths = random.Random(seed).sample(list(lengths), len(lengths))
    slots = used = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        slots += len(chunk) * max(chunk)
        used += sum(chunk)
    return 1 - used / slots if slots else 0.0
