"""Our model vs MiniMind's own model file, side by side on one machine: training and generation.

MiniMind's model is imported from a checkout you give (`--minimind-src`); nothing of it is
copied into this course. Both models are built at the `full` dims (MiniMind2-Small: hidden 512,
8 layers, 8 query heads on 2 key/value heads, vocabulary 6,400). Where MiniMind's file has the
same parameters as ours (MiniMind2), it gets our weights, so the two must also compute the same
loss and the same greedy tokens; where it has more (MiniMind-3's per-head q/k norms), only the
speed is compared.

- training: forward + loss + backward + gradient clipping + AdamW on one random B x T batch,
  every path in fresh processes, alternated over rounds, the median step kept:
  MiniMind eager fp32 (what its scripts run on a CPU), MiniMind compiled with bf16 autocast
  (its `--use_compile` with mixed precision: its best), ours eager fp32 and bf16, and ours on the fast
  path of `minimind_lib.speed` (compiled, bf16, fused AdamW, kept memory). Achieved FLOP/s
  (6 x parameters x tokens/s) as a share of the bf16 matmul peak measured in the same run.
  bf16 only where it is native (a GPU, a CPU with AVX512-BF16 or AMX); on other CPUs every
  path and the peak stay in fp32.
- generation: greedy, a P-token prompt and N new tokens (forced: no stop token), batch 1 and 8,
  alternated in this process: MiniMind's own loop (its `generate` where the file has one,
  else its forward with its own cache, one token at a time), our `model.generate`
  (transformers' loop) and our `speed.greedy_generate` (static cache, compiled step); the time
  to first token (prompt + one token) of each.

    git clone https://github.com/jingyaogong/minimind ../minimind
    git -C ../minimind checkout c090b69   # MiniMind2's model file (the newest is MiniMind-3's)
    python bench/vs_minimind.py --minimind-src ../minimind --threads 2

About 6 minutes on 2 CPU cores with the defaults. The same script runs on CUDA (`--device
cuda`): there bf16 autocast is what MiniMind's scripts use, and the peak is the card's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import json_child, machine, rotated  # noqa: E402  (bench/common.py)
from fast_paths import matmul_peak  # noqa: E402  (bench/fast_paths.py)

from minimind_lib import speed  # noqa: E402
from minimind_lib.model import MiniMindForCausalLM, config_from_profile, count_parameters  # noqa: E402
from minimind_lib.profiles import FULL  # noqa: E402


def train_paths(bf16: bool) -> dict[str, tuple[str, bool, bool]]:
    """path: (whose model, bf16 autocast, compiled). bf16 only where it is native (a GPU, a CPU
    with AVX512-BF16 or AMX): elsewhere it is emulated and slower than fp32, so the compiled
    paths stay in fp32, as the course's fast path does."""
    low = "bf16" if bf16 else "fp32"
    return {
        "MiniMind eager fp32": ("minimind", False, False),
        f"MiniMind compiled {low}": ("minimind", bf16, True),
        "ours eager fp32": ("ours", False, False),
        f"ours eager {low}": ("ours", bf16, False),  # the same path as above without bf16
        "ours fast path": ("ours", bf16, True),
    }


GEN_PATHS = ("MiniMind own loop", "ours generate", "ours greedy_generate")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minimind-src", type=Path, required=True,
                   help="a MiniMind checkout (the folder holding model/model_minimind.py)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=6, help="timed steps in each process")
    p.add_argument("--train-rounds", type=int, default=2, help="fresh processes for each path")
    p.add_argument("--gen-batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--gen-prompt", type=int, default=32)
    p.add_argument("--gen-new", type=int, default=64)
    p.add_argument("--precisions", nargs="+", default=None, choices=("bf16", "fp32"),
                   help="generation: bf16 autocast and/or fp32 (default: both where bf16 is "
                        "native, else fp32)")
    p.add_argument("--rounds", type=int, default=5, help="timed generation runs, alternated")
    p.add_argument("--peak-rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write every sample here")
    p.add_argument("--train-child", metavar="PATH", help=argparse.SUPPRESS)  # internal
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precisions is None:
        args.precisions = ["bf16", "fp32"] if speed.bf16_supported(args.device) else ["fp32"]
    return args


# ---------------------------------------------------------------------------------------------
# The two models, with the same weights where MiniMind's file allows it
# ---------------------------------------------------------------------------------------------
def minimind_module(src: Path):
    """MiniMind's `model/model_minimind.py` from the checkout at `src`, imported."""
    if not (src / "model" / "model_minimind.py").is_file():
        raise SystemExit(f"--minimind-src {src}: no model/model_minimind.py there; clone "
                         "https://github.com/jingyaogong/minimind and pass its folder")
    sys.path.insert(0, str(src.resolve()))
    return importlib.import_module("model.model_minimind")


def ours(seed: int, device: str) -> MiniMindForCausalLM:
    torch.manual_seed(seed)
    return MiniMindForCausalLM(config_from_profile(FULL)).to(device)


