"""Attention alone, forward + backward: SDPA (PyTorch's CPU flash kernel) vs compiled matmul_attention.

At `full` dims (8 query heads on 2 key heads of 64), bf16, causal, for several sequence
lengths with the same number of tokens (B x T = 4096): eager `F.scaled_dot_product_attention`
(what the model uses outside torch.compile), compiled SDPA, and compiled
`speed.matmul_attention` (what a compiled CPU training step uses), over all keys and with
causal query blocks. Runs alternate; medians are reported, with the largest difference of
each output from an fp64 reference.

    python bench/attention.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import machine, rotated  # noqa: E402  (bench/common.py)

from minimind_lib import speed  # noqa: E402
from minimind_lib.speed import matmul_attention  # noqa: E402


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def matmul_all_keys(q, k, v):
    """Every query against every key; the causal mask given as a tensor, which skips nothing."""
    T = q.shape[2]
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    return matmul_attention(q, k, v, causal, causal=False)


def matmul_blocks(q, k, v):
    return matmul_attention(q, k, v, None, causal=True)


PATHS = {
    "SDPA, eager": sdpa,
    "SDPA, compiled": torch.compile(sdpa),
    "matmul, all keys, compiled": torch.compile(matmul_all_keys),
    "matmul, causal blocks, compiled": torch.compile(matmul_blocks),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--tokens", type=int, default=4096, help="batch x length")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    speed.keep_freed_memory()  # as in a fast-path training process
    print(f"{machine()}; heads 8 on 2 key heads of 64, bf16, causal\n")
    print("| length | batch | path | fwd + bwd (ms) | x SDPA eager | max error vs fp64 |")
    print("|---:|---:|---|---:|---:|---:|")
    for T in args.lengths:
        B = max(1, args.tokens // T)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, h, T, 64, generator=g) for h in (8, 2, 2))
        grad = torch.randn(B, 8, T, 64, generator=g).bfloat16()
        want = sdpa(q.double(), k.double(), v.double())
        inputs = [t.bfloat16().requires_grad_() for t in (q, k, v)]
        errors = {}
        for name, fn in PATHS.items():  # warm-up (compiles), and the error of each path
            out = fn(*inputs)
            out.backward(grad)
            errors[name] = (out.double() - want).abs().max().item()
        samples = {name: [] for name in PATHS}
        names = list(PATHS)
        for r in range(args.rounds):
            for name in rotated(names, r):
                start = time.perf_counter()
                PATHS[name](*inputs).backward(grad)
                samples[name].append(time.perf_counter() - start)
        base = statistics.median(samples["SDPA, eager"])
        for name in names:
            med = statistics.median(samples[name])
            print(
                f"| {T} | {B} | {name} | {med * 1e3:.1f} | x{base / med:.2f} | {errors[name]:.4f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
