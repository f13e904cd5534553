# Two commands a user needs: `make run` (the smoke pipeline on the embedded model) and `make test`.
# Both create .venv and install the project into it first, from requirements.lock (every package at the
# version the tests passed with); the stamp file re-installs only when pyproject.toml or the lock changes.
# Setup ends with `kit doctor`, which stops it when the embedded model computes the wrong numbers.
# `make lab` opens JupyterLab (OPEN=<folder> picks where it starts, e.g. a run's notebooks);
# `make notebooks` re-executes notebooks/ in place so committed outputs match the code;
# `make lock` refreshes requirements.lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.lab-installed
LOCK := requirements.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.7.0
OPEN ?= notebooks

# llama.cpp (inside llama-cpp-python) compiles on the machine that installs it. Portably: for any x86-64
# CPU with AVX2, not for the build machine's own CPU (llama.cpp's default GGML_NATIVE), because a native
# build on an AVX-512/AMX Xeon crashed (0.3.36) or computed wrong logits (0.3.16: 22% top-1 agreement
# with torch). The README's "The embedded model's build" has the measurements and how to build for a GPU
# or another CPU (LLAMA_CMAKE_ARGS=...); `kit doctor` checks whatever was built.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_PIN ?= $(shell grep -m1 '^llama-cpp-python==' $(LOCK))
# The wheel is kept outside the clone, one folder per version and flags: a new clone on this machine
# reuses it, and pip's own wheel cache (which may hold a native build of the same version) is never used.
WHEELS ?= $(HOME)/.cache/kit/wheels
LLAMA_WHEELS := $(WHEELS)/$(subst ==,-,$(LLAMA_PIN))-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)

.PHONY: setup run test bench lab notebooks lock doctor clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --quiet \
		--no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) "$(LLAMA_PIN)"
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m kit doctor
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m kit run --preset smoke

test: $(STAMP)
	$(PY) -m pytest

doctor: $(STAMP)
	$(PY) -m kit doctor

# Each benchmark in its own process: what one leaves behind (a 350 MiB heap after the dedup bench makes
# every fork slower) must not skew the next one's figures.
bench: $(STAMP)
	@status=0; for f in tests/bench/test_*.py; do $(PY) -m pytest $$f -s -q -p no:cacheprovider || status=1; done; exit $$status

notebooks: $(STAMP)
	$(PY) -m kit run --in-place

# Re-resolves pyproject.toml's ranges to the newest versions, keeping llama-cpp-python at the lock's
# (`make lock LLAMA_PIN=llama-cpp-python==X` moves it); pip-tools because it resolves with pip itself,
# so pip's configuration applies (here: the CPU build of torch, where uv would lock the CUDA one).
lock:
	test -x .venv-lock/bin/pip-compile || ($(PYTHON) -m venv .venv-lock && \
		.venv-lock/bin/pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION))
	.venv-lock/bin/pip-compile --quiet --upgrade --upgrade-package '$(LLAMA_PIN)' --strip-extras --extra dev \
		--no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml

# JupyterLab serves the project root (so runs/ is reachable too) and opens $(OPEN). The "kit" kernel
# lets a JupyterLab installed elsewhere run the notebooks with this venv. JupyterLab refuses to run as
# root (containers) unless told to.
lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/$(OPEN) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

$(LAB_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,lab]' -c $(LOCK)
	$(PY) -m ipykernel install --user --name kit --display-name "Python (kit)"
	touch $(LAB_STAMP)

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache
