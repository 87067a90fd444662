"""Does the transformers Trainer train as well as a plain PyTorch loop?

Same model initialisation, same packed blocks in the same order, same AdamW settings,
schedule, clipping and number of steps: once through `Trainer`, once through a hand-written
loop. Prints the final losses side by side and each path's tokens/s.

    python bench/trainer_parity.py [--steps 300] [--batch 16] [--seq 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments, get_cosine_schedule_with_warmup
from transformers.trainer_callback import PrinterCallback

from minimind_lib import data, synthetic
from minimind_lib.model import MiniMindForCausalLM, config_from_profile
from minimind_lib.profiles import TINY
from minimind_lib.tokenizer import ENDOFTEXT, train_tokenizer

LR, WARMUP_SHARE, WEIGHT_DECAY, BETAS, CLIP = 3e-3, 0.05, 0.1, (0.9, 0.95), 1.0


def packed_blocks(seq: int, needed: int) -> torch.Tensor:
    """(N, seq) token blocks of the synthetic pretraining text, documents joined end to end."""
    texts = data.load_pretrain(synthetic.ensure_dataset(TINY) / "pretrain_hq.jsonl")["text"]
    tokenizer = train_tokenizer(texts[:4000], TINY.model.vocab_size)
    stream: list[int] = []
    for ids in tokenizer([t + ENDOFTEXT for t in texts], add_special_tokens=False)["input_ids"]:
        stream += ids
    n = min(len(stream) // seq, needed)
    if n < needed:
        raise SystemExit(f"only {n} blocks of {seq} tokens; ask for fewer steps or a smaller batch")
    return torch.tensor(stream[: n * seq]).view(n, seq)


def fresh_model(seed: int) -> MiniMindForCausalLM:
    torch.manual_seed(seed)
    return MiniMindForCausalLM(config_from_profile(TINY))


def with_trainer(blocks: torch.Tensor, args) -> tuple[list[float], float]:
    model = fresh_model(args.seed)
    dataset = Dataset.from_dict({"input_ids": blocks.tolist(), "labels": blocks.tolist()})
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=LR,
            lr_scheduler_type="cosine",
            warmup_steps=int(WARMUP_SHARE * args.steps),
            weight_decay=WEIGHT_DECAY,
            adam_beta1=BETAS[0],
            adam_beta2=BETAS[1],
            max_grad_norm=CLIP,
            train_sampling_strategy="sequential",  # the same order as the plain loop
            use_cpu=not torch.cuda.is_available(),
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=args.seed,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=dataset)
        trainer.remove_callback(PrinterCallback)  # keep the output to the comparison table
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, seconds


def with_plain_loop(blocks: torch.Tensor, args) -> tuple[list[float], float]:
    model = fresh_model(args.seed).train()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    # Weight decay on matrices only (norm weights are vectors), as Trainer does.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR,
        betas=BETAS,
    )
    sched = get_cosine_schedule_with_warmup(opt, int(WARMUP_SHARE * args.steps), args.steps)
    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        batch = blocks[step * args.batch : (step + 1) * args.batch].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    blocks = packed_blocks(args.seq, args.steps * args.batch)
    trainer_losses, trainer_s = with_trainer(blocks, args)
    plain_losses, plain_s = with_plain_loop(blocks, args)

    tokens = args.steps * args.batch * args.seq
    tail = max(args.steps // 10, 1)  # average the last 10% of steps: one step's loss is noisy
    t_final = sum(trainer_losses[-tail:]) / tail
    p_final = sum(plain_losses[-tail:]) / tail
    first_diff = abs(trainer_losses[0] - plain_losses[0])
    print(f"{args.steps} steps x {args.batch} x {args.seq} tokens, tiny dims, {args.threads} threads\n")
    print("| path | first-step loss | final loss (mean of last 10%) | tokens/s |")
    print("|---|---:|---:|---:|")
    print(f"| transformers Trainer | {trainer_losses[0]:.4f} | {t_final:.4f} | {tokens / trainer_s:,.0f} |")
    print(f"| plain PyTorch loop | {plain_losses[0]:.4f} | {p_final:.4f} | {tokens / plain_s:,.0f} |")
    rel = abs(t_final - p_final) / p_final
    print(f"\nfinal-loss difference: {rel:.2%} (first-step difference {first_diff:.2e})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "trainer": trainer_losses, "plain": plain_losses,
                       "trainer_seconds": trainer_s, "plain_seconds": plain_s}, f)
    if not math.isfinite(rel):
        raise SystemExit("a loss is not finite")


if __name__ == "__main__":
    main()
