# FKB's front doors. `make test` and `make demo` work on a fresh Debian machine (as root):
# they install the system packages (gfortran, OpenBLAS) and a virtualenv with the Python ones.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build/cmake
PREFIX := build/prefix
CMAKE := $(VENV)/bin/cmake
CTEST := $(VENV)/bin/ctest
export TF_CPP_MIN_LOG_LEVEL := 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: test demo bench deps venv build install python clean

test: build python
	$(CTEST) --test-dir $(BUILD) --output-on-failure
	$(PY) -m pytest -q tests/python

demo: install python
	$(PY) examples/demo/run_demo.py --prefix $(PREFIX) --work build/demo
	$(PY) examples/l96/run_case_study.py --prefix $(PREFIX) --work build/l96 $(L96_ARGS)

bench: install python
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benchmarks/run_all.py --prefix $(PREFIX) --work build/bench $(BENCH_ARGS)

# System packages: a Fortran compiler, BLAS, pkg-config (only what is missing).
deps:
	@missing=""; \
	command -v gfortran >/dev/null || missing="$$missing gfortran"; \
	dpkg -s libopenblas-dev >/dev/null 2>&1 || missing="$$missing libopenblas-dev"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

build: deps venv
	$(CMAKE) -S . -B $(BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja \
	  -DFKB_BUILD_TESTS=ON -DFKB_PYTHON=$(abspath $(PY)) -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX))
	$(CMAKE) --build $(BUILD)

install: build
	$(CMAKE) --install $(BUILD)

# The Python package, built by scikit-build-core from the same CMake project.
python: deps venv
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pip install -q --no-build-isolation .

clean:
	rm -rf build
