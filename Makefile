# The two set-up commands of README.md: `make demo` and `make test`.
# Both create .venv and install the package into it when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
JOBS   ?= auto

.PHONY: demo test lint format bench bench-accelerator docs clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

# On a lent GPU machine (its python3 has jax with CUDA; nothing installed):
# conformance, overhead and full-step benchmarks in 5 minutes, into OUT.
OUT ?= benchmarks/results/accelerator
bench-accelerator:
	PYTHONPATH=. python3 benchmarks/accelerator.py --out $(OUT)

# Offline, warnings as errors, from the pinned `docs` extra (part of `dev`);
# `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going docs docs/_build/html

clean:
	rm -rf $(VENV) build dist *.egg-info
