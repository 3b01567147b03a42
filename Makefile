# Two commands do all the set-up on a fresh machine (Python 3.11+ is all it needs):
#   make demo   -- the main job
#   make test   -- the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint fuzz bench bench-quick profile clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/skaala-auth demo

# coverage starts before pytest, so it also sees what pytest imports first (the skaala_auth
# pytest plugin imports the package before pytest-cov could start).
test: $(BIN)/.installed
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report --fail-under=95

# Coverage-guided fuzzing of key parsing, credential extraction and rules (docs/security.md).
FUZZ_SECONDS ?= 60
fuzz: $(BIN)/.installed
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS) --keep-corpus

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict skaala_auth

# Every row of docs/performance.md's table in one run (about 6 minutes; it rewrites that table
# and benchmarks/results.md). The HTTP rows need wrk (Debian: apt-get install -y wrk); without
# it they are reported as not measured. Not part of CI.
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run_all.py --docs

bench-quick: $(BIN)/.installed
	$(BIN)/python benchmarks/run_all.py --quick

# py-spy flame graphs of uvicorn serving each app under wrk (benchmarks/profiles/); needs wrk and
# py-spy (pip install py-spy: a profiling tool, not a project dependency).
profile: $(BIN)/.installed
	$(BIN)/python benchmarks/profile_http.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
