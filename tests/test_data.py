"""Readers, validators, CLI and download of the four MiniMind schemas (minimind_lib.data)."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from minimind_lib import data
from minimind_lib.data import DataError, infer_kind, validate_file


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def write_rows(path: Path, rows: list) -> Path:
    """Rows are objects (dumped as JSON) or raw bytes (written as they are), one a line."""
    path.write_bytes(b"".join((r if isinstance(r, bytes) else line(r)) + b"\n" for r in rows))
    return path


GOOD = {
    "pretrain": {"text": "瓦洛里亚的首都是诺维克。"},
    "sft": {
        "conversations": [msg("user", "What is 2 + 3?"), msg("assistant", "2 plus 3 equals 5.")]
    },
    "dpo": {
        "chosen": [msg("user", "2 加 3 等于多少？"), msg("assistant", "2 加 3 等于 5。")],
        "rejected": [msg("user", "2 加 3 等于多少？"), msg("assistant", "2 plus 3 equals 5.")],
    },
    "rlaif": {"conversations": [msg("user", "What is 2 + 3?"), msg("assistant", "无")]},
}
FILE_NAMES = {
    "pretrain": "pretrain.jsonl",
    "sft": "sft.jsonl",
    "dpo": "dpo.jsonl",
    "rlaif": "rlaif.jsonl",
}

# (kind, bad row, the problem reported for it); the row sits on line 2 of a 3-line file.
BAD_ROWS = [
    ("pretrain", b'{"text": "a"', "invalid JSON: Expecting ',' delimiter at column 13"),
    ("pretrain", b'{"text": "caf\xe9"}', "non-UTF-8 bytes at byte 14"),
    ("pretrain", b"   ", "blank line"),
    ("pretrain", ["a list"], "wrong type: expected a JSON object, got list"),
    ("pretrain", {"txt": "a"}, "missing field (text)"),
    ("pretrain", {"text": "a", "id": 7}, "unexpected field (id)"),
    ("pretrain", {"text": 7}, "wrong type: expected string, got number (text)"),
    ("pretrain", {"text": " \n "}, "empty content (text)"),
    ("sft", {"conversations": "hi"}, "wrong type: expected list, got string (conversations)"),
    ("sft", {"conversations": []}, "empty conversation (conversations)"),
    (
        "sft",
        {"conversations": [msg("user", "hi"), msg("bot", "hello")]},
        "unknown role 'bot' (conversations[1].role)",
    ),
    (
        "sft",
        {"conversations": [msg("user", ""), msg("assistant", "hello")]},
        "empty content (conversations[0].content)",
    ),
    (
        "sft",
        {"conversations": [{"role": "user"}, msg("assistant", "hello")]},
        "missing field (conversations[0].content)",
    ),
    (
        "sft",
        {"conversations": [msg("user", "hi"), {**msg("assistant", "yo"), "name": "x"}]},
        "unexpected field (conversations[1].name)",
    ),
    (
        "sft",
        {"conversations": [msg("user", "hi"), {"role": "assistant", "content": None}]},
        "wrong type: expected string, got null (conversations[1].content)",
    ),
    (
        "sft",
        {"conversations": [msg("user", "hi")]},
        "no assistant turn to learn from (conversations)",
    ),
    (
        "sft",
        {"conversations": [msg("user", "hi"), msg("system", "be brief"), msg("assistant", "ok")]},
        "system message after the first turn (conversations[1].role)",
    ),
    ("dpo", {"chosen": GOOD["dpo"]["chosen"]}, "missing field (rejected)"),
    (
        "dpo",
        {
            "chosen": [msg("user", "q1"), msg("assistant", "a")],
            "rejected": [msg("user", "q2"), msg("assistant", "b")],
        },
        "chosen and rejected share no prompt (chosen[0])",
    ),
    (
        "dpo",
        {"chosen": GOOD["dpo"]["chosen"], "rejected": GOOD["dpo"]["chosen"]},
        "chosen and rejected are identical (chosen)",
    ),
    (
        "dpo",
        {
            "chosen": [msg("user", "q"), msg("assistant", "a"), msg("user", "more")],
            "rejected": [msg("user", "q"), msg("assistant", "a"), msg("user", "other")],
        },
        "chosen and rejected must part at an assistant turn, not a user turn (chosen[2].role)",
    ),
    (
        "rlaif",
        {"conversations": [msg("assistant", "无"), msg("user", "2 + 3?")]},
        "last message is not the assistant placeholder (conversations[1].role)",
    ),
    (
        "rlaif",
        {"conversations": [msg("assistant", "无")]},
        "no user message before the placeholder (conversations)",
    ),
    (
        "rlaif",
        {"conversations": [msg("user", " "), msg("assistant", "无")]},
        "empty content (conversations[0].content)",
    ),
]


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "arrow-cache"


def bad_file(tmp_path: Path, kind: str, bad_row) -> Path:
    return write_rows(tmp_path / FILE_NAMES[kind], [GOOD[kind], bad_row, GOOD[kind]])


@pytest.mark.parametrize(("kind", "bad_row", "problem"), BAD_ROWS)
def test_validator_names_file_line_and_field(tmp_path, kind, bad_row, problem):
    path = bad_file(tmp_path, kind, bad_row)
    report = validate_file(path, kind)
    assert report.problems == [f"{path}:2: {problem}"]
    assert (report.rows, report.bad_rows) == (3, 1)
    assert not report.ok


@pytest.mark.parametrize(("kind", "bad_row", "problem"), BAD_ROWS[::3])
def test_loader_raises_the_validators_message_or_skips(
    tmp_path, cache, capsys, kind, bad_row, problem
):
    path = bad_file(tmp_path, kind, bad_row)
    with pytest.raises(DataError) as error:
        data.LOADERS[kind](path, cache_dir=cache)
    assert str(error.value) == f"{path}:2: {problem}"

    dataset = data.LOADERS[kind](path, skip_bad=True, cache_dir=cache)
    assert len(dataset) == 2
    assert dataset.skipped_rows == 1
    assert "skipped 1 bad row(s), kept 2" in capsys.readouterr().out


def test_skip_mode_counts_every_bad_row(tmp_path, cache, capsys):
    rows = [GOOD["sft"], b"{oops", GOOD["sft"], {"conversations": []}, b"", GOOD["sft"], b"\xff"]
    path = write_rows(tmp_path / "sft.jsonl", rows)
    report = validate_file(path)
    assert [p.split(": ")[0] for p in report.problems] == [f"{path}:{n}" for n in (2, 4, 5, 7)]
    dataset = data.load_sft(path, skip_bad=True, cache_dir=cache)
    assert (len(dataset), dataset.skipped_rows) == (3, 4)
    assert "skipped 4 bad row(s)" in capsys.readouterr().out
    # A clean load of the same file still refuses it (a separate cache entry).
    with pytest.raises(DataError, match=r"sft\.jsonl:2: invalid JSON"):
        data.load_sft(path, cache_dir=cache)


def test_a_file_of_only_bad_rows_is_an_error_even_when_skipping(tmp_path, cache):
    path = write_rows(tmp_path / "pretrain.jsonl", [b"nope", {"text": ""}])
    with pytest.raises(DataError, match="no valid rows"):
        data.load_pretrain(path, skip_bad=True, cache_dir=cache)


def test_empty_and_missing_files(tmp_path, cache):
    empty = tmp_path / "pretrain.jsonl"
    empty.write_bytes(b"")
    assert validate_file(empty).problems == [f"{empty}: empty file (no rows)"]
    with pytest.raises(DataError, match="empty file"):
        data.load_pretrain(empty, cache_dir=cache)

    missing = tmp_path / "nothing.jsonl"
    for call in (validate_file, infer_kind, data.load_sft):
        with pytest.raises(DataError) as error:
            call(missing)
        assert str(error.value).startswith(f"{missing}: file not found")
        assert "`python -m minimind_lib.data download`" in str(error.value)


def test_sft_rows_become_trl_messages(tmp_path, cache):
    conversation = [msg("system", "Answer briefly."), msg("user", "hi"), msg("assistant", "hello")]
    path = write_rows(tmp_path / "sft.jsonl", [{"conversations": conversation}, GOOD["sft"]])
    dataset = data.load_sft(path, cache_dir=cache)
    assert dataset.column_names == ["messages"]
    # every message carries MiniMind-3's optional fields (tests/test_t2t.py), None when absent
    absent = {"tools": None, "tool_calls": None, "reasoning_content": None}
    assert dataset[0]["messages"] == [m | absent for m in conversation]
    assert dataset.skipped_rows == 0


def test_dpo_pairs_split_into_prompt_chosen_rejected(tmp_path, cache):
    prefix = [msg("system", "s"), msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2")]
    rows = [
        GOOD["dpo"],
        # Two differing assistant turns after the prefix: both stay in chosen/rejected.
        {
            "chosen": prefix
            + [msg("assistant", "good"), msg("user", "thanks"), msg("assistant", "bye")],
            "rejected": prefix + [msg("assistant", "bad")],
        },
    ]
    path = write_rows(tmp_path / "dpo.jsonl", rows)
    dataset = data.load_dpo(path, cache_dir=cache)
    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    assert dataset[0] == {
        "prompt": [msg("user", "2 加 3 等于多少？")],
        "chosen": [msg("assistant", "2 加 3 等于 5。")],
        "rejected": [msg("assistant", "2 plus 3 equals 5.")],
    }
    assert dataset[1]["prompt"] == prefix
    assert dataset[1]["chosen"] == [
        msg("assistant", "good"),
        msg("user", "thanks"),
        msg("assistant", "bye"),
    ]
    assert dataset[1]["rejected"] == [msg("assistant", "bad")]


@pytest.mark.parametrize(
    "placeholder", ["无", "", "   ", "an answer that must not leak into the prompt"]
)
def test_rlaif_placeholder_is_dropped_whatever_its_text(tmp_path, cache, placeholder):
    prompt = [msg("system", "Answer briefly."), msg("user", "What is 2 + 3?")]
    path = write_rows(
        tmp_path / "rlaif.jsonl", [{"conversations": prompt + [msg("assistant", placeholder)]}]
    )
    assert validate_file(path).ok
    dataset = data.load_rlaif(path, cache_dir=cache)
    assert dataset.column_names == ["prompt"]
    assert dataset[0]["prompt"] == prompt


def test_report_counts_rows_and_characters(tmp_path):
    path = write_rows(tmp_path / "pretrain.jsonl", [{"text": "abc"}, {"text": "你好"}, b"bad"])
    report = validate_file(path)
    assert (report.kind, report.rows, report.bad_rows, report.characters) == ("pretrain", 3, 1, 5)


def test_nothing_is_written_over_the_input(tmp_path, cache):
    path = bad_file(tmp_path, "sft", b"{broken")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    validate_file(path)
    data.load_sft(path, skip_bad=True, cache_dir=cache)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow-cache", "sft.jsonl"]


def test_an_edited_file_is_converted_again(tmp_path, cache):
    path = write_rows(tmp_path / "pretrain.jsonl", [{"text": "one"}])
    assert data.load_pretrain(path, cache_dir=cache)["text"] == ["one"]
    write_rows(path, [{"text": "one"}, {"text": "two"}])
    assert data.load_pretrain(path, cache_dir=cache)["text"] == ["one", "two"]


def test_a_sample_is_seeded_distinct_rows_of_the_file(tmp_path, cache):
    path = write_rows(tmp_path / "pretrain.jsonl", [{"text": f"doc {i}"} for i in range(50)])
    loaded = data.load_pretrain(path, cache_dir=cache)
    sample = data.sample_rows(loaded, 10, seed=3)
    texts = sample["text"]
    assert len(texts) == len(set(texts)) == 10 and set(texts) <= set(loaded["text"])
    assert data.sample_rows(loaded, 10, seed=3)["text"] == texts  # the same rows for the same seed
    assert data.sample_rows(loaded, 10, seed=4)["text"] != texts
    assert texts != loaded["text"][:10]  # drawn from the whole file, not its first rows
    assert data.sample_rows(loaded, None, seed=3) is loaded and data.sample_rows(loaded, 50, seed=3) is loaded
    with pytest.raises(ValueError, match="max_rows must be a positive number"):
        data.sample_rows(loaded, 0, seed=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow-cache", "pretrain.jsonl"]


def test_infer_kind_from_the_first_valid_row(tmp_path):
    for kind, row in GOOD.items():
        path = write_rows(tmp_path / FILE_NAMES[kind], [b"{not json", row])
        assert infer_kind(path) == kind
    assert infer_kind(write_rows(tmp_path / "rlaif-mini.jsonl", [GOOD["rlaif"]])) == "rlaif"
    with pytest.raises(DataError, match="pass --kind"):
        infer_kind(write_rows(tmp_path / "odd.jsonl", [{"question": "?"}]))
    with pytest.raises(DataError, match="no valid JSON row"):
        infer_kind(write_rows(tmp_path / "junk.jsonl", [b"junk"]))


# ---- command line ---------------------------------------------------------------------------
def test_cli_validate_clean_file_prints_summary(tmp_path, capsys):
    path = write_rows(tmp_path / "dpo.jsonl", [GOOD["dpo"]] * 3)
    assert data.main(["validate", str(path)]) == 0
    chars = 3 * len("2 加 3 等于多少？2 加 3 等于 5。2 plus 3 equals 5.")
    assert capsys.readouterr().out.strip() == f"{path}: dpo, 3 rows, 0 bad, {chars} characters: OK"


def test_cli_validate_bad_file_lists_problems_and_fails(tmp_path, capsys):
    path = bad_file(tmp_path, "sft", {"conversations": [msg("user", "hi"), msg("robot", "x")]})
    assert data.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}:2: unknown role 'robot' (conversations[1].role)"
    chars = 2 * (len("What is 2 + 3?") + len("2 plus 3 equals 5."))
    assert err[-1] == f"{path}: sft, 3 rows, 1 bad, {chars} characters"


def test_cli_kind_flag_overrides_inference(tmp_path, capsys):
    path = write_rows(tmp_path / "sft.jsonl", [GOOD["sft"]])
    assert data.main(["validate", str(path), "--kind", "pretrain"]) == 1
    assert f"{path}:1: missing field (text)" in capsys.readouterr().err


def test_cli_empty_file_fails(tmp_path, capsys):
    path = tmp_path / "sft.jsonl"
    path.touch()
    assert data.main(["validate", str(path)]) == 1
    assert capsys.readouterr().err.strip() == f"{path}: empty file (no rows)"


def test_cli_missing_file_is_one_line_naming_the_download_command(tmp_path):
    missing = tmp_path / "pretrain_hq.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "minimind_lib.data", "validate", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert f"{missing}: file not found" in result.stderr
    assert "python -m minimind_lib.data download" in result.stderr


# ---- download (never the real network) ------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch):
    """Both sources point at a local port where nothing listens."""
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "HF_ENDPOINT", dead)
    monkeypatch.setattr(data, "MODELSCOPE_URL", dead + "/{filename}")
    return dead


def test_download_offline_mode_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert data.main(["download", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: cannot download pretrain_hq.jsonl: HF_HUB_OFFLINE is set")
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable_sources_fail_with_one_line(tmp_path, no_network, capsys):
    assert data.main(["download", "dpo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cannot download dpo.jsonl" in err
    assert "Hugging Face:" in err and "ModelScope:" in err and "offline" in err
    assert not (tmp_path / "dpo.jsonl").exists()


def test_download_skips_files_already_there(tmp_path, no_network, capsys):
    (tmp_path / "dpo.jsonl").write_text("{}\n")
    assert data.download(["dpo.jsonl"], tmp_path) == [tmp_path / "dpo.jsonl"]
    assert "already there" in capsys.readouterr().out


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `body` for any path and honours `Range: bytes=N-` like a file server."""

    body = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        if header := self.headers.get("Range"):
            type(self).ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(self.body) - start))
        self.end_headers()
        self.wfile.write(self.body[start:])

    def log_message(self, *args):
        pass


def test_modelscope_fallback_resumes_a_partial_download(tmp_path, no_network, monkeypatch):
    body = b"".join(line(GOOD["pretrain"]) + b"\n" for _ in range(1000))
    RangeHandler.body, RangeHandler.ranges = body, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(
            data, "MODELSCOPE_URL", f"http://127.0.0.1:{server.server_port}/{{filename}}"
        )
        (tmp_path / "pretrain_hq.jsonl.part").write_bytes(body[:1234])  # an interrupted earlier run
        data.download(["pretrain"], tmp_path)
    finally:
        server.shutdown()
    assert RangeHandler.ranges == ["bytes=1234-"]
    assert (tmp_path / "pretrain_hq.jsonl").read_bytes() == body
    assert not (tmp_path / "pretrain_hq.jsonl.part").exists()
