"""Fast paths vs the plain eager model: training and generation throughput, matmul peak, memory.

With alternating timed runs (medians and ratios, never single times):
- the bf16 and fp32 matmul peak of this device (large square products, best shape kept);
- training (forward + loss + backward + AdamW step on a random B x T batch) at the `tiny`
  and `full` dims: the model as written, eagerly, in fp32 and with bf16 autocast, vs the
  fast path of `minimind_lib.speed` (torch.compile of model + loss, which on CPU also
  attends with `speed.matmul_attention`; bf16 autocast; fused AdamW; the C allocator keeping
  freed memory, `speed.keep_freed_memory`), and the two halves of it on their own. Each path
  runs in fresh processes (the allocator setting is per process), alternated over rounds;
  achieved FLOP/s (6 * parameters * tokens/s) as a share of the bf16 peak; the compile time
  and the number of steps it takes to win it back; the peak memory of a step;
- greedy generation at batch 1 and 8: `model.generate` (DynamicCache) vs
  `speed.greedy_generate` (static KV cache + compiled one-token step), with the check that
  both return exactly the same tokens.

    python bench/fast_paths.py --threads 2 --json bench/results/fast_paths.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import json_child, machine, rotated, status_kib  # noqa: E402  (bench/common.py)

from minimind_lib import speed  # noqa: E402
from minimind_lib.model import MiniMindForCausalLM, config_from_profile, count_parameters  # noqa: E402
from minimind_lib.profiles import get_profile  # noqa: E402

# Training paths: (bf16 autocast, compiled model + fused AdamW, speed.keep_freed_memory()).
# "fast" is what minimind_lib.speed turns on; the two between show what each part brings.
TRAIN_PATHS = {
    "eager fp32": (False, False, False),
    "eager bf16": (True, False, False),
    "eager bf16 + kept memory": (True, False, True),
    "compiled bf16": (True, True, False),
    "fast": (True, True, True),
}
GEN_PATHS = ("generate", "fast")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profiles", nargs="+", default=["tiny", "full"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--gen-batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--gen-prompt", type=int, default=32)
    p.add_argument("--gen-new", type=int, default=64)
    p.add_argument(
        "--rounds", type=int, default=5, help="timed runs of each configuration, alternated"
    )
    p.add_argument(
        "--train-rounds", type=int, default=3, help="fresh processes per training path, alternated"
    )
    p.add_argument("--train-steps", type=int, default=4, help="timed steps in each of them")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-gen", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-child", nargs=2, metavar=("PROFILE", "PATH"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else nullcontext()


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(rounds: int, device: str = "cpu", precisions=("fp32", "bf16")) -> dict:
    """Best median GFLOP/s of large square products, fp32 and bf16 (what the cores can do)."""
    peak = {}

    def product(a, b):
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    for name in precisions:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        best = 0.0
        for n in (1024, 2048, 4096):
            a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
            product(a, b)
            best = max(best, 2 * n**3 / median_time(lambda: product(a, b), rounds) / 1e9)  # noqa: B023
        peak[name] = best
    return peak


def train_child(args) -> None:
    """One training path in this fresh process: step times, peak memory, the loss. Prints JSON.

    The allocator setting is per process, so every path runs in a process of its own; the
    same seed gives every path the same batch and the same initial weights.
    """
    profile, path = args.train_child
    bf16, compiled, keep_memory = TRAIN_PATHS[path]
    if keep_memory:
        speed.keep_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    before = status_kib("VmRSS")
    config = config_from_profile(get_profile(profile))
    torch.manual_seed(args.seed)
    batch = torch.randint(3, config.vocab_size, (args.batch, args.seq))
    torch.manual_seed(args.seed)
    model = speed.select_attention(MiniMindForCausalLM(config).train(), fast=compiled)  # as the notebooks do
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=compiled)
    forward = torch.compile(model) if compiled else model

    def step() -> float:
        with autocast(bf16):
            loss = forward(batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    start = time.perf_counter()
    step()  # compiles (fast paths)
    first_step_s = time.perf_counter() - start
    step()  # the first AdamW step allocated the optimizer state; from here on steps are alike
    Path("/proc/self/clear_refs").write_text("5")  # the peak of a training step, not of compiling
    steps_s = []
    for _ in range(args.train_steps):
        start = time.perf_counter()
        loss = step()
        steps_s.append(time.perf_counter() - start)
    result = {
        "first_step_s": first_step_s,
        "steps_s": steps_s,
        "loss": loss,
        "step_peak_mib": (status_kib("VmHWM") - before) / 1024,
        "params": count_parameters(model),
    }
    print(json.dumps(result))


def run_train_child(profile: str, path: str, args) -> dict:
    cmd = [sys.executable, __file__, "--train-child", profile, path]
    for flag in ("batch", "seq", "seed", "train_steps"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return json_child(cmd, f"training {profile}/{path}")


def bench_training(profile: str, args) -> dict:
    paths = list(TRAIN_PATHS)
    runs = {p: [] for p in paths}
    for r in range(args.train_rounds):
        for path in rotated(paths, r):
            runs[path].append(run_train_child(profile, path, args))
            print(f"  train {profile} round {r + 1}/{args.train_rounds}: {path}", file=sys.stderr)
    tokens = args.batch * args.seq
    params = runs["fast"][0]["params"]
    rows = {}
    for path, children in runs.items():
        samples = [s for c in children for s in c["steps_s"]]
        med = statistics.median(samples)
        rows[path] = {
            "step_s": med,
            "tok_s": tokens / med,
            "gflops_6n": 6 * params * tokens / med / 1e9,
            "first_step_s": statistics.median(c["first_step_s"] for c in children),
            # Same weights and batch everywhere: after the same steps the losses agree within bf16.
            "loss_after": children[0]["loss"],
            "step_peak_mib": statistics.median(c["step_peak_mib"] for c in children),
            "samples_s": samples,
        }
    fast, eager = rows["fast"], rows["eager bf16"]
    saved = eager["step_s"] - fast["step_s"]
    compile_s = fast["first_step_s"] - fast["step_s"]
    return {
        "rows": rows,
        "speedup_vs_eager_bf16": eager["step_s"] / fast["step_s"],
        "compile_s": compile_s,
        "break_even_steps": compile_s / saved if saved > 0 else None,
        "params": params,
    }


def bench_generation(profile: str, batch: int, bf16: bool, args) -> dict:
    config = config_from_profile(get_profile(profile))
    torch.manual_seed(args.seed)
    model = MiniMindForCausalLM(config).eval()
    prompt = torch.randint(3, config.vocab_size, (batch, args.gen_prompt))
    n = args.gen_new
    kw = dict(max_new_tokens=n, min_new_tokens=n, pad_token_id=0)

    def run(path):
        with torch.no_grad(), autocast(bf16):
            if path == "generate":
                return model.generate(prompt, do_sample=False, **kw)
            return speed.greedy_generate(model, prompt, compile=True, **kw)

    start = time.perf_counter()
    fast_out = run("fast")
    compile_s = time.perf_counter() - start
    same = torch.equal(run("generate"), fast_out)
    samples = {p: [] for p in GEN_PATHS}
    for r in range(args.rounds):
        for path in GEN_PATHS if r % 2 == 0 else GEN_PATHS[::-1]:
            start = time.perf_counter()
            run(path)
            samples[path].append(time.perf_counter() - start)
    med = {p: statistics.median(s) for p, s in samples.items()}
    return {
        "profile": profile,
        "batch": batch,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "generate_tok_s": batch * n / med["generate"],
        "fast_tok_s": batch * n / med["fast"],
        "speedup": med["generate"] / med["fast"],
        "same_tokens": same,
        "first_call_s": compile_s,
        "samples_s": samples,
    }


def report(result: dict, args) -> str:
    peak = result["peak_gflops"]
    out = [
        f"{result['machine']}; {result['date']}",
        f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s",
        "",
    ]
    if result.get("training"):
        out += [
            f"| dims | params | path | train tok/s ({args.batch}x{args.seq}) | x eager bf16 "
            f"| 6N FLOP/s, share of bf16 peak | first step (s) | step peak RSS growth (MiB) | loss |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for profile, t in result["training"].items():
            base = t["rows"]["eager bf16"]["step_s"]
            for path, r in t["rows"].items():
                out.append(
                    f"| {profile} | {t['params'] / 1e6:.2f}M | {path} | {r['tok_s']:,.0f} "
                    f"| x{base / r['step_s']:.2f} | {r['gflops_6n']:.0f} G, {r['share_of_bf16_peak']:.0%} "
                    f"| {r['first_step_s']:.1f} | {r['step_peak_mib']:,.0f} | {r['loss_after']:.4f} |"
                )
            be = t["break_even_steps"]
            out.append(
                f"| {profile} | | compile {t['compile_s']:.0f} s, won back after "
                f"{'never' if be is None else f'{be:.0f} steps'} | | | | | | |"
            )
        out.append("")
    if result.get("generation"):
        out += [
            "| dims | batch | precision | generate tok/s | fast tok/s | speed-up | same tokens | first fast call (s) |",
            "|---|---:|---|---:|---:|---:|---|---:|",
        ]
        for g in result["generation"]:
            out.append(
                f"| {g['profile']} | {g['batch']} | {g['precision']} | {g['generate_tok_s']:,.0f} "
                f"| {g['fast_tok_s']:,.0f} | x{g['speedup']:.2f} | {g['same_tokens']} | {g['first_call_s']:.1f} |"
            )
    spread = max((max(v) / min(v) for v in _all_samples(result)), default=1.0)
    out.append(f"\nnoise: slowest / fastest timed run of one configuration up to x{spread:.2f}")
    return "\n".join(out)


def _all_samples(result):
    for t in (result.get("training") or {}).values():
        for r in t["rows"].values():
            yield r["samples_s"]
    for g in result.get("generation") or []:
        yield from g["samples_s"].values()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    if args.train_child:
        train_child(args)
        return 0
    start = time.perf_counter()
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "settings": {k: str(v) for k, v in vars(args).items() if k != "train_child"},
    }
    result["peak_gflops"] = matmul_peak(args.rounds)
    print(f"matmul peak {result['peak_gflops']}", file=sys.stderr)
    if not args.no_train:
        result["training"] = {p: bench_training(p, args) for p in args.profiles}
    if not args.no_gen:
        result["generation"] = []
        for profile in args.profiles:
            for bf16 in (False, True) if profile != "tiny" else (False,):
                for b in args.gen_batches:
                    print(f"  generation {profile} batch {b} bf16 {bf16}", file=sys.stderr)
                    result["generation"].append(bench_generation(profile, b, bf16, args))
    # Measured again at the end: the higher of the two is the peak (a busy moment only lowers it).
    after = matmul_peak(args.rounds)
    result["peak_gflops_runs"] = [result["peak_gflops"], after]
    result["peak_gflops"] = {k: max(v, after[k]) for k, v in result["peak_gflops"].items()}
    for t in (result.get("training") or {}).values():
        for r in t["rows"].values():
            r["share_of_bf16_peak"] = r["gflops_6n"] / result["peak_gflops"]["bf16"]
    result["total_s"] = time.perf_counter() - start
    print(report(result, args))
    print(
        f"matmul peak, start and end: {result['peak_gflops_runs']}; total {result['total_s']:.0f} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
