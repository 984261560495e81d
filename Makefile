# envcheck's entry points. `make matrix` runs the default matrix; `make test` runs the test suite;
# `make test-fast` runs what needs no Docker, no browser and no slow fuzz (under a minute), for while you develop;
# `make gpu-check` records a GPU host's facts (no Docker needed).
PYTHON ?= python3
ENVCHECK ?= $(PYTHON) -m envcheck
# Behind a TLS-intercepting proxy pip needs its CA bundle inside builds: 'auto' hands pip's own bundle over.
ENVCHECK_CA_BUNDLE ?= auto
export ENVCHECK_CA_BUNDLE
BASE ?= debian:bookworm-slim

.PHONY: matrix base test test-fast lint table clean-build gpu-check

matrix: base
	$(ENVCHECK) matrix -m matrix.yaml

base:
	scripts/make-base.sh $(BASE)

test: base
	$(PYTHON) -m pytest -v

# One worker per CPU (pytest-xdist): the Docker tests stay in `make test`, one session with one fresh daemon.
test-fast:
	$(PYTHON) -m pytest -q -n auto -m "not docker and not browser and not slow and not slurm"

lint:
	$(PYTHON) -m ruff check envcheck tests benchmarks scripts
	$(PYTHON) -m ruff format --check envcheck tests benchmarks scripts

table:
	$(ENVCHECK) table -m matrix.yaml

# On a GPU host without Docker: doctor + the full benchmark for every framework installed, recorded in a folder.
GPU_CHECK_DIR ?= gpu-check
gpu-check:
	$(PYTHON) scripts/gpu_check.py --out $(GPU_CHECK_DIR)

clean-build:
	rm -rf build
