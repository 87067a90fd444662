"""Per-stage probes and the report card.

Every probe is deterministic (greedy decoding on fixed held-out sets), so "before" and
"after" differ only because of training. Each stage records its probes in
`out/<profile>/report.json` as {stage: {"metrics": {name: {"before": x, "after": y}}, "facts": {...}}},
and `report.md` is rendered from it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from .chat import chat_prompts, generate_batch, reply_text
from .tokenizer import ENDOFTEXT

STAGES = ["pretrain", "sft", "dpo", "grpo"]


# ---------------------------------------------------------------------------------------------
# The report card
# ---------------------------------------------------------------------------------------------
class ReportCard:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}

    def record(self, stage: str, metrics: dict[str, tuple[float, float]], **facts) -> None:
        """Store {metric: (before, after)} and run facts (steps, tokens, seconds...) for a stage.

        Later stages' entries are dropped: they measured checkpoints built on the old one.
        """
        if stage in STAGES:
            for later in STAGES[STAGES.index(stage) + 1 :]:
                self.data.pop(later, None)
        entry = {"metrics": {k: {"before": float(b), "after": float(a)} for k, (b, a) in metrics.items()}}
        entry["facts"] = facts
        self.data[stage] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.path.with_suffix(".md").write_text(self.to_markdown(), encoding="utf-8")

    def rows(self) -> list[tuple[str, str, float, float]]:
        order = STAGES + sorted(set(self.data) - set(STAGES))
        return [
            (stage, name, m["before"], m["after"])
            for stage in order
            if stage in self.data
            for name, m in self.data[stage]["metrics"].items()
        ]

    def to_markdown(self) -> str:
        lines = ["| stage | probe | before | after |", "|---|---|---:|---:|"]
        lines += [f"| {s} | {n} | {b:.3f} | {a:.3f} |" for s, n, b, a in self.rows()]
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def heldout_loss(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32) -> dict:
    """Mean next-token loss on held-out texts, its perplexity, and bits per UTF-8 byte.

    Bits per byte does not depend on the tokenizer, so it compares models with different
    vocabularies: total nats over all predicted tokens / ln 2 / bytes of text predicted.
    """
    model.eval()
    device = next(model.parameters()).device
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    for start in range(0, len(texts), batch_size):
        chunk = [t + ENDOFTEXT for t in texts[start : start + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                        add_special_tokens=False).to(device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        logits = model(**enc).logits[:, :-1].float()
        targets = labels[:, 1:]
        nats = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
        total_nats += nats.item()
        total_tokens += int((targets != -100).sum())
        for row, mask in zip(enc["input_ids"], targets != -100, strict=True):
            predicted = row[1:][mask]
            total_bytes += len(tokenizer.decode(predicted).encode("utf-8"))
    loss = total_nats / total_tokens
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total_nats / math.log(2) / total_bytes}


def completion_accuracy(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 12) -> float:
    """Share of raw-text prompts whose greedy continuation starts with the expected answer."""
    outs = generate_batch(model, tokenizer, [it["prompt"] for it in items], max_new_tokens=max_new_tokens)
    return sum(o.strip().startswith(it["answer"]) for o, it in zip(outs, items, strict=True)) / len(items)


def chat_replies(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 48) -> list[str]:
    """Greedy raw replies (end marker included, if produced) to each item's `messages`."""
    return generate_batch(model, tokenizer, chat_prompts(tokenizer, [it["messages"] for it in items]),
                          max_new_tokens=max_new_tokens)


def contains_answer(text: str, answer: str) -> bool:
    """A number must be the reply's last number (so "0 + 5 = 7" does not answer 5, and "17"
    does not contain 7); any other answer must occur in the text."""
    if answer.isdigit():
        numbers = re.findall(r"\d+", text)
        return bool(numbers) and numbers[-1] == answer
    return answer in text


def qa_scores(tokenizer, items: Sequence[dict], raw_replies: Sequence[str]) -> dict:
    """Answer accuracy (the expected answer appears in the reply, in either language when the
    item lists `answers`) and template compliance (the reply is closed by `<|im_end|>` with
    nothing after it)."""
    correct = closed = 0
    for it, raw in zip(items, raw_replies, strict=True):
        text, ok = reply_text(raw, tokenizer)
        answers = it.get("answers", {}).values() or [it["answer"]]
        correct += any(contains_answer(text, a) for a in answers)
        closed += ok
    n = len(items)
    return {"accuracy": correct / n, "template_compliance": closed / n}


def main() -> None:
    """Print the profile's report card and where the card and the site are."""
    from .profiles import ROOT, get_profile

    profile = get_profile()
    card = ReportCard(profile.report_path)
    if not card.data:
        print(f"no report card yet at {profile.report_path}: run the training notebooks (make course)")
        return
    print(card.to_markdown())
    print(f"report card: {profile.report_path} and {profile.report_path.with_suffix('.md')}")
    site = ROOT / "_build" / "html" / "index.html"
    if site.exists():
        print(f"study site:  {site}")


if __name__ == "__main__":
    main()
