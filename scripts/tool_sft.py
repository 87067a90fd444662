"""Teach the course's final model the synthetic `lookup` tool, then ask it held-out questions.

07's tool section shows the loop with a model that never learned the format. This script runs
the experiment the course leaves out: a short SFT (trl's SFTTrainer, the assistant turns only)
on the synthetic tool chats (`sft_tools.jsonl`), starting from the last stage that exists,
then every held-out fact question of `eval_qa.jsonl` asked twice, with the tool list in
front (through `tools.answer_batch_with_tools`, the tool run in Python) and without it.
Nothing is saved: the course's checkpoints stay as they were.

    .venv/bin/python scripts/tool_sft.py --steps 300

Four rates, each with n and its 95% Wilson interval:
the share of questions answered with a well-formed call, with the right call (the country
and relation asked about), answered right with the tool, and answered right without it.

Measured 2026-12-04 on 2 CPU cores (AVX512-BF16), tiny profile, seed 42's course (its GRPO
model), the defaults (300 steps of 16 at lr 1e-3, 134 s with the machine to itself), 200
questions: a well-formed call 100% (98.1-100.0%), the right call 84.5% (78.8-88.9%), right
with the tool 53.5% (46.6-60.3%), right without it 69.5% (62.8-75.5%). The model learns the
format and mostly the arguments, but it answers from memory, and worse than without the tool.
A likely reason: in these chats the tool's result always agrees with what the model already
knows, so reading it never paid. Run it alone: next to another torch job on the same 2 cores,
the same 300 steps took 867 s.
"""

from __future__ import annotations

import argparse
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
from minimind_lib.stats import Score  # noqa: E402


def right_call(item: dict, calls: list[dict]) -> bool:
    """The first call asks the tool about the item's country (either name) and relation."""
    if not calls:
        return False
    arguments = calls[0]["arguments"]
    asked = arguments.get("country") in item["mentions"]  # its English or Chinese name
    return asked and arguments.get("relation") == item["relation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="a profile on the synthetic data")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=384, help="tokens (a tool chat: 344-364)")
    args = parser.parse_args()

    import torch
    from trl import SFTConfig, SFTTrainer

    profile = get_profile(args.profile)
    if profile.data != "synthetic":
        sys.exit(f"{profile.name}: the tool and its chats are synthetic; use the tiny profile")
    stage = latest_stage(profile)
    if stage is None:
        sys.exit(f"no checkpoint under {profile.out_dir}: run the course first (make course)")
    synthetic.ensure_dataset(profile)
    model, tokenizer = load_stage(profile, stage)
    chats = data.load_sft(profile.data_dir / synthetic.OUTPUT_FILES["sft_tools"])
    print(f"{stage} model, {len(chats):,} tool chats, {args.steps} steps of {args.batch}")

    with tempfile.TemporaryDirectory() as run_dir:
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
            seed=profile.seed,
        )
        started = time.perf_counter()
        SFTTrainer(
            model=model, args=config, train_dataset=chats, processing_class=tokenizer
        ).train()
        print(f"trained in {time.perf_counter() - started:.0f} s")
    model.eval()

    world = synthetic.build_world(profile.data_seed)
    functions = {"lookup": lambda country, relation: synthetic.lookup(world, country, relation)}
    tools_turn = {"role": "system", "content": "", "tools": [synthetic.LOOKUP_TOOL]}
    items = data.read_jsonl(profile.data_dir / synthetic.OUTPUT_FILES["eval_qa"])
    with torch.no_grad():
        asked = [[tools_turn, *it["messages"]] for it in items]
        with_tool = tools.answer_batch_with_tools(
            model, tokenizer, asked, functions, max_new_tokens=96
        )
        prompts = chat_prompts(tokenizer, [it["messages"] for it in items])
        plain = generate_batch(model, tokenizer, prompts, 48)
    answers = [reply_text(raw, tokenizer)[0] for raw in plain]
    rates = {
        "a well-formed call": [],
        "the right call": [],
        "right with the tool": [],
        "right without it": [],
    }
    for item, reply, answer in zip(items, with_tool, answers, strict=True):
        rates["a well-formed call"].append(bool(reply["calls"]))
        rates["the right call"].append(right_call(item, reply["calls"]))
        rates["right with the tool"].append(item_is_right(item, reply["answer"]))
        rates["right without it"].append(item_is_right(item, answer))
    for name, values in rates.items():
        score = Score.of(values, groups=groups(items))
        low, high = score.interval()
        print(f"{name:<22} {score:.1%}  (n={score.n}, 95% interval {low:.1%}-{high:.1%})")


if __name__ == "__main__":
    main()
