"""Teach the course's final model the synthetic `lookup` tool, then ask it held-out questions.

07's tool section shows the loop with a model that never learned the format. This script runs
the SFT that teaches it: trl's SFTTrainer on the synthetic tool chats (`sft_tools.jsonl`, the
assistant turns only), starting from the last stage that exists, then every held-out fact
question of `eval_qa.jsonl` asked three ways: with the tool list in front (through
`tools.answer_batch_with_tools`, the tool run in Python), without it, and with a tool that
answers a different value than the world's. The tool-tuned model is saved to
`out/<profile>/tool_sft` (07 uses it when it is there); the course's stages stay as they were.

    .venv/bin/python scripts/tool_sft.py            # about 8 minutes on 2 cores

In `sft_tools.jsonl` the tool's result always agrees with what pretraining taught, so a model
can answer from memory and never read it; that is what it did when trained on the file as it
is (300 steps: right with the tool 53.5%, without it 69.5%). `--changed 0.5` (the default) changes half of
the results to another value and the answer with them (`synthetic.with_changed_results`): only
reading the result is then right every time.

Measured (`QUOTED`, three seeds, about 7.5 minutes of training each): the format is learned
every time, reading the result is not. Right with the tool 46.0-68.5% against 55.5-65.5%
without (better on seed 42, worse on 7, within the intervals on 2026); a changed tool is
followed in only 12.5-27.5% of the questions; and the plain answers fall from the final model's
81% to 55.5-65.5%. Also tried on seed 42: 75% changed (right with the tool 52.0%, without 70.5%,
follows 32.5%) and a length-grouped sampler (faster, but the model did not read at all).

Five rates, each with n and its 95% Wilson interval: the share of questions answered with a
well-formed call, with the right call (the country and relation asked about), answered right
with the tool, answered right without it, and answered with the value of a tool that disagrees
with the world (`follows a changed tool`: reading, not memory). The ranges measured are in
`QUOTED` below; the run says whether it falls inside them. Run it alone: next to another torch
job on the same 2 cores it takes several times as long.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from minimind_lib import data, synthetic, tools  # noqa: E402
from minimind_lib.chat import (  # noqa: E402
    chat_prompts,
    generate_batch,
    latest_stage,
    load_stage,
    reply_text,
)
from minimind_lib.evals import groups, item_is_right  # noqa: E402
from minimind_lib.profiles import get_profile  # noqa: E402
from minimind_lib.rewards import is_right  # noqa: E402
from minimind_lib.stats import Score  # noqa: E402

# Measured on tiny, seed 42's course (its GRPO model), the defaults, --seed 42, 1 and 2,
# 2 CPU cores (AVX512-BF16), 2026-12-04: the lowest and highest rate of the three runs.
PROBES = ("a well-formed call", "the right call", "right with the tool", "right without it",
          "follows a changed tool")
QUOTED = {
    "a well-formed call": (1.0, 1.0),
    "the right call": (0.925, 1.0),
    "right with the tool": (0.46, 0.685),
    "right without it": (0.555, 0.655),
    "follows a changed tool": (0.125, 0.275),
}


def right_call(item: dict, calls: list[dict]) -> bool:
    """The first call asks the tool about the item's country (either name) and relation."""
    if not calls:
        return False
    arguments = calls[0]["arguments"]
    asked = arguments.get("country") in item["mentions"]  # its English or Chinese name
    return asked and arguments.get("relation") == item["relation"]


