"""Run profiles: one dial that sets model size, data source and training budget.

`tiny` is the default without CUDA (CPU, synthetic data, minutes); `full` is the default
with CUDA (MiniMind2-Small on the real MiniMind files); `laptop` trains a ~6M model on a
sample of the real files on a CPU (hours). `MINIMIND_PROFILE` overrides.
Every artifact lives under `out/<profile>/`, so profiles never overwrite each other.
`MINIMIND_ROOT` moves `dataset/` and `out/` together (a shared filesystem, a test's tmp dir).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(os.environ.get("MINIMIND_ROOT", Path(__file__).resolve().parent.parent))

# File names of the real MiniMind datasets (one repository holds both sets): MiniMind2's, the
# default, and MiniMind-3's quick-reproduction set, whose SFT file adds tool calls and thinking
# (minimind_lib.data). The synthetic set reuses MiniMind2's names.
DATA_SETS = {
    "minimind2": {
        "pretrain": "pretrain_hq.jsonl",
        "sft": "sft_mini_512.jsonl",
        "dpo": "dpo.jsonl",
        "rlaif": "rlaif-mini.jsonl",
    },
    "minimind3": {
        "pretrain": "pretrain_t2t_mini.jsonl",
        "sft": "sft_t2t_mini.jsonl",
        "dpo": "dpo.jsonl",
        "rlaif": "rlaif.jsonl",
    },
}
DATA_FILES = DATA_SETS["minimind2"]


def _shown(path: Path) -> str:
    """A path as printed: relative to the course root when inside it."""
    try:
        return str(path.relative_to(ROOT)) + "/"
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class ModelDims:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float = 1e6
    tie_word_embeddings: bool = True


@dataclass(frozen=True)
class StageBudget:
    """How long and how hard one training stage runs."""

    max_steps: int
    batch_size: int
    learning_rate: float
    seq_len: int
    warmup_ratio: float = 0.05
    grad_accum: int = 1
    max_rows: int | None = None  # train on a seeded sample of this many rows of the file (None: all)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model: ModelDims
    data: str  # "synthetic" (dataset/synthetic), "real" (dataset/) or "own" (with_data_file)
    pretrain: StageBudget
    sft: StageBudget
    dpo: StageBudget
    grpo: StageBudget
    seed: int = 42  # training: initial weights, data order, sampling (a notebook's SEED sets it)
    data_seed: int = 42  # the synthetic world and the held-out splits: the same for every training seed
    data_set: str = "minimind2"  # which real files (DATA_SETS) when data is "real"
    fast_paths: bool = False  # compiled training, packed SFT, ... unless MINIMIND_FAST says (speed.py)
    tool_markers: bool = True  # <tool_call>, <think>, ... one token each (tokenizer.TOOL_MARKERS)
    extra: dict = field(default_factory=dict)

    # ---- where things live -------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return ROOT / "out" / self.name

    @property
    def _other_data(self) -> str:
        """The profile's own data, where the stages without a file of yours read theirs."""
        return self.extra.get("other_stages_data", self.data)

    @property
    def data_dir(self) -> Path:
        return ROOT / "dataset" / ("synthetic" if self._other_data == "synthetic" else "")

    def data_file(self, kind: str) -> Path:
        own = self.extra.get("data_files", {}).get(kind)
        if own:  # your own file (a notebook's DATA_FILE)
            return Path(own)
        if self.data_set not in DATA_SETS:
            raise ValueError(f"unknown data set {self.data_set!r}; choose one of {sorted(DATA_SETS)}")
        names = DATA_SETS[self.data_set] if self._other_data == "real" else DATA_FILES
        return self.data_dir / names[kind]

    def with_data_file(self, kind: str, path: str | Path) -> Profile:
        """This profile, training the `kind` stage on your own file. Its data becomes "own": the
        stage takes the real data's path (held-out rows split off the file, the real data's
        probes), since the synthetic probes ask about facts your file does not hold."""
        files = {**self.extra.get("data_files", {}), kind: str(path)}
        extra = {**self.extra, "data_files": files, "other_stages_data": self._other_data}
        return dataclasses.replace(self, data="own", extra=extra)

    @property
    def tokenizer_dir(self) -> Path:
        return self.out_dir / "tokenizer"

    def stage_dir(self, stage: str) -> Path:
        """Final checkpoint of a stage: pretrain, sft, dpo, grpo."""
        return self.out_dir / stage

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"

    @property
    def executed_dir(self) -> Path:
        """Headless runs (`python -m minimind_lib.run`): executed notebooks, generated scripts."""
        return self.out_dir / "executed"

    # ---- display -------------------------------------------------------------
    def rows(self) -> list[tuple[str, str]]:
        own = self.extra.get("data_files")
        shown = ", ".join(f"{k}: {v}" for k, v in own.items()) if own else _shown(self.data_dir)
        rows = [("profile", self.name), ("data", f"{self.data} ({shown})"),
                ("seed", f"{self.seed} (data {self.data_seed})")]
        rows += [(f"model.{k}", str(v)) for k, v in dataclasses.asdict(self.model).items()]
        for stage in ("pretrain", "sft", "dpo", "grpo"):
            b = getattr(self, stage)
            sample = f", a sample of {b.max_rows:,} rows" if b.max_rows else ""
            rows.append(
                (
                    stage,
                    f"{b.max_steps} steps x batch {b.batch_size} x {b.seq_len} tokens, "
                    f"lr {b.learning_rate:g}{sample}",
                )
            )
        rows.append(("out_dir", _shown(self.out_dir)))
        if self.extra.get("overrides"):
            rows.append(("overrides", f"{json.dumps(self.extra['overrides'])} ({OVERRIDES_ENV})"))
        return rows

    def table(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

    def _repr_markdown_(self) -> str:
        lines = ["| 设置 · setting | 值 · value |", "|---|---|"]
        lines += [f"| {k} | `{v}` |" for k, v in self.rows()]
        return "\n".join(lines)


TINY = Profile(
    name="tiny",
    description="~1M parameters on the embedded synthetic bilingual world; the whole course on a CPU in minutes.",
    model=ModelDims(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
        max_position_embeddings=512,
    ),
    data="synthetic",
    pretrain=StageBudget(max_steps=900, batch_size=32, learning_rate=3e-3, seq_len=64),
    sft=StageBudget(max_steps=300, batch_size=32, learning_rate=1e-3, seq_len=128),
    dpo=StageBudget(max_steps=90, batch_size=16, learning_rate=5e-5, seq_len=128),
    grpo=StageBudget(max_steps=300, batch_size=32, learning_rate=1e-4, seq_len=32),
    # Its 1,024 tokens stay the vocabulary every number the tiny chapters quote was measured
    # with; in 07's tool chats each marker is spelled in a few ordinary tokens.
    tool_markers=False,
)

FULL = Profile(
    name="full",
    description="MiniMind2-Small (~25.8M parameters) on the real MiniMind dataset files; needs a GPU.",
    model=ModelDims(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=6400,
        max_position_embeddings=32768,
    ),
    data="real",
    pretrain=StageBudget(
        max_steps=-1, batch_size=32, learning_rate=5e-4, seq_len=512, grad_accum=8
    ),
    sft=StageBudget(max_steps=-1, batch_size=16, learning_rate=5e-5, seq_len=512),
    dpo=StageBudget(max_steps=-1, batch_size=4, learning_rate=1e-6, seq_len=1024),
    grpo=StageBudget(max_steps=-1, batch_size=2, learning_rate=1e-6, seq_len=512),
    fast_paths=True,
)

# The real files on a CPU: a model a quarter of MiniMind2-Small's width and a budget in steps.
# Measured on 2 CPU cores (README, "The laptop profile"): a pretraining step about 1.4 s and an
# SFT step about 5 s, so pretraining + SFT take about 2 hours there, about an hour on 4-8
# cores. The samples keep the tokenisation of a GB-scale file out of the wait: a few times the
# rows the steps read. Its fast paths stay off (speed.py).
LAPTOP = Profile(
    name="laptop",
    description="~5.9M parameters on a sample of the real MiniMind files; pretraining + SFT in about an hour on a 4-8 core CPU.",
    model=ModelDims(
        hidden_size=256,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=6400,
        max_position_embeddings=2048,
    ),
    data="real",
    pretrain=StageBudget(max_steps=3000, batch_size=16, learning_rate=1e-3, seq_len=256, max_rows=200_000),
    sft=StageBudget(max_steps=600, batch_size=16, learning_rate=2e-4, seq_len=512, max_rows=40_000),
    dpo=StageBudget(max_steps=200, batch_size=4, learning_rate=5e-6, seq_len=512, max_rows=10_000),
    grpo=StageBudget(max_steps=50, batch_size=8, learning_rate=1e-6, seq_len=256, max_rows=5_000),
)

PROFILES = {p.name: p for p in (TINY, FULL, LAPTOP)}


def default_profile_name() -> str:
    import torch

    return "full" if torch.cuda.is_available() else "tiny"


OVERRIDES_ENV = "MINIMIND_PROFILE_OVERRIDES"


def with_overrides(profile: Profile, overrides: dict) -> Profile:
    """`profile` with some settings replaced: {"model": {"hidden_size": 64}, "pretrain":
    {"batch_size": 4}, "seed": 1}. Unknown names are an error naming the valid ones."""
    changes = {}
    for key, value in overrides.items():
        current = getattr(profile, key, None)
        if key not in {f.name for f in dataclasses.fields(profile)}:
            raise ValueError(f"{OVERRIDES_ENV}: unknown setting {key!r}; the profile has "
                             f"{[f.name for f in dataclasses.fields(profile)]}")
        if dataclasses.is_dataclass(current):
            valid = {f.name for f in dataclasses.fields(current)}
            unknown = sorted(set(value) - valid)
            if unknown:
                raise ValueError(f"{OVERRIDES_ENV}: unknown {key} setting(s) {unknown}; valid: {sorted(valid)}")
            value = dataclasses.replace(current, **value)
        changes[key] = value
    extra = {**profile.extra, "overrides": {**profile.extra.get("overrides", {}), **overrides}}
    return dataclasses.replace(profile, **changes, extra=extra)


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else `$MINIMIND_PROFILE`, else `full` with CUDA and `tiny` without.

    `$MINIMIND_PROFILE_OVERRIDES` (JSON, see `with_overrides`) changes some of its settings, e.g.
    a smaller model for a quick run of the real-data code path; the artifacts keep the
    profile's folder, so use it with its own MINIMIND_ROOT.
    """
    name = name or os.environ.get("MINIMIND_PROFILE") or default_profile_name()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {sorted(PROFILES)} (MINIMIND_PROFILE)"
        )
    overrides = os.environ.get(OVERRIDES_ENV)
    if not overrides:
        return PROFILES[name]
    try:
        parsed = json.loads(overrides)
    except json.JSONDecodeError as err:
        raise ValueError(f"{OVERRIDES_ENV} is not valid JSON: {err}") from None
    return with_overrides(PROFILES[name], parsed)
