"""Our model vs the same weights in llama.cpp (GGUF): file sizes and greedy decoding speed at batch 1.

A model of the `full` dims (MiniMind2-Small, random weights) with a 6,400-token byte-level BPE
trained on random text (the size, not the text, is what matters here) is exported to GGUF as
F32, F16 and Q8_0. Then, alternated over rounds, each path decodes the same 32-token prompt
greedily for `--new` tokens (no early stop), and the medians are reported with their ratio to
our plain `model.generate`:
- ours: `model.generate` in fp32, `model.generate` under bf16 autocast, and
  `speed.greedy_generate` (static cache, stacked weights, a compiled step) under bf16;
- llama.cpp (llama-cpp-python) on each GGUF file, with `--threads` threads.

    python bench/gguf_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from common import machine  # noqa: E402  (bench/common.py)

from minimind_lib import speed  # noqa: E402
from minimind_lib.export_gguf import llama_cpp_greedy, write_gguf  # noqa: E402
from minimind_lib.model import MiniMindForCausalLM, config_from_profile, count_parameters  # noqa: E402
from minimind_lib.profiles import get_profile  # noqa: E402
from minimind_lib.tokenizer import train_tokenizer  # noqa: E402

GGUF_TYPES = ("f32", "f16", "q8_0")


def random_text_tokenizer(vocab_size: int):
    """A byte-level BPE of exactly `vocab_size` tokens, trained on random words and Han characters."""
    rng = random.Random(0)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(20000)]
    texts = [" ".join(rng.choices(words, k=40)) + "".join(rng.choices(han, k=40)) for _ in range(4000)]
    tokenizer = train_tokenizer(texts, vocab_size)
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer has {len(tokenizer)} tokens, not {vocab_size}")
    return tokenizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new", type=int, default=64, help="new tokens per run")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    import llama_cpp

    torch.set_num_threads(args.threads)
    config = config_from_profile(get_profile("full"))
    torch.manual_seed(0)
    model = MiniMindForCausalLM(config).eval()
    tokenizer = random_text_tokenizer(config.vocab_size)
    prompt = torch.randint(3, config.vocab_size, (1, 32))
    n = args.new
    with tempfile.TemporaryDirectory() as tmp:
        files = {t: write_gguf(model, tokenizer, Path(tmp) / f"full-{t}.gguf", t) for t in GGUF_TYPES}
        sizes = {t: f.stat().st_size for t, f in files.items()}
        llms = {t: llama_cpp.Llama(model_path=str(f), n_ctx=256, n_threads=args.threads, n_batch=64,
                                   seed=0, verbose=False) for t, f in files.items()}

        def ours(bf16: bool, fast: bool):
            def run():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                    if fast:
                        return speed.greedy_generate(model, prompt, max_new_tokens=n, min_new_tokens=n,
                                                     pad_token_id=0, compile=True)
                    return model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                          pad_token_id=0)
            return run

        def theirs(llm):
            return lambda: llama_cpp_greedy(llm, prompt[0].tolist(), n)

        paths = {
            "ours: generate, fp32": ours(False, False),
            "ours: generate, bf16 autocast": ours(True, False),
            "ours: speed.greedy_generate, bf16 autocast": ours(True, True),
            **{f"llama.cpp: {t.upper()} GGUF": theirs(llm) for t, llm in llms.items()},
        }
        for run in paths.values():  # warm-up (and compile)
            run()
        samples = {name: [] for name in paths}
        names = list(paths)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                paths[name]()
                samples[name].append(time.perf_counter() - start)

    base = statistics.median(samples["ours: generate, fp32"])
    print(f"{machine()}, llama-cpp-python {llama_cpp.__version__}, {args.threads} threads")
    print(f"full dims, {count_parameters(model) / 1e6:.2f}M parameters; greedy, batch 1, 32-token prompt, "
          f"{n} new tokens, median of {args.rounds} alternated rounds")
    print("\n| GGUF type | file size |\n|---|---:|")
    for t, size in sizes.items():
        print(f"| {t.upper()} | {size / 2**20:.1f} MiB |")
    print("\n| path | tokens/s | x ours generate fp32 |\n|---|---:|---:|")
    for name, s in samples.items():
        med = statistics.median(s)
        print(f"| {name} | {n / med:,.0f} | x{base / med:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
