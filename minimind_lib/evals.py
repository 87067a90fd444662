"""Per-stage probes and the report card.

Every probe is deterministic (greedy decoding, or sampling from a fixed seed, on fixed
held-out sets), so "before" and "after" differ only because of training. A probe returns a
`stats.Score`: its value item by item, so that its 95% interval and the interval of the change
before -> after (paired, on the same items) can be computed. Each stage records its probes in
`out/<profile>/report.json` as {stage: {"metrics": {name: {...}}, "guards": {...}, "observed": {...},
"facts": {...}}}
with, for every probe, its n, before and after with their intervals and the change with its
interval; `report.md` is rendered from it.

A target probe counts as improved only when the whole interval of its change is on the good
side of 0; a guard (a probe the stage only has to leave roughly intact) holds only when the
interval rules out a fall larger than `GUARD_MARGIN`. An observed probe (a reply's length, the
distance from the reference) is measured with its interval and not judged: whether it should
rise or fall depends on the data.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .chat import chat_prompts, generate_batch, reply_text, stop_token_ids
from .rewards import is_right
from .stats import Score, change
from .tokenizer import ENDOFTEXT, token_bytes

STAGES = ["pretrain", "sft", "dpo", "grpo"]

# Each stage's Chinese name, as the notebooks' titles give it; figure titles and table headers
# name a stage in both languages, "预训练 · pretrain".
STAGE_ZH = {
    "pretrain": "预训练",
    "sft": "监督微调",
    "dpo": "直接偏好优化",
    "grpo": "组相对策略优化",
}


def stage_label(stage: str) -> str:
    """A stage's bilingual label, "预训练 · pretrain"; a stage without a Chinese name keeps
    its own."""
    return f"{STAGE_ZH[stage]} · {stage}" if stage in STAGE_ZH else stage


# Loss-like probes fall when a stage works; every other probe is a rate, better when higher.
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte")

# How far a guard may fall (its whole 95% interval) before the report card calls it damaged.
GUARD_MARGIN = 0.15

# Where the report card keeps each role's probes.
ROLES = {"metrics": "target", "guards": "guard", "observed": "observed"}


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of this probe is the better one (losses, perplexity, bits/byte)."""
    return any(metric == k or metric.endswith("_" + k) for k in LOWER_IS_BETTER)


def gain(metric: str, before: float, after: float) -> float:
    """after - before, signed so that a positive gain is always an improvement."""
    return before - after if lower_is_better(metric) else after - before


def measured(before: Score, after: Score) -> dict:
    """One probe's entry of the report card: n, both values with their 95% intervals, and the
    change after - before with its paired 95% interval."""
    delta = change(before, after)
    return {"n": before.n, "before": before.value, "before_ci": list(before.interval()),
            "after": after.value, "after_ci": list(after.interval()),
            "change": delta.value, "change_ci": [delta.low, delta.high]}


