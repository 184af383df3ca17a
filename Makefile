# The two README commands: `make demo` and `make test`.
# Each creates (or refreshes) the virtual environment in $(VENV) first; when nothing
# changed since the last install, that step is a no-op.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

demo: venv
	@$(PY) scripts/demo.py

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check pipeline tracker scripts tests

clean-demo:
	-$(VENV)/bin/tracker db stop
	rm -rf .tracker demo_data
