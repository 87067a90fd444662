"""What the benchmark scripts share: the machine they ran on, Linux memory counters, and fresh
child processes that report one JSON line."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import torch
import transformers


def machine(device: str = "cpu") -> str:
    """One line naming the device (CPU model or GPU), torch threads and library versions."""
    versions = (
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    if device == "cuda":
        return f"CUDA {torch.cuda.get_device_name(0)}, {versions}"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return f"CPU {cpu}, {torch.get_num_threads()} torch threads, {versions}"


def status_kib(field: str) -> int:
    """A memory field of /proc/self/status (Linux), in KiB: VmRSS now, VmHWM its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def json_child(cmd: list[str], what: str) -> dict:
    """Run `cmd` (a benchmark script in a fresh process) and return the JSON of its last line."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rotated(items: list, r: int) -> list:
    """`items` started at position r (mod its length): round r of an alternated benchmark."""
    k = r % len(items)
    return items[k:] + items[:k]
