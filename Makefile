PYTHON ?= python3

.PHONY: deps demo test test-fast lint

deps:
	bash scripts/deps.sh

# The main job on the embedded default: build the lab image, boot two VMs, pair, benchmark.
demo: deps
	$(PYTHON) -m tbctl lab demo

test:
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not vm and not kbuild"

lint:
	$(PYTHON) -m ruff check tbctl tests vm-tests