def verdict(metric: str, entry: dict, role: str, guard_margin: float = GUARD_MARGIN) -> bool | None:
    """A target improved: the change's interval lies wholly on the good side of 0. A guard
    held: the interval rules out a fall of more than `guard_margin`. An observed probe: None."""
    if role == "observed":
        return None
    low, high = entry["change_ci"]
    worst_gain = -high if lower_is_better(metric) else low  # the least favourable end
    return worst_gain > 0 if role == "target" else worst_gain > -guard_margin


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
        metrics: dict[str, tuple[Score, Score]],
        guards: dict[str, tuple[Score, Score]] | None = None,
        observed: dict[str, tuple[Score, Score]] | None = None,
        **facts,
    ) -> None:
        """Store {probe: (before, after)} as `Score`s on the same items, the guards (probes the
        stage should only leave roughly intact) and the observed probes (measured, not judged) in
        the same form, and run facts (steps, tokens, seconds...) for a stage.

        Later stages' entries are dropped: they measured checkpoints built on the old one.
        """
        if stage in STAGES:
            for later in STAGES[STAGES.index(stage) + 1 :]:
                self.data.pop(later, None)
        entry = {"metrics": {k: measured(b, a) for k, (b, a) in metrics.items()}}
        if guards:
            entry["guards"] = {k: measured(b, a) for k, (b, a) in guards.items()}
        if observed:
            entry["observed"] = {k: measured(b, a) for k, (b, a) in observed.items()}
        entry["facts"] = facts
        self.data[stage] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.path.with_suffix(".md").write_text(self.to_markdown(), encoding="utf-8")

    def entries(self) -> list[tuple[str, str, str, dict]]:
        """(stage, probe, role, entry) in course order: each stage's targets, then its guards,
        then its observed probes."""
        order = STAGES + sorted(set(self.data) - set(STAGES))
        return [
            (stage, name, ROLES[part], entry)
            for stage in order
            if stage in self.data
            for part in ROLES
            for name, entry in self.data[stage].get(part, {}).items()
        ]

    def role(self, stage: str, name: str) -> str:
        """"guard" for a probe the stage only has to leave roughly intact, "observed" for one
        measured and not judged, else "target"."""
        for part, role in ROLES.items():
            if name in self.data.get(stage, {}).get(part, {}):
                return role
        return "target"

    def verdicts(self, guard_margin: float = GUARD_MARGIN, stage: str | None = None) -> list[dict]:
        """Each probe judged by `verdict`. Rows: stage, metric, role, n, before, after, their
        intervals, change and its interval, gain, lower_is_better, ok (None: observed)."""
        return [
            dict(stage=s, metric=name, role=role, **entry,
                 gain=gain(name, entry["before"], entry["after"]),
                 lower_is_better=lower_is_better(name), ok=verdict(name, entry, role, guard_margin))
            for s, name, role, entry in self.entries()
            if stage is None or s == stage
        ]

    def as_quoted(self, *stages: str) -> bool:
        """Whether these stages ran the way the text's ranges were measured: on the profile's
        data (not a DATA_FILE of yours), every weight trained (no LoRA). A later stage checks
        its quoted ranges only then: its start model is another one otherwise."""
        facts = [self.data.get(stage, {}).get("facts", {}) for stage in stages]
        return all(f.get("data", "synthetic") == "synthetic" and not f.get("lora_rank") for f in facts)

    def failures(self, stage: str, guard_margin: float = GUARD_MARGIN) -> list[str]:
        """The probes of `stage` that did not improve (targets) or did not hold (guards), each
        as one readable line: what a checks cell asserts is empty."""
        return [f"{v['metric']} ({v['role']}): {v['before']:.3f} -> {v['after']:.3f}, change "
                f"{v['change']:+.3f} [{v['change_ci'][0]:+.3f}, {v['change_ci'][1]:+.3f}], n={v['n']}"
                for v in self.verdicts(guard_margin, stage) if v["ok"] is False]

    def to_markdown(self) -> str:
        def value(x: float, ci: list[float]) -> str:
            return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

        lines = ["| 阶段 · stage | 探针 · probe | 结论 · ok | n | 之前 · before | 之后 · after | 变化 · change |",
                 "|---|---|:---:|---:|---:|---:|---:|"]
        for v in self.verdicts():
            low, high = v["change_ci"]
            judged = v["ok"] is not None
            name = v["metric"].replace("_", " ") + (" ↓" if judged and v["lower_is_better"] else "")
            role = f" ({v['role']})" if v["role"] != "target" else ""
            ok = "·" if not judged else "✓" if v["ok"] else "✗"
            lines.append(
                f"| {v['stage']} | {name}{role} "
                f"| {ok} | {v['n']} | {value(v['before'], v['before_ci'])} "
                f"| {value(v['after'], v['after_ci'])} | {v['change']:+.3f} [{low:+.3f}, {high:+.3f}] |"
            )
        lines += ["", f"[95% 区间]。✓：变化的整个区间都在更好的一边（护栏指标：排除了超过 {GUARD_MARGIN} 的下降）；"
                  "·：只观察，测量但不评判。 · "
                  "[95% interval]. ✓: the change's whole interval is on the better side (a guard: it rules "
                  f"out a fall of more than {GUARD_MARGIN}); ·: observed, measured and not judged."]
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def before_after_table(probes: dict[str, tuple[Score, Score]], stage: str = "the stage") -> str:
    """A Markdown table of probes measured before and after a stage on the same items: n, both
    values with their 95% intervals in brackets, and the change with its paired 95% interval."""
    rows = [f"| 探针 · probe | n | 之前 · before {stage} | 之后 · after {stage} | 变化 · change |",
            "|---|---:|---:|---:|---:|"]
    for name, (before, after) in probes.items():
        e = measured(before, after)
        pct = max(e["before"], e["after"]) <= 1 and not lower_is_better(name)  # a rate: in %
        f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")
        d = (lambda x: f"{100 * x:+.1f} pt") if pct else (lambda x: f"{x:+.3f}")
        rows.append(f"| {name.replace('_', ' ')} | {e['n']} | {f(e['before'])} [{f(e['before_ci'][0])}, {f(e['before_ci'][1])}] "
                    f"| {f(e['after'])} [{f(e['after_ci'][0])}, {f(e['after_ci'][1])}] "
                    f"| {d(e['change'])} [{d(e['change_ci'][0])}, {d(e['change_ci'][1])}] |")
    return "\n".join(rows) + ("\n\nn：题目数；[95% 区间]；变化在同一批题目上成对测量 · n items; [95% interval]; "
                              "the change is measured on the same items (paired).")


