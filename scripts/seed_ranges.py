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
Writes ranges.json and ranges.md in `--out`. About 6 minutes a seed on 2 CPU cores (tiny).
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

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_tokenizer", "02_model", "03_pretrain", "04_sft", "05_dpo", "06_grpo", "07_chat"]
SEEDED = {"03_pretrain", "04_sft", "05_dpo", "06_grpo"}


def run_notebook(name: str, root: Path, profile: str, seed: int | None) -> None:
    env = dict(os.environ, MINIMIND_ROOT=str(root), HF_DATASETS_CACHE=str(root / "hf-datasets"),
               TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
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
    cards = {}
    for seed in args.seeds:
        root = args.out / f"seed-{seed}"
        if todo[0] in ("01_tokenizer", "02_model", "03_pretrain"):
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(base, root, ignore=shutil.ignore_patterns("hf-datasets", "executed"))
        for name in todo:
            if name in SEEDED or name == "07_chat":
                run_notebook(name, root, args.profile, seed if name in SEEDED else None)
        cards[seed] = json.loads((root / "out" / args.profile / "report.json").read_text(encoding="utf-8"))
    rows = collect(cards)
    (args.out / "ranges.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    table = markdown(rows, args.seeds)
    (args.out / "ranges.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
