# trackstudy: two commands on a fresh machine with Python 3.11.
#   make study   set up .venv, simulate the default data, run every notebook into reports/
#   make test    set up .venv, run the whole test suite (notebooks through nbval at smoke size)
#   make test-fast  unit tests without the slow ones and without the notebooks (the developer's loop)
#   make lab     JupyterLab on the notebooks, with this environment as the kernel
#
# Overridable: PYTHON (interpreter that creates the venv), PARAMS (parameter set for study),
# TORCH (the torch requirement pip installs first). By default a machine with an NVIDIA GPU
# (nvidia-smi present) gets PyPI's CUDA build of torch>=2.5 and one without gets the CPU build
# torch==2.13.0; e.g. `make study TORCH="torch==2.5.1"`, or extra pip options through
# TORCH_PIP_ARGS (e.g. an --index-url of CPU wheels).

PYTHON ?= python3
VENV ?= .venv
PARAMS ?= params/full.yaml
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH ?= torch>=2.5
else
TORCH ?= torch==2.13.0
endif
TORCH_PIP_ARGS ?=
# Optional extras installed into .venv: the tests, and the ONNX export (so that its tests run, not skip)
EXTRAS ?= test,export
PYTEST_ARGS ?=

.PHONY: study test test-fast lab setup clean-reports help

help:
	@sed -n '2,6p' Makefile

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, so that the package's range (torch>=2.5) is already satisfied and pip never
# pulls a multi-GB CUDA build onto a machine without a GPU.
$(VENV)/.stamp-torch: | $(PY)
	@$(PY) -c "import torch, sys; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 5))" 2>/dev/null \
		|| $(PIP) install --quiet "$(TORCH)" $(TORCH_PIP_ARGS)
	@touch $@

$(VENV)/.stamp-install: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (trackstudy)" >/dev/null
	@touch $@

setup: $(VENV)/.stamp-install

study: setup
	$(PY) -m trackstudy.study.reports --params $(PARAMS)

# Unit tests on both cores, then the notebooks in order (03 trains what 04-06 read) through nbval
# with their smoke-size defaults.
test: setup
	$(PY) -m pytest -n 2 tests $(PYTEST_ARGS)
	$(PY) -m pytest --nbval-lax notebooks $(PYTEST_ARGS)

# The developer's loop: unit tests without the slow ones (marker `slow`) and without the
# notebooks, on both cores (about a minute on 2 cores). `make test` remains what CI runs.
test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow" tests $(PYTEST_ARGS)

lab: setup
	$(PIP) install --quiet "jupyterlab>=4.0"
	$(VENV)/bin/jupyter lab notebooks/

clean-reports:
	rm -rf reports/*.html reports/*.ipynb reports/summary.json

# The notebooks in notebooks/ are the source (edit them in JupyterLab); before committing one,
# clear its outputs, execution counts and editor metadata (tests/test_notebook_sources.py checks).
.PHONY: strip-notebooks
strip-notebooks: setup
	$(PY) -c "import glob, nbformat; \
	nbs = {p: nbformat.read(p, as_version=4) for p in sorted(glob.glob('notebooks/*.ipynb'))}; \
	cells = [c for nb in nbs.values() for c in nb.cells]; \
	[c.update(outputs=[], execution_count=None) for c in cells if c.cell_type == 'code']; \
	[c.update(metadata=nbformat.from_dict({k: v for k, v in c.metadata.items() if k == 'tags'})) for c in cells]; \
	[nb.update(metadata=nbformat.from_dict({'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}, 'language_info': {'name': 'python'}})) for nb in nbs.values()]; \
	[nbformat.write(nb, p) for p, nb in nbs.items()]; \
	print('stripped', len(nbs), 'notebooks')"
