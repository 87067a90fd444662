"""What every notebook does first: pick the profile, seed, quiet the noise, print the setup."""

from __future__ import annotations

import os
import platform

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


def start(profile: str | Profile | None = None, seed: int | None = None, show: bool = True) -> Profile:
    """Resolve the profile, seed everything and print profile, device and library versions."""
    import torch
    import transformers
    import trl

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    quiet()
    transformers.set_seed(prof.seed if seed is None else seed)
    if show:
        print(prof.table())
        dev = device()
        if dev == "cuda":
            dev += f" ({torch.cuda.get_device_name(0)})"
        print(f"{'device'.ljust(30)} {dev}, torch threads {torch.get_num_threads()}")
        print(
            f"{'versions'.ljust(30)} python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, trl {trl.__version__}"
        )
    return prof


class MissingArtifact(FileNotFoundError):
    """Something a notebook needs is not on disk; shown as one line in Jupyter, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for custom error display
        return [f"{type(self).__name__}: {self}"]


class StageMissing(MissingArtifact):
    """A previous stage's artifact is missing: the message names the notebook to run."""


def require(path, notebook: str):
    """The path of a previous stage's artifact, or a one-line error naming the notebook to run."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise StageMissing(f"{path} does not exist yet: run notebooks/{notebook} first")
    return path
