# The two commands of the README: `make demo` and `make test`. Both build .venv themselves.
# With ODOO_SRC (an Odoo 18 tree), `make test` also runs the addon in a private Odoo and the
# live suites against it; `make odoo` serves that Odoo for a person to click through.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint odoo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/m365sync demo

# ruff and pylint-odoo are tests too (tests/lint): `make test` is one pytest session.
lint: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests/lint

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

odoo: $(VENV)/.installed-run
	PYTHONPATH=tools $(BIN)/python -m odoo_harness

# BENCH_SIZES: mailbox sizes of the first-sync comparison (BENCH_SIZES=10000 for a quick
# run). PEER_BUDGET bounds the peer's run in seconds (100,000 messages under the latency model
# would take it about half an hour): past it the peer's row is extrapolated and says so.
# With ODOO_SRC, a first sync into a private Odoo too (bench/odoo_sync.py).
BENCH_SIZES ?= 10000,100000
PEER_BUDGET ?= 600
bench: $(VENV)/.installed-run
	$(BIN)/python bench/first_sync.py --sizes $(BENCH_SIZES) --latency 300:2 --latency 0:0 \
		--peer-budget $(PEER_BUDGET)
	$(BIN)/python bench/mail_sync.py
	$(if $(ODOO_SRC),$(BIN)/python bench/odoo_sync.py --odoo-src $(ODOO_SRC),\
		@echo "ODOO_SRC is not set: no figures into a real Odoo")
	$(BIN)/python bench/push_latency.py

clean:
	rm -rf $(VENV) .venv-odoo .demo .emulator .pytest_cache .ruff_cache
