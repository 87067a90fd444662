"""Keep what nbval executed, so the site build can reuse it instead of running every notebook again.

With `MINIMIND_EXECUTED_DIR` set, each notebook whose cells all passed under
`pytest --nbval-lax` is written there with the outputs nbval collected;
`python -m book.build --executed DIR` then builds the site from those copies. A notebook
with a failing cell is not written (and an older copy of it is removed), so the site
never shows stale outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

_failed: set[str] = set()


def _executed_dir() -> Path | None:
    folder = os.environ.get("MINIMIND_EXECUTED_DIR")
    return Path(folder) if folder else None


def _notebook_items(session) -> dict:
    """nbval's notebook collector -> its cell items, for every notebook in this session."""
    by_notebook: dict = {}
    for item in session.items:
        if hasattr(item, "test_outputs") and hasattr(item.parent, "nb"):
            by_notebook.setdefault(item.parent, []).append(item)
    return by_notebook


@pytest.hookimpl
def pytest_runtest_logreport(report):
    if report.failed:
        _failed.add(report.nodeid.split("::")[0])


@pytest.hookimpl
def pytest_sessionfinish(session):
    folder = _executed_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for notebook, items in _notebook_items(session).items():
        dest = folder / Path(notebook.fspath).name
        complete = all(item.test_outputs is not None for item in items)
        if notebook.nodeid in _failed or not complete:
            dest.unlink(missing_ok=True)
            continue
        for item in items:  # item.cell is the cell object of notebook.nb
            item.cell.outputs = [nbformat.from_dict(dict(out)) for out in item.test_outputs]
            for out in item.cell.outputs:
                if out.output_type == "execute_result":
                    out.setdefault("metadata", {})
            item.cell.execution_count = None
        nbformat.validate(notebook.nb)
        nbformat.write(notebook.nb, dest)
