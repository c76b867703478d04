# tradebot - every set-up step lives here. Needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test bench lint clean help

help:
	@echo "make run    - install (first time) and start the console in paper mode on bundled candles"
	@echo "make test   - install (first time) and run the whole test suite"
	@echo "make bench  - run the benchmarks (prints ratios against peers measured in the same run)"
	@echo "make lint   - ruff, the import-linter contract and mypy --strict on engine/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Each extra set is installed from the pinned lock (used as constraints) and re-installed when
# pyproject.toml or the lock changes.
$(VENV)/.installed-%: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install -c $(LOCK) -e ".[$*]"
	@touch $@

$(VENV)/.installed-base: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install -c $(LOCK) -e .
	@touch $@

# numba compiles the decision core and the indicator kernels once per version of the modules holding kernels
# (engine/jit.py hashes engine/core and engine/analysis) and caches them; doing it here keeps the compile
# (~40 s) out of the first backtest and out of every test's timing.
$(VENV)/.core-compiled: $(VENV)/.installed-base engine/jit.py $(wildcard engine/core/*.py) $(wildcard engine/analysis/*.py)
	@echo "compiling the decision core and the indicator kernels once (numba, cached under engine/__pycache__) ..."
	@$(BIN)/python -m engine.backtest.compiled
	@$(BIN)/python -m engine.analysis.compile_kernels
	@touch $@

run: $(VENV)/.installed-base $(VENV)/.core-compiled
	$(BIN)/tradebot

# The suite runs on every core (pytest-xdist, one worker per CPU, a test file stays on one worker so its
# module fixtures are built once); the compiled core's own tests and the indicator kernels' then run again
# as plain Python (NUMBA_DISABLE_JIT=1), the same code numba compiles, so coverage and tracebacks reach into it.
KERNEL_TESTS := tests/engine/core tests/engine/test_indicators.py tests/engine/test_indicators_live.py \
	tests/engine/test_buckets.py
test: $(VENV)/.installed-test $(VENV)/.core-compiled
	$(BIN)/python -m pytest -q -n auto --dist loadfile
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -n auto $(KERNEL_TESTS)

bench: $(VENV)/.installed-bench $(VENV)/.installed-test
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(VENV)/.installed-lint $(VENV)/.installed-test
	$(BIN)/ruff check engine tradebot_tui tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy --strict engine

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
