"""Peak memory of validating and loading a ~1 GB pretraining file with minimind_lib.data.

Writes a pretrain-format jsonl of the requested size into a temporary directory (text
lines repeated, so it is fast), then measures, each in a fresh Python process:
  validate   validate_file over every line
  load       load_pretrain (rows converted into a memory-mapped Arrow cache), then reading
             a few thousand rows in order and a few thousand at random
Peak RSS is compared with the same process right after its imports, and split (sampled
every 20 ms) into private memory and pages of memory-mapped files. Everything it wrote is
deleted at the end.

    python bench/data_memory.py [--gb 1.0] [--rows 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh process: prints one JSON line with sizes in MiB and seconds.
CHILD = r"""
import json, random, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])
import datasets
from minimind_lib import data

datasets.disable_progress_bars()
task, path, cache, rows = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def status_mib():
    # RssAnon: private memory (heap, buffers); RssFile: pages of mapped files (shared, the
    # kernel can drop them at any time, as it does with the page cache).
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}

peaks = status_mib()
baseline = dict(peaks)
baseline["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
running = True

def sample():
    while running:
        for k, v in status_mib().items():
            peaks[k] = max(peaks[k], v)
        time.sleep(0.02)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start = time.perf_counter()
if task == "validate":
    report = data.validate_file(path, "pretrain")
    assert report.ok, report.problems[:3]
    count = report.rows
else:
    dataset = data.load_pretrain(path, cache_dir=cache)
    count = len(dataset)
    for i, row in enumerate(dataset):
        if i == rows:
            break
    for i in random.Random(0).sample(range(count), rows):
        dataset[i]["text"]
seconds = time.perf_counter() - start
running = False
sampler.join()
print(json.dumps({"rows": count, "seconds": seconds, "baseline": baseline, "peaks": peaks,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sample_lines() -> list[bytes]:
    """Lines of 100-500 characters, like pretrain_hq.jsonl, from the synthetic world."""
    sys.path.insert(0, str(ROOT))
    import random

    from minimind_lib.synthetic import build_world, pretrain_texts

    rng = random.Random(0)
    texts = pretrain_texts(rng, build_world(0), count=3000)
    lines = []
    while texts:
        chunk = []
        target = rng.randint(100, 500)
        while texts and sum(map(len, chunk)) < target:
            chunk.append(texts.pop())
        lines.append(json.dumps({"text": " ".join(chunk)}, ensure_ascii=False).encode() + b"\n")
    return lines


def write_file(path: Path, gib: float) -> int:
    block = b"".join(sample_lines())
    target = int(gib * 2**30)
    written = 0
    with open(path, "wb") as f:
        while written < target:
            f.write(block)
            written += len(block)
    return written


def measure(task: str, path: Path, cache: Path, rows: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), task, str(path), str(cache), str(rows)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the test file in GiB")
    parser.add_argument("--rows", type=int, default=5000, help="rows read after loading")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="minimind-data-bench-"))
    try:
        path, cache = workdir / "pretrain_hq.jsonl", workdir / "arrow-cache"
        start = time.perf_counter()
        size = write_file(path, args.gb)
        print(f"wrote {size / 2**30:.2f} GiB to {path} in {time.perf_counter() - start:.1f} s")
        results = {task: measure(task, path, cache, args.rows) for task in ("validate", "load")}
        arrow = sum(f.stat().st_size for f in cache.rglob("*.arrow"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}"
    )
    print(
        f"file: {size / 2**30:.2f} GiB, {results['validate']['rows']:,} rows; Arrow cache {arrow / 2**30:.2f} GiB"
    )
    header = (
        f"{'task':<10} {'seconds':>8} {'MB/s':>6} {'baseline RSS':>13} {'peak RSS':>9}"
        f" {'extra private':>14} {'extra mapped':>13}"
    )
    print(header + "\n" + "-" * len(header) + "   (MiB)")
    for task, r in results.items():
        base, peaks = r["baseline"], r["peaks"]
        print(
            f"{task:<10} {r['seconds']:>8.1f} {size / 2**20 / r['seconds']:>6.0f}"
            f" {base['rss']:>13.0f} {r['peak_rss']:>9.0f}"
            f" {peaks['RssAnon'] - base['RssAnon']:>14.0f} {peaks['RssFile'] - base['RssFile']:>13.0f}"
        )


if __name__ == "__main__":
    main()