# The training seeds the notebooks' text quotes its ranges over (scripts/seed_ranges.py); the
# checks assert a run lies inside a quoted range only for these seeds.
QUOTED_SEEDS = (42, 7, 2026)


# Set to a file path, `in_range` appends each number there instead of asserting it: how the
# seeds are rerun to measure the ranges again (one run a seed, then read the file).
RECORD_ENV = "MINIMIND_RECORD_QUOTED"


def in_range(what: str, value: float, low: float, high: float) -> None:
    """Assert that a measured number lies in the range the text quotes for it (measured over
    several training seeds), so that the text cannot drift away from what the notebook runs."""
    record = os.environ.get(RECORD_ENV)
    if record:
        with open(record, "a", encoding="utf-8") as file:
            file.write(json.dumps({"what": what, "value": float(value), "quoted": [low, high],
                                   "inside": bool(low <= value <= high)}) + "\n")
        return
    assert low <= value <= high, (f"{what} = {value:.4f} is outside the range the text quotes, "
                                  f"[{low}, {high}]: rerun the seeds and update the text")


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------
def text_bytes(tokenizer) -> torch.Tensor:
    """(vocab,) how many bytes of text each token stands for: its UTF-8 bytes for an ordinary
    token, 0 for a special token (`<|endoftext|>` marks where a document ends; it is not text)."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([0 if i in special else len(token_bytes(tokenizer, i)) for i in range(len(tokenizer))])


@torch.no_grad()
def heldout_loss(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32) -> dict:
    """Next-token loss on held-out documents: {"loss", "bits_per_byte"} as `Score`s over the
    documents, and "perplexity" = e^loss (a float).

    Each document is read as pretraining saw it, after the previous document's end marker:
    `<|endoftext|>` text `<|endoftext|>`, so every token of the text and the closing marker is
    predicted. loss = total nats / predicted tokens. Bits per byte = total nats / (ln 2 x UTF-8
    bytes of the text): the marker's prediction counts (where a document ends is information)
    but adds no bytes, so the number does not depend on how a special token is spelled, nor on
    the tokenizer, and models with different vocabularies compare. A document longer than
    `max_length` tokens is cut, and only the bytes of the tokens predicted count.
    """
    model.eval()
    device = next(model.parameters()).device
    nbytes = text_bytes(tokenizer)
    nats, tokens, nbytes_predicted = [], [], []
    side, tokenizer.padding_side = tokenizer.padding_side, "right"  # targets line up with the text
    try:
        encoded = [tokenizer([ENDOFTEXT + t + ENDOFTEXT for t in texts[start : start + batch_size]],
                             return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                             add_special_tokens=False)
                   for start in range(0, len(texts), batch_size)]
    finally:
        tokenizer.padding_side = side
    for enc in encoded:
        enc = enc.to(device)
        targets = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
        logits = model(**enc).logits[:, :-1].float()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                      reduction="none")
        predicted = targets != -100
        nats += per_token.sum(-1).tolist()
        tokens += predicted.sum(-1).tolist()
        nbytes_predicted += (nbytes[targets.clamp(min=0).cpu()] * predicted.cpu()).sum(-1).tolist()
    loss = Score.of(nats, tokens)
    return {"loss": loss, "perplexity": math.exp(loss.value),
            "bits_per_byte": Score.of([n / math.log(2) for n in nats], nbytes_predicted)}


@torch.no_grad()
def assistant_loss(model, tokenizer, conversations: Sequence[list[dict]], max_length: int,
                   batch_size: int = 16) -> Score:
    """Next-token loss on the assistant's tokens of held-out conversations (the tokens SFT trains
    on: each reply and its `<|im_end|>`), as a `Score` over the conversations: total nats / total
    assistant tokens. A conversation is cut at `max_length` tokens, as SFT cuts it."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for messages in conversations:
        enc = tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        rows.append((enc["input_ids"][:max_length], enc["assistant_masks"][:max_length]))
    nats, tokens = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        targets = torch.full((len(chunk), width), -100, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, mask) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            targets[i, : len(ids)] = torch.tensor([t if m else -100 for t, m in zip(ids, mask, strict=True)])
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, :-1].float()
        shifted = targets[:, 1:].to(device)  # the logits at t predict token t + 1
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), shifted, ignore_index=-100,
                                                      reduction="none")
        nats += per_token.sum(-1).tolist()
        tokens += (shifted != -100).sum(-1).tolist()
    kept = [(n, t) for n, t in zip(nats, tokens, strict=True) if t > 0]  # cut before any reply: nothing to score
    if not kept:
        raise ValueError(f"no assistant token within the first {max_length} tokens of any conversation")
    return Score.of([n for n, _ in kept], [t for _, t in kept])


