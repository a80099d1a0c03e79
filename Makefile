# reidlab — set-up, tests and reports. Every target creates the virtual environment first if needed.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.reidlab-installed
JOBS    ?= 2

# make report [PROFILE=paper DATASET=msvr310 DATA_ROOT=/data/reid] [NOTEBOOKS="notebooks/01_coen.ipynb"]
#             [SCOPE=lecture] [ARGS='-p device=cuda -p "seeds=[0, 1, 2]"']
# SCOPE: full (default: each paper notebook's whole study, what reports/ holds) or lecture (the notebooks' own
# default, their short walk-through: what `make test` executes with nbval).
PROFILE   ?= tutorial
DATASET   ?=
DATA_ROOT ?=
NOTEBOOKS ?=
SCOPE     ?= full
ARGS      ?=

# nbval runs the notebooks one at a time: each one already trains its runs on every core
# (reidlab.engine.parallel); two at once oversubscribe 2 cores (OpenMP threads of one kernel spinning
# against the other's workers: a fresh-clone nbval of notebooks 00, 01, 05 passed 35 min without finishing).
NB_FILES := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: setup test report lint lock clean

setup: $(STAMP)

# (Re)install when the lock file or the package metadata changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# --dist loadgroup keeps a module marked xdist_group (an expensive module fixture) on one worker.
test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup tests
ifneq ($(NB_FILES),)
	$(PY) -m pytest --nbval-lax --nbval-current-env $(NB_FILES)
else
	@echo "no notebooks/*.ipynb to test with nbval"
endif

report: $(STAMP)
	$(VENV)/bin/reidlab report --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) \
		$(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --scope $(SCOPE) $(ARGS) $(NOTEBOOKS)

lint: $(STAMP)
	$(VENV)/bin/ruff check reidlab tests notebooks

lock: $(STAMP)
	@{ echo "# Pinned, tested set of every dependency (Linux x86_64, CPython 3.11), installed by 'make setup'."; \
	   echo "# Regenerate with 'make lock' after changing pyproject.toml."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^reidlab'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
