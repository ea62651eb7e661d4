# The two commands README.md starts with. Each creates the virtual environment and fetches the
# broker jars as needed, so both work on a fresh machine with Python 3.11, a JDK 17+ and Maven.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PROFILE ?= quick

.PHONY: run test setup fetch browser tools lint nightly clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

fetch: setup
	$(BIN)/bench infra fetch

# Main job: brokers up, the quick profile of every scenario on both brokers, the HTML report.
# The report is written even when some steps were not clean (the exit status still says so).
run: fetch
	@status=0; $(BIN)/bench run scenarios/*.yaml --profile $(PROFILE) --out reports/runs || status=$$?; \
	run_dir=$$(ls -td reports/runs/*/ 2>/dev/null | head -1); \
	if [ -n "$$run_dir" ]; then $(BIN)/bench report "$$run_dir" -o reports/report.html && \
	  echo "report: reports/report.html (run $$run_dir)"; fi; exit $$status

# The nightly CI benchmark: quick profiles, history, report, regression check.
nightly: fetch
	$(BIN)/bench nightly

lint: setup
	$(BIN)/ruff check bench tests
	$(BIN)/ruff format --check bench tests
	$(BIN)/mypy

# Debian's chromium for the report's headless-browser test (root: apt-get; else it is skipped).
browser:
	bash infra/setup-browser.sh

# Tools the tests use beyond Python's: actionlint (the workflow lint test), from the Go module
# proxy into the venv. Without Go it says so; the test then skips (fails with CI=true).
ACTIONLINT_VERSION := v1.7.7
tools: setup
	@if [ -x $(BIN)/actionlint ]; then :; \
	elif command -v go >/dev/null 2>&1; then \
	  GOBIN=$(abspath $(BIN)) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION); \
	else echo "tools: no Go toolchain; the actionlint test will skip" >&2; fi

# Every test, the integration tests against the real brokers included.
test: fetch browser tools lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
