# The quick start: `make bench` (install, benchmark every available backend, print the
# table) and `make test` (install, run the tests and every benchmark once as a test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench quick test lint clean

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]' -c .ci/constraints.txt
	touch $@

bench: $(STAMP)
	$(BIN)/gdbench run

quick: $(STAMP)
	$(BIN)/gdbench run --quick

test: $(STAMP)
	$(BIN)/python -m pytest --benchmark-disable

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV)
