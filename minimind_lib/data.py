"""Readers, validators and the download of the four MiniMind jsonl schemas.

The four schemas (one JSON object a line):
  pretrain  {"text": str}
  sft       {"conversations": [{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]}
            MiniMind-3's files (sft_t2t*.jsonl) add optional fields: `tools` on the system turn
            (the tool schemas, a JSON list), `tool_calls` on an assistant turn (a JSON list of
            {"name", "arguments"}; its content may then be empty), `reasoning_content` on an
            assistant turn; a `tool` turn holds a tool's result and follows a call.
  dpo       {"chosen": [...messages], "rejected": [...messages]}
  rlaif     {"conversations": [...messages, {"role": "assistant", "content": <placeholder>}]}

Every check is done line by line on the raw bytes, so a GB-scale file never sits in RAM.
The loaders run the same checks while converting each row to the conversational columns
trl expects (`messages`; `prompt`/`chosen`/`rejected`; `prompt`) and hand the rows to
`datasets`, which writes them to an Arrow cache that is memory-mapped, not loaded.

`sample_rows` takes a seeded sample of a loaded file (the `laptop` profile trains on one).
`sample_file` is the quick version a training notebook runs before its first step: it counts
the rows and checks the first ones plus a random sample, in one pass that parses only those.

Command line:
  python -m minimind_lib.data validate FILE [--kind pretrain|sft|dpo|rlaif] [--sample]
  python -m minimind_lib.data download [FILES...] [--dir DIR] [--set minimind2|minimind3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .profiles import DATA_FILES, DATA_SETS, ROOT

KINDS = ("pretrain", "sft", "dpo", "rlaif")
ROLES = ("system", "user", "assistant")
SFT_ROLES = (*ROLES, "tool")
# MiniMind-3's optional message fields, and the one role each may sit on
OPTIONAL_FIELDS = {"tools": "system", "tool_calls": "assistant", "reasoning_content": "assistant"}
DOWNLOAD_COMMAND = "python -m minimind_lib.data download"

HF_REPO = "jingyaogong/minimind_dataset"
HF_ENDPOINT: str | None = None  # None: huggingface_hub's default (honours $HF_ENDPOINT)
MODELSCOPE_URL = (
    "https://www.modelscope.cn/datasets/gongjy/minimind_dataset/resolve/master/{filename}"
)

# Bump when the converted columns change, so cached Arrow files are rebuilt.
_LOADER_VERSION = "2"


class DataError(ValueError):
    """A data file is missing, empty, or has a row that breaks its schema."""

    def _render_traceback_(self) -> list[str]:  # IPython: one line in a notebook, not a traceback
        return [f"{type(self).__name__}: {self}"]


class DownloadError(DataError):
    """A real data file could not be fetched from any source."""


# --------------------------------------------------------------------------------------
# Row checks: one function per kind; each returns (converted row, characters) or raises.
# --------------------------------------------------------------------------------------
class _RowProblem(Exception):
    def __init__(self, problem: str, where: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.where = where

    def message(self, path: Path | str, line: int) -> str:
        suffix = f" ({self.where})" if self.where else ""
        return f"{path}:{line}: {self.problem}{suffix}"


def _type_name(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _expect_fields(obj: dict, fields: tuple[str, ...], prefix: str = "") -> None:
    for name in fields:
        if name not in obj:
            raise _RowProblem("missing field", prefix + name)
    for name in obj:
        if name not in fields:
            raise _RowProblem("unexpected field", prefix + name)


def _expect_type(value, expected: type, where: str) -> None:
    if not isinstance(value, expected):
        raise _RowProblem(
            f"wrong type: expected {_type_name(expected())}, got {_type_name(value)}", where
        )


def _expect_text(value, where: str, allow_empty: bool = False) -> str:
    _expect_type(value, str, where)
    if not allow_empty and not value.strip():
        raise _RowProblem("empty content", where)
    return value


def _json_list(value, where: str) -> list:
    """A list given as JSON text (as MiniMind-3's files store it) or as a list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise _RowProblem(f"malformed JSON: {e.msg} at column {e.colno}", where) from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _RowProblem("expected a JSON list of objects", where)
    return value


def _tool_calls(value, where: str) -> list[dict]:
    """[{"name", "arguments"}] with the arguments as JSON text (OpenAI's {"function": ...} too)."""
    calls = []
    for k, call in enumerate(_json_list(value, where)):
        call = call.get("function", call)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise _RowProblem("a tool call without a name", f"{where}[{k}]")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI sends the arguments as JSON text
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise _RowProblem(f"malformed arguments JSON: {e.msg}", f"{where}[{k}]") from None
        if not isinstance(arguments, dict):
            raise _RowProblem("the arguments are not a JSON object", f"{where}[{k}]")
        calls.append({"name": call["name"], "arguments": json.dumps(arguments, ensure_ascii=False)})
    return calls


def _conversation(
    value, where: str, placeholder_last: bool = False, extended: bool = False
) -> list[dict]:
    """A list of {"role", "content"} messages; the last content may be empty if it is a placeholder.

    `extended` (SFT rows) also takes MiniMind-3's `tool` role and optional fields; every message
    then carries all of them (None where absent), the tool lists normalised to one form.
    """
    _expect_type(value, list, where)
    if not value:
        raise _RowProblem("empty conversation", where)
    messages = []
    for i, message in enumerate(value):
        at = f"{where}[{i}]"
        _expect_type(message, dict, at)
        # an optional field given as null is absent
        present = {k: v for k, v in message.items() if v is not None or k not in OPTIONAL_FIELDS}
        optional = tuple(k for k in OPTIONAL_FIELDS if k in present) if extended else ()
        _expect_fields(present, ("role", "content", *optional), at + ".")
        role = message["role"]
        _expect_type(role, str, at + ".role")
        if role not in (SFT_ROLES if extended else ROLES):
            raise _RowProblem(f"unknown role {role!r}", at + ".role")
        if role == "system" and i > 0:
            raise _RowProblem("system message after the first turn", at + ".role")
        for name in optional:
            if OPTIONAL_FIELDS[name] != role:
                raise _RowProblem(f"{name} on a {role} turn", f"{at}.{name}")
        if role == "tool" and not (
            messages and (messages[-1].get("tool_calls") or messages[-1]["role"] == "tool")
        ):
            raise _RowProblem("a tool turn without a tool call before it", at + ".role")
        calls = (
            _tool_calls(present["tool_calls"], at + ".tool_calls")
            if "tool_calls" in optional
            else None
        )
        last = i == len(value) - 1
        # a call, or a system turn that only lists the tools, may come without text
        tools_only = extended and role == "system" and present.get("tools") is not None
        content = _expect_text(
            message["content"],
            at + ".content",
            allow_empty=(placeholder_last and last) or bool(calls) or tools_only,
        )
        converted = {"role": role, "content": content}
        if extended:
            tools = present.get("tools")
            converted |= {
                "tools": [
                    json.dumps(t, ensure_ascii=False) for t in _json_list(tools, at + ".tools")
                ]
                if tools is not None
                else None,
                "tool_calls": calls,
                "reasoning_content": _expect_text(
                    present["reasoning_content"], at + ".reasoning_content", allow_empty=True
                )
                if "reasoning_content" in present
                else None,
            }
        messages.append(converted)
    return messages


def _characters(*conversations: list[dict]) -> int:
    return sum(
        len(m["content"]) + len(m.get("reasoning_content") or "")
        for conv in conversations
        for m in conv
    )


def _pretrain_row(obj: dict) -> tuple[dict, int]:
    _expect_fields(obj, ("text",))
    text = _expect_text(obj["text"], "text")
    return {"text": text}, len(text)


def _sft_row(obj: dict) -> tuple[dict, int]:
    _expect_fields(obj, ("conversations",))
    messages = _conversation(obj["conversations"], "conversations", extended=True)
    if not any(m["role"] == "assistant" for m in messages):
        raise _RowProblem("no assistant turn to learn from", "conversations")
    return {"messages": messages}, _characters(messages)


def _dpo_row(obj: dict) -> tuple[dict, int]:
    """Split two conversations into their shared prompt and the differing assistant turn(s)."""
    _expect_fields(obj, ("chosen", "rejected"))
    chosen = _conversation(obj["chosen"], "chosen")
    rejected = _conversation(obj["rejected"], "rejected")
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    if k == 0:
        raise _RowProblem("chosen and rejected share no prompt", "chosen[0]")
    if k == len(chosen) or k == len(rejected):
        what = "are identical" if len(chosen) == len(rejected) else "differ only in length"
        raise _RowProblem(f"chosen and rejected {what}", "chosen")
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if conv[k]["role"] != "assistant":
            raise _RowProblem(
                f"chosen and rejected must part at an assistant turn, not a {conv[k]['role']} turn",
                f"{name}[{k}].role",
            )
    row = {"prompt": chosen[:k], "chosen": chosen[k:], "rejected": rejected[k:]}
    return row, _characters(*row.values())


def _rlaif_row(obj: dict) -> tuple[dict, int]:
    """Drop the trailing assistant placeholder, whatever its text: the policy writes that turn."""
    _expect_fields(obj, ("conversations",))
    messages = _conversation(obj["conversations"], "conversations", placeholder_last=True)
    if messages[-1]["role"] != "assistant":
        raise _RowProblem(
            "last message is not the assistant placeholder",
            f"conversations[{len(messages) - 1}].role",
        )
    prompt = messages[:-1]
    if not prompt or prompt[-1]["role"] != "user":
        raise _RowProblem("no user message before the placeholder", "conversations")
    return {"prompt": prompt}, _characters(prompt)


_ROW_CHECKS = {"pretrain": _pretrain_row, "sft": _sft_row, "dpo": _dpo_row, "rlaif": _rlaif_row}


# --------------------------------------------------------------------------------------
# Streaming over a file
# --------------------------------------------------------------------------------------
def _missing_file_message(path: Path) -> str:
    return (
        f"{path}: file not found; download the real MiniMind data with `{DOWNLOAD_COMMAND}` "
        "(the synthetic set is generated by minimind_lib.synthetic.ensure_dataset)"
    )


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(_missing_file_message(path))
    return path


def _parse_line(raw: bytes) -> dict | _RowProblem:
    """One raw line as a JSON object, or the problem with it."""
    raw = raw.rstrip(b"\r\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _RowProblem(f"non-UTF-8 bytes at byte {e.start + 1}")
    if not text.strip():
        return _RowProblem("blank line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return _RowProblem(f"invalid JSON: {e.msg} at column {e.colno}")
    if not isinstance(obj, dict):
        return _RowProblem(f"wrong type: expected a JSON object, got {_type_name(obj)}")
    return obj


def _check_line(raw: bytes, kind: str) -> tuple[dict, int] | _RowProblem:
    """One raw line checked against a schema: (converted row, characters) or the problem."""
    obj = _parse_line(raw)
    if isinstance(obj, _RowProblem):
        return obj
    try:
        return _ROW_CHECKS[kind](obj)
    except _RowProblem as problem:
        return problem


def _json_objects(path: Path) -> Iterator[tuple[int, dict | _RowProblem]]:
    """Yield (line number, parsed object or the problem with that line), reading bytes line by line."""
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            yield line_number, _parse_line(raw)


def _checked_rows(path: Path, kind: str) -> Iterator[tuple[int, tuple[dict, int] | _RowProblem]]:
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            yield line_number, _check_line(raw, kind)


def infer_kind(path: str | os.PathLike) -> str:
    """The schema of a file, from the fields of its first valid JSON object.

    `conversations` is both SFT and RLAIF: the file name decides (`rlaif` in it -> rlaif).
    """
    path = _existing_file(path)
    for _, obj in _json_objects(path):
        if isinstance(obj, _RowProblem):
            continue
        if "text" in obj:
            return "pretrain"
        if "chosen" in obj or "rejected" in obj:
            return "dpo"
        if "conversations" in obj:
            return "rlaif" if "rlaif" in path.name.lower() else "sft"
        raise DataError(f"{path}: cannot tell the kind from the fields {sorted(obj)}; pass --kind")
    raise DataError(f"{path}: no valid JSON row to tell the kind from; pass --kind")


SCHEMAS = {
    "pretrain": '{"text": ...}',
    "sft": '{"conversations": [...]}',
    "dpo": '{"chosen": [...], "rejected": [...]}',
    "rlaif": '{"conversations": [..., {"role": "assistant", "content": ""}]}',
}


def stage_data_file(profile, kind: str, own: str | os.PathLike | None = None) -> Path:
    """The file a stage trains on: `own` (a notebook's DATA_FILE: your own data) or else the
    profile's. Your own file must exist and have this stage's fields; its rows are checked by the
    stage like any other file (`check_file`)."""
    if own is None or str(own) == "":
        return profile.data_file(kind)
    path = Path(own).expanduser()
    if not path.is_absolute():  # the kernel runs in notebooks/: relative to the course folder
        path = ROOT / path
    if not path.is_file():
        raise DataError(
            f"{path}: file not found (DATA_FILE: your own {kind} file, {SCHEMAS[kind]} a line)"
        )
    found = infer_kind(path)
    same_fields = {found, kind} <= {"sft", "rlaif"}  # both are conversations
    if found != kind and not same_fields:
        raise DataError(
            f"{path}: its rows look like {found} rows ({SCHEMAS[found]}); this stage trains on {kind} "
            f"rows ({SCHEMAS[kind]} a line)"
        )
    return path


@dataclass
class ValidationReport:
    path: Path
    kind: str | None
    rows: int = 0
    bad_rows: int = 0
    characters: int = 0  # in the good rows' text / message contents
    problems: list[str] = field(default_factory=list)  # the first `max_problems` of them

    checked: int | None = None  # rows actually checked when only a sample was (None: every row)
    sample: list[dict] = field(default_factory=list, repr=False)  # converted good rows checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def tally(self, result, line_number: int, max_problems: int) -> bool:
        """Count one checked row (a `_RowProblem` or (converted row, characters)); True if good."""
        if isinstance(result, _RowProblem):
            self.bad_rows += 1
            if len(self.problems) < max_problems:
                self.problems.append(result.message(self.path, line_number))
            return False
        self.characters += result[1]
        return True

    @property
    def complete(self) -> bool:
        """Every row was checked (a full validation, or a file no larger than the sample)."""
        return self.checked is None or self.checked == self.rows

    def summary(self) -> str:
        if not self.complete:
            return (
                f"{self.path}: {self.kind}, {self.rows:,} rows, checked {self.checked:,} "
                f"(the first ones and a random sample), {self.bad_rows:,} bad"
            )
        return (
            f"{self.path}: {self.kind}, {self.rows:,} rows, {self.bad_rows:,} bad, "
            f"{self.characters:,} characters"
        )

    def raise_if_bad(self) -> ValidationReport:
        """Stop with the first problem, `FILE:LINE: problem (field)`; the report itself when clean."""
        if self.ok:
            return self
        if not self.bad_rows:  # a problem with the whole file: missing rows, unknown kind
            raise DataError(self.problems[0])
        more = self.bad_rows - 1
        where = "checked rows" if not self.complete else "rows"
        tail = f" (and {more:,} more bad {where})" if more > 0 else ""
        raise DataError(
            f"{self.problems[0]}{tail}; list them all with "
            f"`python -m minimind_lib.data validate {self.path}`"
        )


def validate_file(
    path: str | os.PathLike, kind: str | None = None, max_problems: int = 1000
) -> ValidationReport:
    """Check every line of a jsonl file against its schema; never modifies the file."""
    path = _existing_file(path)
    if path.stat().st_size == 0:
        return ValidationReport(path, kind, problems=[f"{path}: empty file (no rows)"])
    if kind is None:
        try:
            kind = infer_kind(path)
        except DataError as e:
            return ValidationReport(path, None, problems=[str(e)])
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    report = ValidationReport(path, kind)
    for line_number, result in _checked_rows(path, kind):
        report.rows += 1
        report.tally(result, line_number, max_problems)
    return report


def sample_file(
    path: str | os.PathLike,
    kind: str | None = None,
    head: int = 200,
    sample: int = 800,
    seed: int = 0,
    max_problems: int = 20,
) -> ValidationReport:
    """Count the rows of a jsonl file and check the first `head` of them plus `sample` others
    drawn at random (reservoir sampling): one pass over the bytes that parses only those rows,
    so a GB-scale file takes seconds. A file of at most `head + sample` rows is checked whole.
    The converted good rows checked are kept in `report.sample` (for estimates: tokens a row)."""
    import random

    path = _existing_file(path)
    if path.stat().st_size == 0:
        return ValidationReport(path, kind, checked=0, problems=[f"{path}: empty file (no rows)"])
    if kind is None:
        try:
            kind = infer_kind(path)
        except DataError as e:
            return ValidationReport(path, None, checked=0, problems=[str(e)])
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    rng = random.Random(seed)
    chosen: list[tuple[int, bytes]] = []  # the first `head` lines, then the reservoir
    seen = 0  # lines after the first `head`
    rows = 0
    with open(path, "rb") as f:
        for rows, raw in enumerate(f, start=1):
            if rows <= head:
                chosen.append((rows, raw))
                continue
            seen += 1
            if seen <= sample:
                chosen.append((rows, raw))
            else:
                j = rng.randrange(seen)
                if j < sample:
                    chosen[head + j] = (rows, raw)
    report = ValidationReport(path, kind, rows=rows, checked=len(chosen))
    for line_number, raw in sorted(chosen):
        result = _check_line(raw, kind)
        if report.tally(result, line_number, max_problems):
            report.sample.append(result[0])
    return report


def check_file(
    path: str | os.PathLike, kind: str, full: bool = False, **sample_kwargs
) -> ValidationReport:
    """What a notebook runs before training: `sample_file` (the default), or every row when
    `full` (its VALIDATE_ALL); a bad row stops it with `FILE:LINE: problem (field)`."""
    report = sample_file(path, kind, **sample_kwargs)
    report.raise_if_bad()
    if full and not report.complete:
        whole = validate_file(path, kind)
        whole.checked, whole.sample = whole.rows, report.sample
        report = whole.raise_if_bad()
    return report


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------
def _features(kind: str):
    from datasets import Features, List, Value

    conversation = List({"role": Value("string"), "content": Value("string")})
    sft_conversation = List({
        "role": Value("string"),
        "content": Value("string"),
        "tools": List(Value("string")),  # each tool's schema as JSON text
        "tool_calls": List({"name": Value("string"), "arguments": Value("string")}),
        "reasoning_content": Value("string"),
    })  # fmt: skip
    return Features(
        {
            "pretrain": {"text": Value("string")},
            "sft": {"messages": sft_conversation},
            "dpo": {"prompt": conversation, "chosen": conversation, "rejected": conversation},
            "rlaif": {"prompt": conversation},
        }[kind]
    )


def _converted_rows(path: str, kind: str, skip_bad: bool) -> Iterator[dict]:
    for line_number, result in _checked_rows(Path(path), kind):
        if isinstance(result, _RowProblem):
            if skip_bad:
                continue
            raise DataError(result.message(path, line_number))
        yield result[0]


def _count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _load(path, kind: str, skip_bad: bool, cache_dir: str | os.PathLike | None):
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    path = _existing_file(path)
    stat = path.stat()
    if stat.st_size == 0:
        raise DataError(f"{path}: empty file (no rows)")
    # The cache key follows the file's stamp, so an edited file is converted again.
    stamp = (
        f"{_LOADER_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{skip_bad}"
    )
    try:
        dataset = Dataset.from_generator(
            _converted_rows,
            features=_features(kind),
            gen_kwargs={"path": str(path), "kind": kind, "skip_bad": skip_bad},
            cache_dir=str(cache_dir) if cache_dir else None,
            fingerprint=hashlib.sha256(stamp.encode()).hexdigest()[:32],
        )
    except DatasetGenerationError as e:
        if isinstance(e.__cause__, DataError):
            raise e.__cause__ from None
        raise
    except ValueError as e:  # `datasets` refuses a split with no rows at all
        if "no data" in str(e):
            raise DataError(f"{path}: no valid rows (every row is bad)") from None
        raise
    dataset.skipped_rows = _count_lines(path) - len(dataset) if skip_bad else 0
    if dataset.skipped_rows:
        print(
            f"{path}: skipped {dataset.skipped_rows:,} bad row(s), kept {len(dataset):,}; "
            f"list them with `python -m minimind_lib.data validate {path}`"
        )
    return dataset


def load_pretrain(path, skip_bad: bool = False, *, cache_dir=None):
    """Pretraining texts as a `datasets.Dataset` with one column, `text`."""
    return _load(path, "pretrain", skip_bad, cache_dir)


def load_sft(path, skip_bad: bool = False, *, cache_dir=None):
    """SFT conversations as trl's conversational `messages` column."""
    return _load(path, "sft", skip_bad, cache_dir)


def load_dpo(path, skip_bad: bool = False, *, cache_dir=None):
    """Preference pairs as trl's conversational `prompt` / `chosen` / `rejected` columns."""
    return _load(path, "dpo", skip_bad, cache_dir)


def load_rlaif(path, skip_bad: bool = False, *, cache_dir=None):
    """RL prompts as trl's conversational `prompt` column (the assistant placeholder dropped)."""
    return _load(path, "rlaif", skip_bad, cache_dir)


LOADERS = {"pretrain": load_pretrain, "sft": load_sft, "dpo": load_dpo, "rlaif": load_rlaif}


def sample_rows(dataset, max_rows: int | None, seed: int):
    """A seeded random sample of `max_rows` rows of a loaded file (a profile's `max_rows`), the
    same rows for the same seed; the whole dataset when `max_rows` is None or not smaller."""
    if max_rows is None or max_rows >= len(dataset):
        return dataset
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive number of rows, not {max_rows}")
    # in memory: nothing written to the cache, so several processes can run it at once
    shuffled = dataset.shuffle(seed=seed, keep_in_memory=True)
    return shuffled.select(range(max_rows), keep_in_memory=True)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All rows of a small jsonl file (the evaluation sets), as a list."""
    with open(_existing_file(path), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------
# Download of the real files: Hugging Face first, ModelScope as the fallback
# --------------------------------------------------------------------------------------
def _offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _first_line(error: BaseException) -> str:
    reason = getattr(error, "reason", None)  # urllib wraps socket errors in `reason`
    text = str(
        reason if reason is not None and not isinstance(error, urllib.error.HTTPError) else error
    )
    return (text.strip().splitlines() or [type(error).__name__])[0][:200]


def _unreachable(url: str, timeout: float = 10.0) -> str | None:
    """Why nothing answers at `url`, or None when a server does (any HTTP status counts)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except OSError as e:  # URLError, timeouts, refused connections
        return _first_line(e)
    return None


def _from_hugging_face(filename: str, dest: Path) -> None:
    from huggingface_hub import constants, hf_hub_download

    endpoint = HF_ENDPOINT or constants.ENDPOINT
    # huggingface_hub retries a dead host for ~25 s with a warning each time: ask once first.
    reason = _unreachable(endpoint)
    if reason:
        raise OSError(f"{endpoint} unreachable: {reason}")
    # With local_dir, an interrupted download is resumed from dest/.cache/huggingface.
    hf_hub_download(HF_REPO, filename, repo_type="dataset", local_dir=dest, endpoint=endpoint)


def _from_modelscope(filename: str, dest: Path) -> None:
    """Plain HTTP, appended to a `.part` file, so a second run resumes with a Range header."""
    target = dest / filename
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(MODELSCOPE_URL.format(filename=filename))
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to fetch: the .part file is complete
            part.replace(target)
            return
        raise
    resume = start > 0 and response.status == 206  # else the server sent the whole file again
    print(
        f"ModelScope: downloading {filename}"
        + (f", resuming at {start / 2**20:.1f} MiB" if resume else "")
    )
    with response, open(part, "ab" if resume else "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    part.replace(target)


def download(
    files: list[str] | None = None,
    dest: str | os.PathLike | None = None,
    data_set: str = "minimind2",
) -> list[Path]:
    """Fetch real MiniMind files (names, or kinds of `data_set`; default its four) into `dest`
    (default dataset/). `data_set`: "minimind2" (the course's default) or "minimind3"."""
    if data_set not in DATA_SETS:
        raise DataError(f"unknown data set {data_set!r}; choose one of {sorted(DATA_SETS)}")
    chosen = DATA_SETS[data_set]
    names = [chosen.get(f, f) for f in (files or chosen.values())]
    dest = Path(dest) if dest else ROOT / "dataset"
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        target = dest / name
        paths.append(target)
        if target.exists():
            print(f"{target}: already there")
            continue
        if _offline_mode():
            raise DownloadError(
                f"cannot download {name}: HF_HUB_OFFLINE is set; unset it or copy the file into {dest}"
            )
        failures = []
        for source, fetch in (
            ("Hugging Face", _from_hugging_face),
            ("ModelScope", _from_modelscope),
        ):
            try:
                fetch(name, dest)
                break
            except Exception as e:  # any failure of one source means: try the next one
                failures.append(f"{source}: {_first_line(e)}")
        else:
            raise DownloadError(
                f"cannot download {name} ({'; '.join(failures)}); are you offline? "
                f"Copy the file into {dest} by hand, or retry later"
            )
        print(f"{target}: done")
    return paths


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def _validate_command(args, max_listed: int = 50) -> int:
    report = (
        sample_file(args.file, args.kind) if args.sample else validate_file(args.file, args.kind)
    )
    if report.ok:
        print(report.summary() + ": OK")
        return 0
    for problem in report.problems[:max_listed]:
        print(problem, file=sys.stderr)
    if report.bad_rows > max_listed:
        print(f"... and {report.bad_rows - max_listed:,} more bad rows", file=sys.stderr)
    if report.rows:
        print(report.summary(), file=sys.stderr)
    return 1


def _download_command(args) -> int:
    download(args.files or None, args.dir, args.set)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minimind_lib.data", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check every line of a MiniMind jsonl file")
    validate.add_argument("file")
    validate.add_argument("--kind", choices=KINDS, help="default: told from the first valid row")
    validate.add_argument(
        "--sample", action="store_true", help="quick: the first 200 rows and 800 at random"
    )
    validate.set_defaults(run=_validate_command)
    fetch = commands.add_parser(
        "download", help="fetch the real MiniMind files (Hugging Face, then ModelScope)"
    )
    fetch.add_argument(
        "files", nargs="*", help=f"file names or kinds (default: {' '.join(DATA_FILES.values())})"
    )
    fetch.add_argument("--dir", default=None, help="destination (default: dataset/)")
    fetch.add_argument(
        "--set",
        choices=sorted(DATA_SETS),
        default="minimind2",
        help="which files: MiniMind2's (default) or MiniMind-3's *_mini set "
        f"({' '.join(DATA_SETS['minimind3'].values())})",
    )
    fetch.set_defaults(run=_download_command)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except DataError as e:  # one clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
