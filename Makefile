# Two commands matter: `make demo` and `make test`. Both build .venv on first use.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: install browser lint format test test-chaos test-all demo dev bench subjects-doc asyncapi-doc screenshots clean

# Reinstalls only when the dependency list or the lock changes.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's headless Chromium and its driver, for the status page's browser test
# (tests/e2e/test_status_page.py); installed with apt where missing (needs root).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	else \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint browser
	$(BIN)/pytest

# Crash and outage suite (kills processes, restarts servers).
test-chaos: $(STAMP)
	$(BIN)/pytest -m chaos

test-all: test test-chaos

demo: $(STAMP)
	$(BIN)/python -m devstack.demo

dev: $(STAMP)
	$(BIN)/archiver dev

bench: $(STAMP)
	$(BIN)/python -m bench --write BENCHMARKS.md

# docs/status-page.png and docs/status-page-job.png, taken by the browser test.
screenshots: $(STAMP) browser
	UPDATE_SCREENSHOT=1 $(BIN)/pytest tests/e2e/test_status_page.py

subjects-doc: $(STAMP)
	$(BIN)/archiver subjects-doc --output docs/subjects.md

asyncapi-doc: $(STAMP)
	$(BIN)/archiver asyncapi-doc --output docs/asyncapi.yaml

clean:
	rm -rf var/demo var/bench
