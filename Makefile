# mwl-broker: `make run` serves on SQLite under ./data, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-deps lint typecheck conformance screenshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

## install: create .venv, install the broker, migrate the database
install: $(STAMP)
	$(BIN)/mwl-broker db upgrade

## run: set up, migrate and serve every listener with the default settings
run: install
	$(BIN)/mwl-broker serve

## test-deps: system packages the tests need (DCMTK, Docker Compose, Chromium)
test-deps:
	bash .ci/install-test-deps

## test: set up, then the whole test suite (unit, service, adapter, interop)
test: $(STAMP) test-deps
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app dicom_scp hl7_ingest web tests bench
	$(BIN)/mypy

## screenshots: docs/screenshots/*.png of the staff page at 1366x768 (needs Debian's chromium)
screenshots: $(STAMP) test-deps
	$(BIN)/python docs/screenshots/make.py

## bench: the broker beside DCMTK wlmscpfs at 1k/10k/100k steps (table + chart in bench/results)
bench: $(STAMP) test-deps
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

conformance: $(STAMP)
	$(BIN)/mwl-broker conformance --output docs/conformance.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