def groups(items: Sequence[dict]) -> list | None:
    """The items' `group` labels (the fact or sum each asks about), when they all have one."""
    labels = [it.get("group") for it in items]
    return labels if all(g is not None for g in labels) else None


def completion_accuracy(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 12) -> Score:
    """Share of raw-text prompts whose greedy continuation starts with the expected answer."""
    outs = generate_batch(model, tokenizer, [it["prompt"] for it in items], max_new_tokens=max_new_tokens)
    right = [o.strip().startswith(it["answer"]) for o, it in zip(outs, items, strict=True)]
    return Score.of(right, groups=groups(items))


def chat_replies(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 48) -> list[str]:
    """Greedy raw replies (end marker included, if produced) to each item's `messages`."""
    return generate_batch(model, tokenizer, chat_prompts(tokenizer, [it["messages"] for it in items]),
                          max_new_tokens=max_new_tokens)


def accepted_answers(item: dict) -> list[str]:
    """Every answer a probe item accepts: both languages when it lists `answers`, else `answer`."""
    return list(item.get("answers", {}).values()) or [item["answer"]]


def item_is_right(item: dict, text: str) -> bool:
    """The reply text answers the item, by the rule GRPO's reward uses (`rewards.is_right`): one
    of the accepted answers, the country asked about named (`mentions`), a sum's operands
    restated right (`operands`)."""
    return is_right(text, accepted_answers(item), item.get("mentions"), item.get("operands"))


def closed_replies(tokenizer, raw_replies: Sequence[str], groups: Sequence | None = None) -> Score:
    """Share of replies closed by exactly one `<|im_end|>` with nothing after it (template
    compliance): the reply stopped by itself, within the length it was given."""
    return Score.of([reply_text(raw, tokenizer)[1] for raw in raw_replies], groups=groups)


def reply_ids(tokenizer, raw: str) -> list[int]:
    """The tokens a reply was written with: the raw generated text up to its first end marker
    (`<|im_end|>` or `<|endoftext|>`), whitespace and all."""
    ids = tokenizer(raw, add_special_tokens=False)["input_ids"]
    stops = set(stop_token_ids(tokenizer))
    return ids[: next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def reply_lengths(tokenizer, raw_replies: Sequence[str], groups: Sequence | None = None) -> Score:
    """Mean reply length in tokens (`reply_ids`: a reply cut by the length budget counts all its
    tokens), with a bootstrap interval: a mean, even where every length happens to be 0 or 1."""
    lengths = [len(reply_ids(tokenizer, raw)) for raw in raw_replies]
    return Score.of(lengths, den=[1] * len(lengths), groups=groups)


def repetition_rate(tokenizer, raw_replies: Sequence[str], groups: Sequence | None = None) -> Score:
    """Mean share of each reply's 4-token runs that repeat an earlier run of the same reply
    (`rewards.repeated_ngram_share` on `reply_ids`): 0 when no reply repeats itself."""
    from .rewards import repeated_ngram_share

    shares = [repeated_ngram_share(reply_ids(tokenizer, raw)) for raw in raw_replies]
    return Score.of(shares, den=[1] * len(shares), groups=groups)


@torch.no_grad()
def kl_to_reference(model, reference, tokenizer, prompts: Sequence[str], raw_replies: Sequence[str],
                    batch_size: int = 32) -> Score:
    """How far the model has moved from the reference on its own replies: at each token of each
    reply (the raw generated text after its prompt), the exact KL(model || reference) over the
    whole vocabulary; a `Score` of total nats / total reply tokens. 0 for the reference itself."""
    model.eval()
    reference.eval()
    device = next(model.parameters()).device
    rows = []
    for prompt, raw in zip(prompts, raw_replies, strict=True):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(raw, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + reply_ids, len(prompt_ids)))
    nats, tokens = [], []
    for start in range(0, len(rows), batch_size):
        input_ids, attention, predicts_reply = padded_rows(rows[start : start + batch_size], tokenizer.pad_token_id)
        inputs = dict(input_ids=input_ids.to(device), attention_mask=attention.to(device))
        logp = model(**inputs).logits[:, :-1].float().log_softmax(-1)
        logq = reference(**inputs).logits[:, :-1].float().log_softmax(-1)
        per_token = (logp.exp() * (logp - logq)).sum(-1) * predicts_reply.to(device)
        nats += per_token.sum(-1).tolist()
        tokens += predicts_reply.sum(-1).tolist()
    return Score.of(nats, [max(t, 1) for t in tokens])  # an empty reply: 0 nats over 1


