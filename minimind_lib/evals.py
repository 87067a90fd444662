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

# Loss-like probes fall when a stage works; every other probe is a rate, better when higher.
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte")



# How far a guard may fall before the report card calls it damaged (05 allows itself the same).
GUARD_MARGIN = 0.15


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of this probe is the better one (losses, perplexity, bits/byte)."""
    return any(metric == k or metric.endswith("_" + k) for k in LOWER_IS_BETTER)


def gain(metric: str, before: float, after: float) -> float:
    """after - before, signed so that a positive gain is always an improvement."""
    return before - after if lower_is_better(metric) else after - before


# ---------------------------------------------------------------------------------------------
# The report card
# ---------------------------------------------------------------------------------------------
class ReportCard:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data: dict = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}

    def record(
        self,
        stage: str,
        metrics: dict[str, tuple[float, float]],
        guards: dict[str, tuple[float, float]] | None = None,
        **facts,
    ) -> None:
        """Store {metric: (before, after)}, the guards (probes the stage should only leave
        roughly intact) in the same form, and run facts (steps, tokens, seconds...) for a stage.

        Later stages' entries are dropped: they measured checkpoints built on the old one.
        """
        if stage in STAGES:
            for later in STAGES[STAGES.index(stage) + 1 :]:
                self.data.pop(later, None)

        def pairs(values):
            return {k: {"before": float(b), "after": float(a)} for k, (b, a) in values.items()}

        entry = {"metrics": pairs(metrics)}
        if guards:
            entry["guards"] = pairs(guards)
        entry["facts"] = facts
        self.data[stage] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.path.with_suffix(".md").write_text(self.to_markdown(), encoding="utf-8")

    def rows(self) -> list[tuple[str, str, float, float]]:
        """(stage, probe, before, after) in course order: each stage's metrics, then its guards."""
        order = STAGES + sorted(set(self.data) - set(STAGES))
        return [
            (stage, name, m["before"], m["after"])
            for stage in order
            if stage in self.data
            for part in ("metrics", "guards")
            for name, m in self.data[stage].get(part, {}).items()
        ]

    def role(self, stage: str, name: str) -> str:
        """"guard" for a probe the stage only has to leave roughly intact, else "target"."""
        guards = self.data.get(stage, {}).get("guards", {})
        return "guard" if name in guards else "target"

    def verdicts(self, guard_margin: float = GUARD_MARGIN) -> list[dict]:
        """Each probe judged: a target must improve (gain > 0); a guard may fall, by at most
        `guard_margin`. Rows: stage, metric, before, after, gain, role, lower_is_better, ok."""
        out = []
        for stage, name, before, after in self.rows():
            role = self.role(stage, name)
            g = gain(name, before, after)
            ok = g >= -guard_margin if role == "guard" else g > 0
            out.append(
                dict(
                    stage=stage,
                    metric=name,
                    before=before,
                    after=after,
                    gain=g,
                    role=role,
                    lower_is_better=lower_is_better(name),
                    ok=ok,
                )
            )
        return out

    def to_markdown(self) -> str:
        lines = ["| stage | probe | before | after |", "|---|---|---:|---:|"]
        lines += [
            f"| {s} | {n}{' (guard)' if self.role(s, n) == 'guard' else ''} | {b:.3f} | {a:.3f} |"
            for s, n, b, a in self.rows()
        ]
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


def accepted_answers(item: dict) -> list[str]:
    """Every answer a probe item accepts: both languages when it lists `answers`, else `answer`."""
    return list(item.get("answers", {}).values()) or [item["answer"]]


def qa_scores(tokenizer, items: Sequence[dict], raw_replies: Sequence[str]) -> dict:
    """Answer accuracy (the expected answer appears in the reply, in either language when the
    item lists `answers`) and template compliance (the reply is closed by `<|im_end|>` with
    nothing after it)."""
    correct = closed = 0
    for it, raw in zip(items, raw_replies, strict=True):
        text, ok = reply_text(raw, tokenizer)
        answers = accepted_answers(it)
        correct += any(contains_answer(text, a) for a in answers)
        closed += ok
    n = len(items)
    return {"accuracy": correct / n, "template_compliance": closed / n}


def language_match_rate(tokenizer, items: Sequence[dict], raw_replies: Sequence[str]) -> float:
    """Share of replies written in the language of the question (`item["lang"]`): the
    behaviour the synthetic DPO pairs prefer."""
    from .synthetic import reply_language

    matches = sum(
        reply_language(reply_text(raw, tokenizer)[0]) == it["lang"] for it, raw in zip(items, raw_replies, strict=True)
    )
    return matches / len(items)


@torch.no_grad()
def completion_logps(model, tokenizer, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                     batch_size: int = 32) -> torch.Tensor:
    """log p(completion | prompt) for each pair of chat messages: the log-probabilities of the
    completion's tokens, summed, as DPO scores a reply. Shape (N,).

    The completion's tokens are those after the rendered prompt (with its generation prompt):
    the reply, its `<|im_end|>` and whatever the template adds after it.
    """
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)["input_ids"]
        ids = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=True)["input_ids"]
        if ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError("the rendered prompt is not a prefix of the rendered prompt + completion")
        rows.append((ids, len(prompt_ids)))
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        in_completion = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (ids, n_prompt) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            in_completion[i, n_prompt : len(ids)] = True
        attention_mask = (torch.arange(width)[None] < torch.tensor([len(ids) for ids, _ in chunk])[:, None]).long()
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits.float()
        # The logits at position t predict token t+1.
        logps = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None].to(device)).squeeze(-1)
        out.append((logps * in_completion[:, 1:].to(device)).sum(-1).cpu())
    return torch.cat(out)


def preference_scores(model, tokenizer, pairs: Sequence[dict], reference=None) -> dict:
    """How often the model prefers `chosen` to `rejected` on trl-style preference pairs
    (`prompt`, `chosen`, `rejected` as chat messages).

    Without a reference the margin is log p(chosen) - log p(rejected). With one it is DPO's
    implicit reward margin (divided by beta): (log pi/ref of chosen) - (log pi/ref of rejected).
    Returns the accuracy (share of margins > 0) and the mean margin, in nats.
    """
    prompts = [p["prompt"] for p in pairs]
    chosen = completion_logps(model, tokenizer, prompts, [p["chosen"] for p in pairs])
    rejected = completion_logps(model, tokenizer, prompts, [p["rejected"] for p in pairs])
    if reference is not None:  # log-ratios first, so that a model compared with itself gets exactly 0
        chosen = chosen - completion_logps(reference, tokenizer, prompts, [p["chosen"] for p in pairs])
        rejected = rejected - completion_logps(reference, tokenizer, prompts, [p["rejected"] for p in pairs])
    margin = chosen - rejected
    return {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}


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
        print(f"study site:  {site} (open it in a browser)")
    else:
        print(f"study site:  not built yet; `make site` writes {site}")


if __name__ == "__main__":
    main()