def theirs(module, our_model: MiniMindForCausalLM, device: str):
    """MiniMind's model at our dims, holding our weights wherever the names match; also the
    names only MiniMind's file has (empty: the same model)."""
    c = our_model.config
    config = module.MiniMindConfig(
        hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        vocab_size=c.vocab_size, intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_position_embeddings, rope_theta=c.rope_theta,
        rms_norm_eps=c.rms_norm_eps, flash_attn=True, dropout=0.0,
    )
    model = module.MiniMindForCausalLM(config).to(device)
    missing, unexpected = model.load_state_dict(our_model.state_dict(), strict=False)
    if unexpected:
        raise SystemExit(f"MiniMind's file lacks our parameters {unexpected[:4]}: another architecture")
    return model, [name for name in missing if name != "lm_head.weight"]  # tied to the embedding


def autocast(device: str, bf16: bool):
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Training: one path in a fresh process
# ---------------------------------------------------------------------------------------------
def train_child(args) -> None:
    """Time one training path in this fresh process; print JSON (first step, steps, losses)."""
    who, bf16, compiled = train_paths(speed.bf16_supported(args.device))[args.train_child]
    device = args.device
    model = ours(args.seed, device)
    if who == "minimind":
        model, _ = theirs(minimind_module(args.minimind_src), model, device)
    elif compiled:
        speed.keep_freed_memory()
        model = speed.select_attention(model, fast=True)
    model.train()
    torch.manual_seed(args.seed)
    batch = torch.randint(3, FULL.model.vocab_size, (args.batch, args.seq), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=compiled and who == "ours")
    forward = torch.compile(model) if compiled else model

    def step() -> float:
        with autocast(device, bf16):
            loss = forward(batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    start = time.perf_counter()
    losses = [step()]  # compiles, where compiled
    first_step_s = time.perf_counter() - start
    losses.append(step())  # the first AdamW step allocated its state
    steps_s = []
    for _ in range(args.train_steps):
        start = time.perf_counter()
        losses.append(step())
        sync(device)
        steps_s.append(time.perf_counter() - start)
    print(json.dumps({"first_step_s": first_step_s, "steps_s": steps_s, "losses": losses,
                      "params": count_parameters(model)}))


def run_train_child(path: str, args) -> dict:
    cmd = [sys.executable, __file__, "--train-child", path, "--minimind-src", str(args.minimind_src),
           "--batch", str(args.batch), "--seq", str(args.seq), "--train-steps", str(args.train_steps),
           "--seed", str(args.seed), "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return json_child(cmd, f"training path {path!r}")


def bench_training(args, peak: float) -> dict:
    paths = list(train_paths(speed.bf16_supported(args.device)))
    runs = {p: [] for p in paths}
    for r in range(args.train_rounds):
        for path in rotated(paths, r):
            print(f"  training, round {r + 1}/{args.train_rounds}: {path}", file=sys.stderr)
            runs[path].append(run_train_child(path, args))
    tokens = args.batch * args.seq
    rows = {}
    for path, children in runs.items():
        step_s = statistics.median(s for c in children for s in c["steps_s"])
        params = children[0]["params"]
        rows[path] = {
            "tok_s": tokens / step_s,
            "share_of_peak": 6 * params * tokens / step_s / 1e9 / peak,
            "first_step_s": statistics.median(c["first_step_s"] for c in children),
            "first_loss": children[0]["losses"][0],
            "last_loss": children[0]["losses"][-1],
            "params": params,
            "samples_s": [s for c in children for s in c["steps_s"]],
        }
    return rows


# ---------------------------------------------------------------------------------------------
# Generation: the three loops in this process, alternated
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def minimind_greedy(model, prompt: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy decoding with MiniMind's own code: its `generate` where the file has one
    (MiniMind-3), else its forward and its own key/value cache (a list of tensors a layer),
    one token at a time (MiniMind2, whose file leans on transformers' loop)."""
    if "generate" in type(model).__dict__:
        return model.generate(prompt, max_new_tokens=new, do_sample=False, eos_token_id=None)
    out = model(prompt, use_cache=True)
    ids = [prompt, out.logits[:, -1:].argmax(-1)]
    for _ in range(new - 1):
        out = model(ids[-1], past_key_values=out.past_key_values, use_cache=True)
        ids.append(out.logits[:, -1:].argmax(-1))
    return torch.cat(ids, dim=1)


def bench_generation(our_model, their_model, only_theirs: list[str], batch: int, bf16: bool,
                     args) -> dict:
    device = args.device
    torch.manual_seed(args.seed + 1)
    prompt = torch.randint(3, FULL.model.vocab_size, (batch, args.gen_prompt), device=device)

    def run(path: str, new: int) -> torch.Tensor:
        with torch.no_grad(), autocast(device, bf16):
            if path == "MiniMind own loop":
                out = minimind_greedy(their_model, prompt, new)
            elif path == "ours generate":
                out = our_model.generate(prompt, do_sample=False, max_new_tokens=new,
                                         min_new_tokens=new, pad_token_id=0)
            else:
                out = speed.greedy_generate(our_model, prompt, max_new_tokens=new,
                                            min_new_tokens=new, pad_token_id=0, compile=True)
        sync(device)
        return out

    first_call = {}
    tokens = {}
    for path in GEN_PATHS:  # warm up (the compiled step compiles here), and keep the tokens
        start = time.perf_counter()
        tokens[path] = run(path, args.gen_new)
        first_call[path] = time.perf_counter() - start
    samples = {p: [] for p in GEN_PATHS}
    first_token = {p: [] for p in GEN_PATHS}
    for r in range(args.rounds):
        order = rotated(list(GEN_PATHS), r)
        for path in order:
            start = time.perf_counter()
            run(path, args.gen_new)
            samples[path].append(time.perf_counter() - start)
        for path in order:
            start = time.perf_counter()
            run(path, 1)
            first_token[path].append(time.perf_counter() - start)
    reference = tokens["ours generate"]
    med = {p: statistics.median(s) for p, s in samples.items()}
    return {
        "batch": batch,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "tok_s": {p: batch * args.gen_new / med[p] for p in GEN_PATHS},
        "first_token_ms": {p: 1000 * statistics.median(first_token[p]) for p in GEN_PATHS},
        "first_call_s": first_call,
        # tokens equal to our model.generate's (None: MiniMind's file is another model)
        "same_tokens": {p: (None if only_theirs and p.startswith("MiniMind")
                            else torch.equal(tokens[p], reference)) for p in GEN_PATHS},
        "samples_s": samples,
    }


# ---------------------------------------------------------------------------------------------
def report(result: dict) -> str:
    best = next(p for p in result["training"] if p.startswith("MiniMind compiled"))
    base = result["training"][best]["tok_s"]
    peak = ", ".join(f"{k} {v:.0f}" for k, v in result["peak_gflops"].items())
    out = [f"{result['machine']}; {result['date']}; MiniMind: {result['minimind']}",
           f"matmul peak (GFLOP/s): {peak}; the share below is of the {result['peak_precision']} "
           "peak", "",
           f"training, {result['args']['batch']} x {result['args']['seq']} tokens a step "
           "(medians over fresh processes):", "",
           "| path | tokens/s | x MiniMind's best | share of the peak | first step (s) | loss, first -> last |",
           "|---|---:|---:|---:|---:|---|"]
    for path, row in result["training"].items():
        out.append(f"| {path} | {row['tok_s']:,.0f} | x{row['tok_s'] / base:.2f} | "
                   f"{row['share_of_peak']:.0%} | {row['first_step_s']:.1f} | "
                   f"{row['first_loss']:.4f} -> {row['last_loss']:.4f} |")
    out += ["", f"greedy generation, {result['args']['gen_prompt']}-token prompt + "
            f"{result['args']['gen_new']} new tokens:", "",
            "| batch | precision | path | tokens/s | x MiniMind | first token (ms) | same tokens as ours |",
            "|---:|---|---|---:|---:|---:|---|"]
    for g in result["generation"]:
        mm = g["tok_s"]["MiniMind own loop"]
        for path in GEN_PATHS:
            same = g["same_tokens"][path]
            out.append(f"| {g['batch']} | {g['precision']} | {path} | {g['tok_s'][path]:,.0f} | "
                       f"x{g['tok_s'][path] / mm:.2f} | {g['first_token_ms'][path]:.0f} | "
                       f"{'n/a' if same is None else 'yes' if same else 'NO'} |")
    if result["only_minimind_parameters"]:
        out += ["", "MiniMind's file has parameters ours lacks "
                f"({', '.join(result['only_minimind_parameters'][:3])}, ...): another model, so "
                "only speeds compare (no same-loss or same-token check)."]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.train_child:
        train_child(args)
        return 0
    module = minimind_module(args.minimind_src)
    our_model = ours(args.seed, args.device).eval()
    their_model, only_theirs = theirs(module, our_model, args.device)
    their_model.eval()
    print("matmul peak ...", file=sys.stderr)
    native_bf16 = speed.bf16_supported(args.device)
    precision = "bf16" if native_bf16 else "fp32"  # emulated bf16 would take minutes here
    peak = matmul_peak(args.peak_rounds, args.device, [precision])
    result = {"machine": machine(args.device), "date": date.today().isoformat(),
              "minimind": str(args.minimind_src), "peak_gflops": peak, "peak_precision": precision,
              "only_minimind_parameters": only_theirs,
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    result["training"] = bench_training(args, peak[precision])
    result["generation"] = []
    for precision in args.precisions:
        for batch in args.gen_batches:
            print(f"  generation, batch {batch}, {precision}", file=sys.stderr)
            result["generation"].append(bench_generation(
                our_model, their_model, only_theirs, batch, precision == "bf16", args))
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