def changed_lookup(world: synthetic.World, seed: int):
    """A `lookup` that answers each fact with another value (the same one every time)."""
    rng, values = random.Random(seed), {}

    def lookup(country: str, relation: str) -> str:
        for c in world.countries:
            for lang in synthetic.LANGS:
                if c["name"][lang] == country and relation in synthetic.RELATIONS:
                    fact = synthetic.Fact(c["name"], relation, c[relation])
                    if fact.key not in values:
                        values[fact.key] = synthetic.other_value(rng, world, fact)
                    return values[fact.key][lang]
        return synthetic.lookup(world, country, relation)  # its error text

    return lookup, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="a profile on the synthetic data")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--changed", type=float, default=0.5,
                        help="share of the tool chats whose result is changed (0: the file as is)")
    parser.add_argument("--seed", type=int, default=None, help="default: the profile's seed")
    parser.add_argument("--max-length", type=int, default=384, help="tokens (a tool chat: 344-364)")
    parser.add_argument("--save", type=Path, default=None,
                        help="where the tool-tuned model goes (default out/<profile>/tool_sft)")
    args = parser.parse_args()

    import torch
    from trl import SFTConfig, SFTTrainer

    profile = get_profile(args.profile)
    if profile.data != "synthetic":
        sys.exit(f"{profile.name}: the tool and its chats are synthetic; use the tiny profile")
    stage = latest_stage(profile)
    if stage is None:
        sys.exit(f"no checkpoint under {profile.out_dir}: run the course first (make course)")
    seed = profile.seed if args.seed is None else args.seed
    save = args.save or profile.out_dir / "tool_sft"
    synthetic.ensure_dataset(profile)
    model, tokenizer = load_stage(profile, stage)
    world = synthetic.build_world(profile.data_seed)
    path = profile.data_dir / synthetic.OUTPUT_FILES["sft_tools"]
    # Each time a chat comes round (an epoch of the file), its result is changed afresh: a
    # model that learned one changed value per chat could still answer from memory.
    rows = data.read_jsonl(path)
    epochs = -(-args.steps * args.batch // len(rows))  # rounded up
    rows = [row for epoch in range(epochs)
            for row in synthetic.with_changed_results(rows, world, args.changed, seed + epoch)]
    with tempfile.TemporaryDirectory() as run_dir:
        changed_file = Path(run_dir) / path.name
        changed_file.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        chats = data.load_sft(changed_file, cache_dir=Path(run_dir) / "cache")
        print(f"{stage} model, {len(rows) // epochs:,} tool chats x {epochs} "
              f"({args.changed:.0%} of the results changed in each), "
              f"{args.steps} steps of {args.batch}, seed {seed}")
        config = SFTConfig(
            output_dir=run_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=args.lr,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            max_length=args.max_length,
            assistant_only_loss=True,
            packing=False,
            use_cpu=not torch.cuda.is_available(),
            report_to=[],
            save_strategy="no",
            logging_steps=max(args.steps // 5, 1),
            seed=seed,
        )
        started = time.perf_counter()
        SFTTrainer(
            model=model, args=config, train_dataset=chats, processing_class=tokenizer
        ).train()
        print(f"trained in {time.perf_counter() - started:.0f} s")
    model.eval()
    model.save_pretrained(save)
    tokenizer.save_pretrained(save)
    print(f"saved to {save}")

    functions = {"lookup": lambda country, relation: synthetic.lookup(world, country, relation)}
    other, other_values = changed_lookup(world, seed)
    tools_turn = {"role": "system", "content": "", "tools": [synthetic.LOOKUP_TOOL]}
    items = data.read_jsonl(profile.data_dir / synthetic.OUTPUT_FILES["eval_qa"])
    asked = [[tools_turn, *it["messages"]] for it in items]
    with torch.no_grad():
        with_tool = tools.answer_batch_with_tools(model, tokenizer, asked, functions, 96)
        with_other = tools.answer_batch_with_tools(model, tokenizer, asked, {"lookup": other}, 96)
        prompts = chat_prompts(tokenizer, [it["messages"] for it in items])
        plain = generate_batch(model, tokenizer, prompts, 48)
    answers = [reply_text(raw, tokenizer)[0] for raw in plain]
    rates = {name: [] for name in PROBES}
    for item, reply, answer, changed in zip(items, with_tool, answers, with_other, strict=True):
        told = other_values.get((item["mentions"][0], item["relation"]))  # None: no right call
        rates["a well-formed call"].append(bool(reply["calls"]))
        rates["the right call"].append(right_call(item, reply["calls"]))
        rates["right with the tool"].append(item_is_right(item, reply["answer"]))
        rates["right without it"].append(item_is_right(item, answer))
        rates["follows a changed tool"].append(
            right_call(item, changed["calls"]) and told is not None
            and is_right(changed["answer"], [told.en, told.zh], item["mentions"])
        )
    outside = []
    for name, values in rates.items():
        score = Score.of(values, groups=groups(items))
        low, high = score.interval()
        quoted = QUOTED.get(name)
        mark = "" if quoted is None else f"   quoted {quoted[0]:.1%}-{quoted[1]:.1%}"
        if quoted and not quoted[0] <= score.value <= quoted[1]:
            outside.append(name)
            mark += "  OUTSIDE"
        print(f"{name:<24} {score:.1%}  (n={score.n}, 95% interval {low:.1%}-{high:.1%}){mark}")
    if outside:
        print(f"outside the quoted ranges: {', '.join(outside)}")


if __name__ == "__main__":
    main()
