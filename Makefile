# The two commands of the README: `make run` and `make test`. Everything else they need is installed here.
SHELL := /bin/bash
VENV := .venv
# nimbus needs Python >= 3.11: take the newest one on PATH.
PY ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)

.PHONY: install system run test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -n "$(PY)" || { echo "nimbus needs Python >= 3.11 on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements.lock -e .
	touch $@

system:
	@bash scripts/install-system-deps.sh
	@bash scripts/install-node-ric.sh

install: $(VENV)/.installed system

run: install
	$(VENV)/bin/nimbus server $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python bench/invoke.py
	$(VENV)/bin/python bench/coldstart.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
