# sessia: `make run` starts a development server, `make test` runs the tests.
# Both create the virtualenv in .venv and install the project on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

HOST ?= 127.0.0.1
PORT ?= 7788
DATA ?= var
FUZZ_EXAMPLES ?= 100000

.PHONY: run test lint fuzz bench clean help

help:
	@echo "make run    start the server on $(HOST):$(PORT) with an embedded PostgreSQL in ./$(DATA)"
	@echo "make test   run the test suite"
	@echo "make lint   ruff and mypy"
	@echo "make bench  microbenchmarks"
	@echo "make load   end-to-end load test: SCENARIO=send|history|search|login|fanout|idle LOAD_ARGS=..."
	@echo "make fuzz   FUZZ_EXAMPLES (default $(FUZZ_EXAMPLES)) hostile bodies against a real server; prints how many ran"
	@echo "make chaos  kills, PostgreSQL crashes and broker restarts under load, then an audit: CHAOS_ARGS=..."

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	@echo "WARNING: no TLS: passwords and tokens cross the network in clear. Use only on loopback or a trusted network (see docs/security.md for --tls-cert/--tls-key)."
	$(PY) -m server --host $(HOST) --port $(PORT) --data-dir $(DATA) --allow-any-client

test: $(STAMP)
	$(PY) -m ruff check protocol server storage client_sdk bench tests examples
	$(PY) -m mypy protocol server storage client_sdk
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check protocol server storage client_sdk bench tests examples
	$(PY) -m mypy protocol server storage client_sdk

fuzz: $(STAMP)
	SESSIA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py

bench: $(STAMP)
	$(PY) -m bench.micro

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

# `make load SCENARIO=send LOAD_ARGS="--users 1000 --connections 1000"`: end-to-end
# load test against a server of its own (docs/performance.md).
SCENARIO ?= send
.PHONY: load
load: $(STAMP)
	$(PY) -m bench.load $(SCENARIO) $(LOAD_ARGS)

# `make chaos CHAOS_ARGS="--broker nats --kills 10 --duration 60"`: node kills, PostgreSQL crashes and
# broker restarts under senders and receivers, then an audit of what survived
# (docs/operations.md, "Chaos runs"). Exits non-zero on any loss.
CHAOS_ARGS ?= --nodes 2 --kills 50 --pg-crashes 3 --broker-restarts 3 --duration 150
.PHONY: chaos
chaos: $(STAMP)
	$(PY) -m bench.chaos $(CHAOS_ARGS)
