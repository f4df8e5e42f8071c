# The two commands of the README: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint unit bench clean

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

lint: $(VENV)/.installed-test
	$(BIN)/ruff check daemon tests bench
	# The addon's Odoo conventions (OCA's pylint-odoo). Off: the OCA-only author check, and the
	# advice to merge inherits (the daemon API is split by concern on purpose). The addon's
	# README.rst is generated from readme/*.md by OCA's oca-gen-addon-readme (maintainer-tools).
	cd addon && ../$(BIN)/pylint --load-plugins=pylint_odoo --disable=all --enable=odoolint \
		--valid-odoo-versions=18.0 \
		--disable=manifest-required-author,consider-merging-classes-inherited \
		--score=n crm_microsoft365

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-run
	$(BIN)/python bench/mail_sync.py
	$(BIN)/python bench/push_latency.py

clean:
	rm -rf $(VENV) .demo .emulator .pytest_cache .ruff_cache
