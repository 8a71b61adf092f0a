# Set-up and the two jobs a fresh machine needs. torch is pinned to the CPU build first (through
# constraints.txt) so that no CUDA wheels are pulled on a CPU machine.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"

demo: install
	diffscope demo

test: install
	$(PYTHON) -m pytest -q

lint:
	ruff check .
	ruff format --check .
