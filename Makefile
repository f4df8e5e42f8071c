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

# BENCH_SIZES: mailbox sizes of the first-sync comparison (add 100000 for the large one: the
# peer's strategy alone then takes over half an hour under the latency model).
BENCH_SIZES ?= 10000
bench: $(VENV)/.installed-run
	$(BIN)/python bench/first_sync.py --sizes $(BENCH_SIZES) --latency 300:2 --latency 0:0
	$(BIN)/python bench/mail_sync.py
	$(BIN)/python bench/push_latency.py

clean:
	rm -rf $(VENV) .venv-odoo .demo .emulator .pytest_cache .ruff_cache
