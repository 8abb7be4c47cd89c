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

# mypy reads source, not the install, so it gets the installed layout as a tree of links:
# gdbench/ with data/, implementations/ and benches/ inside it, as the wheel has them.
MYPY_TREE := build/mypy-tree
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/gdbench
	ln -s $(CURDIR)/gdbench/*.py $(MYPY_TREE)/gdbench/
	for d in data implementations benches; do ln -s $(CURDIR)/$$d $(MYPY_TREE)/gdbench/$$d; done
	cd $(MYPY_TREE) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p gdbench

clean:
	rm -rf $(VENV)
