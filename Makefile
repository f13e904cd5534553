# Two commands a user needs: `make run` (the smoke pipeline on the embedded model) and `make test`.
# Both create .venv and install the project into it first; the stamp file re-installs only when
# pyproject.toml changes. `make lab` opens JupyterLab (OPEN=<folder> picks where it starts, e.g. a
# run's notebooks); `make notebooks` re-executes notebooks/ in place so committed outputs match the code.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.lab-installed
OPEN ?= notebooks

.PHONY: setup run test bench lab notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m kit run --preset smoke

test: $(STAMP)
	$(PY) -m pytest

# Each benchmark in its own process: what one leaves behind (a 350 MiB heap after the dedup bench makes
# every fork slower) must not skew the next one's figures.
bench: $(STAMP)
	@status=0; for f in tests/bench/test_*.py; do $(PY) -m pytest $$f -s -q -p no:cacheprovider || status=1; done; exit $$status

notebooks: $(STAMP)
	$(PY) -m kit run --in-place

# JupyterLab serves the project root (so runs/ is reachable too) and opens $(OPEN). The "kit" kernel
# lets a JupyterLab installed elsewhere run the notebooks with this venv. JupyterLab refuses to run as
# root (containers) unless told to.
lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/$(OPEN) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,lab]'
	$(PY) -m ipykernel install --user --name kit --display-name "Python (kit)"
	touch $(LAB_STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
