"""What the benchmark scripts share: the machine they ran on, and Linux memory counters."""

from __future__ import annotations

import platform
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
