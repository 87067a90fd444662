"""Run the course with several training seeds and print the range of every report-card number.

The notebooks quote measured numbers as ranges over seeds, and their checks cells assert that
a run lies inside them (`evals.in_range`). When a change moves the numbers, rerun this and
update the text and the ranges together:

    .venv/bin/python scripts/seed_ranges.py --seeds 42 7 2026
    .venv/bin/python scripts/seed_ranges.py --seeds 42 7 --first 05   # reuse earlier stages' runs

Each seed gets its own course root (`--out`/seed-N, through MINIMIND_ROOT), so `out/` and
`dataset/` of the checkout are never touched. 01 and 02 do not depend on the training seed:
they run once and their outputs are copied into every seed's root. The training notebooks
(03-06) run with `-p SEED=N`; the data and the held-out sets are the same for every seed.
The checks cells record the numbers the text quotes instead of asserting them
(`evals.RECORD_ENV`), so a run outside a quoted range still finishes; ranges.md lists each
quoted number with its value for every seed and whether it left the range.
Writes ranges.json and ranges.md in `--out`. About 10 minutes a seed on 2 CPU cores (tiny).

Floating-point rounding differs between CPUs (AVX512 and AVX2 kernels sum in other orders),
and a model trained for hundreds of steps ends elsewhere, as with another seed: measure the
ranges on more than one kind of machine (`--out` of each, then widen by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from minimind_lib.evals import RECORD_ENV

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_tokenizer", "02_model", "03_pretrain", "04_sft", "05_dpo", "06_grpo", "07_chat"]
SEEDED = {"03_pretrain", "04_sft", "05_dpo", "06_grpo"}


def run_notebook(name: str, root: Path, profile: str, seed: int | None) -> None:
    env = dict(os.environ, MINIMIND_ROOT=str(root), HF_DATASETS_CACHE=str(root / "hf-datasets"),
               TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               **{RECORD_ENV: str(root / "quoted.jsonl")})
    cmd = [sys.executable, "-m", "minimind_lib.run", str(ROOT / "notebooks" / f"{name}.ipynb"), "--profile", profile]
    if seed is not None:
        cmd += ["-p", f"SEED={seed}"]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    status = "ok" if done.returncode == 0 else f"failed ({done.stdout.strip().splitlines()[-1:]})"
    print(f"  {name:<13} seed {seed if seed is not None else '-':<5} {time.time() - t0:5.0f} s  {status}", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed for seed {seed}; its executed copy is under {root}/out/{profile}/executed/")


def collect(cards: dict[int, dict]) -> list[dict]:
    """One row per (stage, probe): n, and min/max of before, after and change over the seeds."""
    rows: dict[tuple[str, str], dict] = {}
    for seed, card in cards.items():
        for stage, entry in card.items():
            for part in ("metrics", "guards"):
                for probe, m in entry.get(part, {}).items():
                    row = rows.setdefault((stage, probe), {"stage": stage, "probe": probe, "role": part, "n": m["n"],
                                                           "seeds": {}})
                    row["seeds"][seed] = {k: m[k] for k in ("before", "after", "change")}
    out = []
    for row in rows.values():
        for key in ("before", "after", "change"):
            values = [v[key] for v in row["seeds"].values()]
            row[key] = [min(values), max(values)]
        out.append(row)
    return out


def quoted_numbers(roots: dict[int, Path]) -> dict[str, dict]:
    """What the checks cells recorded: {number: {"quoted": [low, high], "values": {seed: value}}}."""
    numbers: dict[str, dict] = {}
    for seed, root in roots.items():
        path = root / "quoted.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            d = json.loads(line)
            numbers.setdefault(d["what"], {"quoted": d["quoted"], "values": {}})["values"][seed] = d["value"]
    return numbers


def quoted_markdown(numbers: dict[str, dict]) -> str:
    lines = ["", "the numbers the text quotes", "",
             "| number | quoted range | values (seed: value) | outside |", "|---|---|---|---|"]
    for what, e in numbers.items():
        low, high = e["quoted"]
        values = ", ".join(f"{seed}: {v:.4g}" for seed, v in e["values"].items())
        outside = [str(seed) for seed, v in e["values"].items() if not low <= v <= high]
        lines.append(f"| {what} | {low}-{high} | {values} | {', '.join(outside) or '-'} |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], seeds: list[int]) -> str:
    def span(lo_hi, pct: bool) -> str:
        lo, hi = lo_hi
        return f"{100 * lo:.1f}% to {100 * hi:.1f}%" if pct else f"{lo:.3f} to {hi:.3f}"

    lines = [f"seeds {', '.join(map(str, seeds))}", "",
             "| stage | probe | n | before | after | change |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        pct = "loss" not in r["probe"] and "bits" not in r["probe"]
        guard = " (guard)" if r["role"] == "guards" else ""
        lines.append(f"| {r['stage']} | {r['probe']}{guard} | {r['n']} | {span(r['before'], pct)} "
                     f"| {span(r['after'], pct)} | {span(r['change'], pct)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2026])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "seeds")
    parser.add_argument("--first", default="01", help="first notebook to run (earlier ones are reused)")
    args = parser.parse_args(argv)
    todo = [n for n in NOTEBOOKS if n[:2] >= args.first[:2]]
    base = args.out / "base"
    if "01_tokenizer" in todo or "02_model" in todo:
        shutil.rmtree(base, ignore_errors=True)
        for name in [n for n in todo if n not in SEEDED and n != "07_chat"]:
            run_notebook(name, base, args.profile, None)
    cards, roots = {}, {}
    for seed in args.seeds:
        root = roots[seed] = args.out / f"seed-{seed}"
        if todo[0] in ("01_tokenizer", "02_model", "03_pretrain"):
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(base, root, ignore=shutil.ignore_patterns("hf-datasets", "executed"))
        for name in todo:
            if name in SEEDED or name == "07_chat":
                run_notebook(name, root, args.profile, seed if name in SEEDED else None)
        cards[seed] = json.loads((root / "out" / args.profile / "report.json").read_text(encoding="utf-8"))
    rows = collect(cards)
    (args.out / "ranges.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    table = markdown(rows, args.seeds) + quoted_markdown(quoted_numbers(roots))
    (args.out / "ranges.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
