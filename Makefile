# The two README commands: `make demo` and `make test`.
# Each creates (or refreshes) the virtual environment in $(VENV) first; when nothing
# changed since the last install, that step is a no-op.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint clean-demo

venv: $(STAMP)

# An older .venv holds tensorflow-cpu: it shares the tensorflow/ folder with tensorflow, so
# both go before tensorflow is installed again (never the two side by side).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip show -q tensorflow-cpu >/dev/null 2>&1; then \
		$(PY) -m pip uninstall -y -q tensorflow-cpu tensorflow; fi
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
