# reidlab — set-up, tests and reports. Every target creates the virtual environment first if needed.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.reidlab-installed
JOBS    ?= 2

.PHONY: setup test lint lock clean

setup: $(STAMP)

# (Re)install when the lock file or the package metadata changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) tests

lint: $(STAMP)
	$(VENV)/bin/ruff check reidlab tests

lock: $(STAMP)
	@{ echo "# Pinned, tested set of every dependency (Linux x86_64, CPython 3.11), installed by 'make setup'."; \
	   echo "# Regenerate with 'make lock' after changing pyproject.toml."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^reidlab'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
