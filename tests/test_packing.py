"""Packed SFT rows: a packed conversation is computed exactly as if it were alone, the loss
over a packed batch equals the loss over the same conversations padded, and an SFTTrainer
switched to packed rows trains."""

from __future__ import annotations

import pytest
import torch
from conftest import small_model
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from minimind_lib import packing
from minimind_lib.tokenizer import train_tokenizer

torch.set_num_threads(1)


def conversation(length: int, seed: int) -> dict:
    """A tokenized 'conversation': the second half is the assistant's (the targets)."""
    ids = torch.randint(3, 128, (length,), generator=torch.Generator().manual_seed(seed)).tolist()
    labels = [packing.IGNORE] * (length // 2) + ids[length // 2 :]
    return {"input_ids": ids, "labels": labels}


def test_a_packed_conversation_is_computed_as_if_alone():
    model = small_model()
    convs = [conversation(n, seed) for seed, n in enumerate((5, 9, 3))]
    row = {
        "input_ids": sum((c["input_ids"] for c in convs), []),
        "labels": sum((c["labels"] for c in convs), []),
        "seq_lengths": [5, 9, 3],
    }
    batch = packing.PackedCollator(pad_token_id=0)([row])
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        start = 0
        for c in convs:
            alone = model(torch.tensor([c["input_ids"]])).logits[0]
            n = len(c["input_ids"])
            torch.testing.assert_close(packed[start : start + n], alone, rtol=1e-5, atol=1e-5)
            start += n


def test_the_loss_over_packed_rows_equals_the_loss_over_padded_rows():
    model = small_model()
    convs = [conversation(n, seed) for seed, n in enumerate((6, 11, 4, 8, 7))]
    # Padded: one conversation a row, right-padded, the usual causal mask.
    width = max(len(c["input_ids"]) for c in convs)
    ids = torch.zeros(len(convs), width, dtype=torch.long)
    labels = torch.full((len(convs), width), packing.IGNORE)
    mask = torch.zeros(len(convs), width, dtype=torch.long)
    for i, c in enumerate(convs):
        n = len(c["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(c["input_ids"]), torch.tensor(c["labels"]), 1
    # Packed: the same conversations in two rows.
    rows = packing.pack_rows(Dataset.from_list(convs), seq_len=20)
    assert len(rows) < len(convs) and all(len(r) <= 20 for r in rows["input_ids"])
    packed = packing.PackedCollator(pad_token_id=0)(list(rows))
    with torch.no_grad():
        want = model(ids, attention_mask=mask, labels=labels).loss
        got = model(**packed).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_collator_marks_positions_and_targets():
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [2, 3]},
        {"input_ids": [4, 4], "labels": [-100, 4], "seq_lengths": [2]},
    ]
    b = packing.PackedCollator(pad_token_id=0)(rows)
    assert set(b) == {"input_ids", "labels", "position_ids"}  # no attention_mask: the positions say it all
    assert b["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 1, 0, 0, 0]]
    # Each conversation's first token is never a target; padding neither.
    assert b["labels"].tolist() == [[-100, 6, -100, 8, 9], [-100, 4, -100, -100, -100]]
    with pytest.raises(ValueError, match="row 0: seq_lengths add up to 4"):
        packing.PackedCollator(pad_token_id=0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "seq_lengths": [4]}])


def test_restarting_positions_keep_documents_apart():
    from transformers.masking_utils import create_causal_mask

    model = small_model()
    x = model.model.embed_tokens(torch.tensor([[5, 6, 7, 8]]))
    mask = create_causal_mask(model.config, x, None, None, position_ids=torch.tensor([[0, 1, 0, 1]]))
    assert mask[0, 0].tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, True, True],
    ]
    assert create_causal_mask(model.config, x, None, None, position_ids=torch.tensor([[0, 1, 2, 3]])) is None


def test_row_lengths_follow_a_selection():
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3], [4], [5, 6]]}).select([2, 0])
    assert packing.row_lengths(rows) == [2, 3]


def test_padding_share():
    assert packing.padding_share([4, 4, 4, 4], batch_size=2) == 0
    assert packing.padding_share([1, 3], batch_size=2) == pytest.approx(1 / 3)


def test_an_sft_trainer_switched_to_packed_rows_trains(tmp_path):
    tok = train_tokenizer(["The capital of Vomia is Bel. 3 plus 4 equals 7."] * 20, vocab_size=300)
    questions = [f"What is {a} plus {b}?" for a in range(6) for b in range(6)]
    data = Dataset.from_list(
        [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "It is " + "7 " * (1 + 4 * (i % 6))}]}
            for i, q in enumerate(questions)
        ]
    )
    model = small_model(vocab_size=len(tok)).train()
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=8,
        assistant_only_loss=True,
        max_length=128,
        packing=False,
        activation_checkpointing=False,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    tokens = sum(sum(t != packing.IGNORE for t in row) for row in trainer.train_dataset["labels"])
    stats = packing.use_packed_rows(trainer, seq_len=128)
    assert stats["rows_after"] < stats["rows_before"] == len(questions)
    assert stats["padding_after"] < stats["padding_before"]
    # Every target token survives packing (no conversation cut, none lost).
    assert sum(sum(t != packing.IGNORE for t in row) for row in trainer.train_dataset["labels"]) == tokens
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(x)) for x in losses)