def qa_scores(tokenizer, items: Sequence[dict], raw_replies: Sequence[str]) -> dict[str, Score]:
    """Answer accuracy (`item_is_right`; either language counts when the item lists `answers`)
    and template compliance (the reply is closed by `<|im_end|>` with nothing after it)."""
    right = [item_is_right(it, reply_text(raw, tokenizer)[0]) for it, raw in zip(items, raw_replies, strict=True)]
    return {"accuracy": Score.of(right, groups=groups(items)),
            "template_compliance": closed_replies(tokenizer, raw_replies, groups(items))}


def language_match_rate(tokenizer, items: Sequence[dict], raw_replies: Sequence[str]) -> Score:
    """Share of replies written in the language of the question (`item["lang"]`): the
    behaviour the synthetic DPO pairs prefer."""
    from .synthetic import reply_language

    matches = [reply_language(reply_text(raw, tokenizer)[0]) == it["lang"]
               for it, raw in zip(items, raw_replies, strict=True)]
    return Score.of(matches, groups=groups(items))


def completion_logps(model, tokenizer, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                     batch_size: int = 32) -> torch.Tensor:
    """log p(completion | prompt) for each pair of chat messages: the log-probabilities of the
    completion's tokens, summed, as DPO scores a reply. Shape (N,).

    The completion's tokens are those after the rendered prompt (with its generation prompt):
    the reply, its `<|im_end|>` and whatever the template adds after it.
    """
    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)["input_ids"]
        ids = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=True)["input_ids"]
        if ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError("the rendered prompt is not a prefix of the rendered prompt + completion")
        rows.append((ids, len(prompt_ids)))
    return continuation_logps(model, rows, tokenizer.pad_token_id, batch_size)


def padded_rows(rows: Sequence[tuple[list[int], int]], pad_token_id: int):
    """Rows of (token ids, where the scored part starts), right-padded into one batch:
    input_ids and attention_mask (B, W), and `predicts` (B, W - 1), True where the logits at
    position t predict a scored token t + 1."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    predicts = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (ids, start) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        predicts[i, max(start - 1, 0) : len(ids) - 1] = True
    return input_ids, attention, predicts


@torch.no_grad()
def continuation_logps(model, rows: Sequence[tuple[list[int], int]], pad_token_id: int,
                       batch_size: int = 32) -> torch.Tensor:
    """log p(ids[start:] | ids[:start]) for each row (token ids, start): the log-probabilities
    of the tokens from `start` on, summed. Shape (N,)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for first in range(0, len(rows), batch_size):
        input_ids, attention, predicts = padded_rows(rows[first : first + batch_size], pad_token_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, :-1].float()
        logps = logits.log_softmax(-1).gather(-1, input_ids[:, 1:, None].to(device)).squeeze(-1)
        out.append((logps * predicts.to(device)).sum(-1).cpu())
    return torch.cat(out)


def preference_scores(model, tokenizer, pairs: Sequence[dict], reference=None) -> dict:
    """How often the model prefers `chosen` to `rejected` on trl-style preference pairs
    (`prompt`, `chosen`, `rejected` as chat messages).

    Without a reference the margin is log p(chosen) - log p(rejected). With one it is DPO's
    implicit reward margin (divided by beta): (log pi/ref of chosen) - (log pi/ref of rejected).
    Returns the accuracy (a `Score`: the share of margins > 0), the mean margin in nats, and
    the margins.
    """
    prompts = [p["prompt"] for p in pairs]
    chosen = completion_logps(model, tokenizer, prompts, [p["chosen"] for p in pairs])
    rejected = completion_logps(model, tokenizer, prompts, [p["rejected"] for p in pairs])
    if reference is not None:  # log-ratios first, so that a model compared with itself gets exactly 0
        chosen = chosen - completion_logps(reference, tokenizer, prompts, [p["chosen"] for p in pairs])
        rejected = rejected - completion_logps(reference, tokenizer, prompts, [p["rejected"] for p in pairs])
    margin = chosen - rejected
    return {"accuracy": Score.of((margin > 0).tolist(), groups=groups(pairs)), "margin": margin.mean().item(),
            "margins": margin}


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
