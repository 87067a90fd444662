"""SFT on padded rows vs packed rows: the same conversations, the same trainer, end to end.

`trl.SFTTrainer` (assistant-only loss) over the first N conversations of the synthetic SFT
set, one epoch, once with padded batches (each as long as its longest conversation) and
once with `minimind_lib.packing` (whole conversations packed into rows of `seq_len`
tokens). Reported: rows, padding share, optimizer steps, seconds, conversations and real
tokens a second and the speed-up. Runs alternate and the median is kept. (That packing
computes the same loss on the same conversations is tested in tests/test_packing.py; an
epoch of packed rows takes fewer, larger optimizer steps.)

    python bench/sft_packing.py --threads 2 --profiles tiny full
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer, PrinterCallback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import machine  # noqa: E402  (bench/common.py)

from minimind_lib import data, packing  # noqa: E402
from minimind_lib.model import MiniMindForCausalLM, config_from_profile  # noqa: E402
from minimind_lib.profiles import get_profile  # noqa: E402
from minimind_lib.tokenizer import train_tokenizer  # noqa: E402

SFT_FILE = Path(__file__).resolve().parent.parent / "dataset" / "synthetic" / "sft_mini_512.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profiles", nargs="+", default=["tiny", "full"])
    p.add_argument("--conversations", type=int, default=512)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CPUs with AVX512-BF16, GPUs)")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def tokenizer_for(profile):
    """The course's tokenizer of this profile (or of `tiny`) when 01 has run, else one
    trained here on the synthetic SFT text (the model keeps the profile's vocabulary size)."""
    for saved in (profile.stage_dir("tokenizer"), get_profile("tiny").stage_dir("tokenizer")):
        if (saved / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(saved)
    rows = data.read_jsonl(SFT_FILE)[:2000]
    text = [m["content"] for r in rows for m in r["conversations"]]
    return train_tokenizer(text, vocab_size=config_from_profile(profile).vocab_size)


def run(profile_name: str, packed: bool, args, conversations, tok) -> dict:
    from trl import SFTConfig, SFTTrainer

    profile = get_profile(profile_name)
    torch.manual_seed(0)
    config = config_from_profile(profile)
    config.vocab_size = max(config.vocab_size, len(tok))  # the profile's head unless the tokenizer is larger
    model = MiniMindForCausalLM(config)
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(
            output_dir=out,
            num_train_epochs=1,
            per_device_train_batch_size=args.batch,
            learning_rate=1e-4,
            max_length=args.seq_len,
            assistant_only_loss=True,
            packing=False,
            activation_checkpointing=False,
            bf16=args.bf16,
            use_cpu=not torch.cuda.is_available(),
            report_to=[],
            logging_steps=10,
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=conversations, processing_class=tok)
        trainer.remove_callback(PrinterCallback)  # the losses are read from the log history
        rows = trainer.train_dataset
        lengths = packing.row_lengths(rows)
        tokens = sum(lengths)
        stats = {"rows": len(rows), "padding": packing.padding_share(lengths, args.batch)}
        if packed:
            p = packing.use_packed_rows(trainer, args.seq_len)
            stats = {"rows": p["rows_after"], "padding": p["padding_after"]}
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {
        **stats,
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "tokens": tokens,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    print(
        f"{machine('cuda' if torch.cuda.is_available() else 'cpu')}; {args.conversations} conversations, batch {args.batch}, "
        f"rows of {args.seq_len} tokens, {'bf16 autocast' if args.bf16 else 'fp32'}"
    )
    print("\n| dims | rows | padding | steps | seconds | conversations/s | real tokens/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.profiles:
        profile = get_profile(name)
        tok = tokenizer_for(profile)
        convs = data.load_sft(SFT_FILE).select(range(args.conversations))
        results = {False: [], True: []}
        for r in range(args.rounds):
            for packed in (False, True) if r % 2 == 0 else (True, False):
                results[packed].append(run(name, packed, args, convs, tok))
        seconds = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
        for packed in (False, True):
            x = results[packed][0]
            print(
                f"| {name} {'packed' if packed else 'padded'} | {x['rows']:,} | {x['padding']:.0%} "
                f"| {x['steps']} | {seconds[packed]:.1f} | {args.conversations / seconds[packed]:,.0f} "
                f"| {x['tokens'] / seconds[packed]:,.0f} | x{seconds[False] / seconds[packed]:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
