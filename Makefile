# The course's two entry points on a fresh machine:
#   make course   run every notebook in order, write the report card, build the site
#   make test     lint, unit tests, every notebook under nbval, site build + browser test
# Each creates .venv and installs the pinned stack on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Quiet output for executed notebooks (the site, CI); interactive runs keep progress bars.
export TQDM_DISABLE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install course site test lint unit notebooks site-test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# setuptools reminds on every editable install that a folder named like the package shadows it.
	# llama-cpp-python compiles llama.cpp (a few minutes); its multimodal library is not needed.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" PYTHONWARNINGS="ignore:Editable installation" \
		$(PY) -m pip install -q -e ".[course,test]"
	touch $@

install: $(STAMP)

# Every notebook in order (01 -> 07), the report card, then the site.
course: $(STAMP)
	$(PY) -m book.build
	$(PY) -m minimind_lib.evals

site: $(STAMP)
	$(PY) -m book.build

lint: $(STAMP)
	$(VENV)/bin/ruff check minimind_lib tests bench book

unit: $(STAMP)
	$(VENV)/bin/pytest -m "not site" tests

# nbval keeps each notebook it executed (notebooks/conftest.py) for the site build to reuse.
EXECUTED := _build/executed

notebooks: $(STAMP)
	rm -rf $(EXECUTED)
	MINIMIND_EXECUTED_DIR=$(EXECUTED) $(VENV)/bin/pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

site-test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m book.build --executed $(EXECUTED)
	$(VENV)/bin/pytest -m site tests/test_site.py

test: lint unit notebooks site-test

clean:
	rm -rf _build book/_generated test-artifacts
