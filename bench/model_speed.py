"""Model speed: training-step and generation throughput of MiniMind at the profiles' sizes.

Measures, for each profile (`tiny`, `full`) and precision (fp32, bf16 autocast):
- training tokens/s: one step = forward + backward + AdamW step on a random batch;
- generation tokens/s, batch 1, greedy, with and without the KV cache;
- peak memory of a training step, measured in a fresh subprocess per configuration.

Machines shared with other jobs are noisy, so every configuration is warmed up, then the
configurations are timed in alternating rounds and the median per configuration is kept.

    python bench/model_speed.py                      # defaults: about 2-3 minutes on 2 idle CPU cores
    python bench/model_speed.py --threads 2 --json bench/results/model_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import machine, rotated, status_kib  # noqa: E402  (bench/common.py)

from minimind_lib.model import MiniMindForCausalLM, config_from_profile, count_parameters  # noqa: E402
from minimind_lib.profiles import get_profile  # noqa: E402

DTYPES = ("fp32", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profiles", nargs="+", default=["tiny", "full"], help="model sizes to measure")
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES,
                   help="fp32, or bf16 autocast (fp32 weights, bf16 matmuls)")
    p.add_argument("--batch", type=int, default=16, help="training batch size")
    p.add_argument("--seq", type=int, default=256, help="training sequence length")
    p.add_argument("--gen-prompt", type=int, default=32, help="prompt length for generation (batch 1)")
    p.add_argument("--gen-new", type=int, default=64, help="new tokens per generation")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each configuration first")
    p.add_argument("--rounds", type=int, default=5, help="timed runs of each configuration, alternated")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory subprocesses")
    p.add_argument("--json", type=Path, default=None, help="also write all samples and results here")
    p.add_argument("--seed", type=int, default=0)
    # Internal: measure one training configuration's peak memory in this (fresh) process.
    p.add_argument("--memory-child", nargs=2, metavar=("PROFILE", "DTYPE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def autocast(device: str, dtype: str):
    return torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Bench:
    """One model (fp32 weights) + AdamW, and the timed operations on it."""

    def __init__(self, profile: str, args: argparse.Namespace):
        torch.manual_seed(args.seed)
        self.args, self.device = args, args.device
        self.config = config_from_profile(get_profile(profile))
        self.model = MiniMindForCausalLM(self.config).to(self.device)
        self.params = count_parameters(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        vocab = self.config.vocab_size
        # Token ids >= 3 avoid the pad/bos/eos ids; any ids are fine for timing.
        self.batch = torch.randint(3, vocab, (args.batch, args.seq), device=self.device)
        self.prompt = torch.randint(3, vocab, (1, args.gen_prompt), device=self.device)

    def train_step(self, dtype: str) -> None:
        self.model.train()
        with autocast(self.device, dtype):
            loss = self.model(self.batch, labels=self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def generate(self, dtype: str, use_cache: bool) -> None:
        self.model.eval()
        n = self.args.gen_new
        with autocast(self.device, dtype):
            out = self.model.generate(self.prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                      use_cache=use_cache, pad_token_id=0)
        assert out.shape[1] == self.args.gen_prompt + n  # min_new_tokens keeps every run the same length

    def timed(self, task: str, dtype: str) -> float:
        run = {"train": lambda: self.train_step(dtype),
               "gen_cache": lambda: self.generate(dtype, True),
               "gen_nocache": lambda: self.generate(dtype, False)}[task]
        sync(self.device)
        start = time.perf_counter()
        run()
        sync(self.device)
        return time.perf_counter() - start


def memory_child(args: argparse.Namespace) -> None:
    """Peak memory of two training steps, counted from before the model exists.

    CPU: peak resident set (VmHWM) minus the resident set after the imports: weights, gradients,
    AdamW state, activations and allocator slack. (Not ru_maxrss: Linux carries it over from the
    parent process.) CUDA: max_memory_allocated, the same items minus the allocator's reserve.
    """
    profile, dtype = args.memory_child
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # restart the peak from the current RSS
        except OSError:
            pass  # then the peak may include the imports' own high-water mark
        before = status_kib("VmRSS")
    bench = Bench(profile, args)
    for _ in range(2):  # the first step allocates AdamW state; the second runs with it in place
        bench.train_step(dtype)
    sync(args.device)
    if args.device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (status_kib("VmHWM") - before) / 1024
    print(json.dumps({"peak_mib": round(peak_mib, 1)}))


def measure_memory(profile: str, dtype: str, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--memory-child", profile, dtype, "--device", args.device,
           "--batch", str(args.batch), "--seq", str(args.seq), "--seed", str(args.seed)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        print(f"memory measurement failed for {profile}/{dtype}:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def run(args: argparse.Namespace) -> dict:
    benches = {name: Bench(name, args) for name in args.profiles}
    configs = [(name, dtype, task) for name in args.profiles for dtype in args.dtypes
               for task in ("train", "gen_cache", "gen_nocache")]
    for name, dtype, task in configs:
        for _ in range(args.warmup):
            benches[name].timed(task, dtype)
    samples = {c: [] for c in configs}
    for r in range(args.rounds):
        # Rotate the order each round so no configuration always runs right after the same one.
        for c in rotated(configs, r):
            samples[c].append(benches[c[0]].timed(c[2], c[1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    rows = []
    for name in args.profiles:
        for dtype in args.dtypes:
            med = {task: statistics.median(samples[(name, dtype, task)]) for task in ("train", "gen_cache", "gen_nocache")}
            rows.append({
                "profile": name,
                "params": benches[name].params,
                "dtype": dtype,
                "train_tok_s": args.batch * args.seq / med["train"],
                "train_step_s": med["train"],
                "gen_cache_tok_s": args.gen_new / med["gen_cache"],
                "gen_nocache_tok_s": args.gen_new / med["gen_nocache"],
                "cache_speedup": med["gen_nocache"] / med["gen_cache"],
                "train_peak_mib": None if args.no_memory else measure_memory(name, dtype, args),
            })
    return {"rows": rows, "samples_s": {"/".join(c): s for c, s in samples.items()}}


def table(result: dict, args: argparse.Namespace) -> str:
    mem = "peak GPU memory allocated" if args.device == "cuda" else "peak RSS growth"
    lines = [
        f"| profile | params | precision | train tok/s ({args.batch}x{args.seq}) | s/step "
        f"| gen tok/s, cache | gen tok/s, no cache | cache speed-up | train step, {mem} (MiB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        peak = "-" if r["train_peak_mib"] is None else f"{r['train_peak_mib']:.0f}"
        precision = "fp32" if r["dtype"] == "fp32" else "bf16 autocast"
        lines.append(
            f"| {r['profile']} | {r['params'] / 1e6:.2f}M | {precision} | {r['train_tok_s']:,.0f} "
            f"| {r['train_step_s']:.2f} | {r['gen_cache_tok_s']:.0f} | {r['gen_nocache_tok_s']:.0f} "
            f"| x{r['cache_speedup']:.1f} | {peak} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    if args.memory_child:
        memory_child(args)
        return 0
    start = time.perf_counter()
    result = run(args)
    print(f"{machine(args.device)}; generation: batch 1, {args.gen_prompt}-token prompt + {args.gen_new} new tokens, "
          f"greedy; medians of {args.rounds} rounds after {args.warmup} warm-up\n")
    print(table(result, args))
    # A busy machine shows up as a wide spread between a configuration's fastest and slowest run.
    spread, worst = max((max(v) / min(v), k) for k, v in result["samples_s"].items())
    print(f"\nnoise: slowest / fastest run of one configuration up to x{spread:.1f} ({worst})")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "memory_child")}
        args.json.write_text(json.dumps({"machine": machine(args.device), "settings": settings, "date": time.strftime("%Y-%m-%d"),
                                         **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
