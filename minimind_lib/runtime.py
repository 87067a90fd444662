"""What every notebook does first: pick the profile, seed, quiet the noise, print the setup."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import warnings
from contextlib import contextmanager
from pathlib import Path

from .profiles import Profile, get_profile


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def quiet() -> None:
    """Keep progress bars and hub chatter out of executed notebooks (CI, the site)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    # bitsandbytes (imported by trl) looks for an optional 4-bit CPU kernel the course never uses.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # trl 1.16 still reads the old name on every generation; the notice is not for the learner.
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


def start(
    profile: str | Profile | None = None,
    seed: int | None = None,
    show: bool = True,
    data_files: dict[str, str | None] | None = None,
) -> Profile:
    """Resolve the profile, seed everything and print profile, device and library versions.

    `seed` (a notebook's SEED) replaces the profile's training seed; the data and the held-out
    sets keep theirs (`Profile.data_seed`), so runs with different seeds measure the same items.
    `data_files` ({"sft": a notebook's DATA_FILE}) trains a stage on your own file: it must
    exist and hold that stage's rows (`data.stage_data_file`), else a DataError says why.
    """
    import torch
    import transformers
    import trl

    from . import speed
    from .plots import use_bilingual_fonts

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    if seed is not None:
        prof = dataclasses.replace(prof, seed=int(seed))
    for kind, path in (data_files or {}).items():
        if path:
            from .data import stage_data_file

            prof = prof.with_data_file(kind, stage_data_file(prof, kind, path))
    quiet()
    use_bilingual_fonts()
    if speed.enabled(prof) and device() == "cpu":
        speed.keep_freed_memory()  # CPU training steps reuse freed memory (speed.py)
    transformers.set_seed(prof.seed)
    if show and is_main_process():
        print(prof.table())
        dev = device()
        if dev == "cuda":
            dev += f" ({torch.cuda.get_device_name(0)})"
        print(f"{'device'.ljust(30)} {dev}, torch threads {torch.get_num_threads()}")
        fast = "on" if speed.enabled(prof) else "off"
        print(f"{'fast paths'.ljust(30)} {fast} ({speed.ENV}={speed.mode()})")
        print(
            f"{'versions'.ljust(30)} python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, trl {trl.__version__}"
        )
    return prof


# ---- several processes (torchrun, accelerate launch) -------------------------------------------
def _dist():
    """torch.distributed when a process group is up, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """How many processes train together: 1 in a notebook, N under `torchrun --nproc_per_node N`."""
    dist = _dist()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on the one process that prints, plots and writes files: the only process of a
    notebook, or global rank 0 under torchrun / accelerate launch."""
    dist = _dist()
    if dist:
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


@contextmanager
def main_process_first():
    """Run the block on the main process first, then on the others (which then find its files:
    generated data, `datasets` caches). A plain block with one process."""
    if world_size() == 1:
        yield
        return
    from accelerate import PartialState  # joins the process group torchrun / accelerate set up

    with PartialState().main_process_first():
        yield


def split_batch(
    batch_size: int, grad_accum: int = 1, processes: int | None = None
) -> tuple[int, int]:
    """(per-device batch, gradient accumulation) that keep the global batch of a profile,
    `batch_size * grad_accum` sequences an optimizer step, on `processes` (default
    `world_size()`) processes."""
    n = processes or world_size()
    if batch_size % n == 0:
        return batch_size // n, grad_accum
    if grad_accum % n == 0:
        return batch_size, grad_accum // n
    raise ValueError(
        f"cannot split a batch of {batch_size} x {grad_accum} accumulation steps evenly over "
        f"{n} processes; use a process count that divides {batch_size} or {grad_accum}"
    )


def resume_checkpoint(resume, run_dir) -> str | None:
    """What to give `trainer.train(resume_from_checkpoint=...)` for a notebook's RESUME:
    False -> None (start afresh); True -> the last `checkpoint-N` under `run_dir`, or None with a
    note when there is none yet; a path -> that path."""
    if not resume:
        return None
    if resume is not True:
        return str(resume)
    from transformers.trainer_utils import get_last_checkpoint

    run_dir = Path(run_dir)
    last = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if is_main_process():
        print(
            f"resuming from {last}"
            if last
            else f"no checkpoint under {run_dir} yet: starting afresh"
        )
    return last


def checkpoint_step(checkpoint) -> int:
    """The optimizer step a checkpoint was saved at (0 for None: a fresh start)."""
    if not checkpoint:
        return 0
    import json

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state["global_step"])


class MissingArtifact(FileNotFoundError):
    """Something a notebook needs is not on disk; shown as one line in Jupyter, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for custom error display
        return [f"{type(self).__name__}: {self}"]


class StageMissing(MissingArtifact):
    """A previous stage's artifact is missing: the message names the notebook to run."""


def require(path, notebook: str):
    """The path of a previous stage's artifact, or a one-line error naming the notebook to run."""
    path = Path(path)
    if not path.exists():
        raise StageMissing(f"{path} does not exist yet: run notebooks/{notebook} first")
    return path
