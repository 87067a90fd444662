"""01_tokenizer on a valid corpus in one language only (a common case for a user's own data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minimind_lib import synthetic
from minimind_lib.data import read_jsonl
from minimind_lib.profiles import TINY

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_tokenizer.ipynb"


def run_tokenizer_notebook(root: Path, keep) -> subprocess.CompletedProcess:
    """Generate the synthetic set under `root`, keep only the pretraining texts `keep` accepts
    (the stamp stays valid: the notebook reads the file as it is), run 01 headless."""
    data_dir = root / "dataset" / "synthetic"
    synthetic.generate(data_dir, seed=TINY.data_seed)
    path = data_dir / "pretrain_hq.jsonl"
    rows = [r for r in read_jsonl(path) if keep(r["text"])]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    env = dict(os.environ, MINIMIND_ROOT=str(root), TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    return subprocess.run([sys.executable, "-m", "minimind_lib.run", str(NOTEBOOK), "--profile", "tiny"],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("lang", "keep"), [
    ("zh", lambda text: not any(c.isascii() and c.isalpha() for c in text)),
    ("en", lambda text: text.isascii()),
])  # fmt: skip
def test_a_one_language_corpus_gets_the_plots_of_that_language(tmp_path, lang, keep):
    done = run_tokenizer_notebook(tmp_path, keep)
    assert done.returncode == 0, done.stderr[-2000:]
    executed = (tmp_path / "out" / "tiny" / "executed" / "01_tokenizer.ipynb").read_text(encoding="utf-8")
    other = {"zh": "en", "en": "zh"}[lang]
    assert f"all checks passed: {lang} " in executed and f"{other} chars/token" not in executed
    assert (tmp_path / "out" / "tiny" / "tokenizer" / "tokenizer.json").is_file()
