"""Keeping evaluation items out of training: normalised text, deduplication, leak checks.

A probe only measures what it claims if none of its items was trained on. Two texts count as
the same when they are equal after `normalise` (Unicode NFKC, case folded, every run of
punctuation, symbols and spaces turned into one space): "The capital of X is Y." and
"the capital of x is y" are one text, and so are "3 + 4 = 7" and "3 4 7".

- `deduplicate`: keep the first of each set of equal documents (pretraining corpora repeat
  themselves; a repeated document split into both halves would be "held out" and trained on).
- `split_pretraining`: deduplicate, then set aside held-out documents (03's held-out loss).
- `training_units`: every text a training file holds (documents, message contents).
- `leaks`: the evaluation items that occur in training units.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .data import read_jsonl

HELDOUT_DOCUMENTS = 0.02  # share of the (deduplicated) pretraining documents held out
_NOT_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, spaces (Han characters and digits are word characters)


def normalise(text: str) -> str:
    """The form two texts are compared in: NFKC, case folded, punctuation/symbols/spaces -> one space."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_key(text: str) -> bytes:
    """A short fingerprint of the normalised text (16 bytes), for sets over millions of documents."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()


def deduplicate(dataset, column: str = "text"):
    """(dataset without repeated documents, how many were dropped); the first copy is kept."""
    keys = dataset.map(lambda batch: {"_key": [text_key(t) for t in batch[column]]}, batched=True,
                       remove_columns=dataset.column_names)["_key"]
    seen: set[bytes] = set()
    keep = [i for i, key in enumerate(keys) if not (key in seen or seen.add(key))]
    return (dataset if len(keep) == len(dataset) else dataset.select(keep)), len(dataset) - len(keep)


def split_pretraining(dataset, seed: int, test_size: float = HELDOUT_DOCUMENTS):
    """(train, held-out, duplicates dropped): the documents are deduplicated first, so no
    held-out document is also a training document, even in another spelling."""
    unique, dropped = deduplicate(dataset)
    split = unique.train_test_split(test_size=test_size, seed=seed)
    return split["train"], split["test"], dropped


# ---- leak checks (over the files of a data directory) ------------------------------------------
def _contents(messages: Iterable[dict]) -> list[str]:
    return [m["content"] for m in messages]


def training_units(files: dict[str, Path], pretrain_texts: Iterable[str] | None = None) -> list[str]:
    """Every text the training files hold: pretraining documents (or `pretrain_texts`, e.g. the
    training half of a split) and the content of every message of the SFT (and tool chat), DPO
    and RLAIF files."""
    units = list(pretrain_texts) if pretrain_texts is not None else [r["text"] for r in read_jsonl(files["pretrain"])]
    for kind in ("sft", "sft_tools"):  # the tool chats exist only in the synthetic set
        for row in read_jsonl(files[kind]) if kind in files else []:
            units += _contents(row["conversations"])
    for row in read_jsonl(files["dpo"]):
        units += _contents(row["chosen"]) + _contents(row["rejected"])
    for row in read_jsonl(files["rlaif"]):
        units += _contents(row["conversations"][:-1])  # the last turn is the placeholder
    return units


def leaks(items: Iterable[str], units: Iterable[str], inside: bool = True) -> list[str]:
    """The items that occur in training: equal to a unit after `normalise`, or, with
    `inside`, anywhere inside one (a question quoted in a classroom dialogue)."""
    normalised = [normalise(u) for u in units]
    if not inside:
        whole = set(normalised)
        return [it for it in items if normalise(it) in whole]
    haystack = "\n".join(normalised)
    return [it for it in items if normalise(it) in haystack]
