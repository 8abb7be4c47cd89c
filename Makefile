# The quick start: `make bench` (install, benchmark every available backend, print the
# table) and `make test` (install, run the tests and every benchmark once as a test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

.PHONY: bench quick test lint mutate clean

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

# The browser test of `gdbench history` (tests/test_history.py) loads the page in a
# headless Chromium. When none is on PATH, install Debian's (as root, as CI is); when that
# cannot be done, say so and carry on: the test then skips and names the reason.
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable chromium-headless-shell
.PHONY: browser
browser:
	@for b in $(BROWSERS); do \
		if command -v $$b >/dev/null 2>&1; then echo "browser: $$(command -v $$b)"; exit 0; fi; \
	done; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "browser: no Chromium, and no root apt-get to install one; the browser test will skip"; \
		exit 0; \
	fi; \
	echo "browser: installing Debian's chromium (apt-get)"; \
	if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null; then echo "browser: $$(command -v chromium)"; \
	else echo "browser: apt-get could not install chromium; the browser test will skip"; fi

# mypy and import-linter read source, not the install, so they get the installed layout as
# a tree of links: gdbench/ with data/, implementations/ and benches/ inside it, as the wheel
# has them. import-linter checks the layer contract in pyproject.toml.
LINT_TREE := build/lint-tree
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)/gdbench
	ln -s $(CURDIR)/gdbench/* $(LINT_TREE)/gdbench/
	for d in data implementations benches; do ln -s $(CURDIR)/$$d $(LINT_TREE)/gdbench/$$d; done
	cd $(LINT_TREE) && $(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p gdbench
	cd $(LINT_TREE) && PYTHONPATH=. $(BIN)/lint-imports --no-cache \
		--config $(CURDIR)/pyproject.toml

# Mutation testing (scripts/mutate.py): each mutant mutmut makes of a file, applied in a
# throwaway copy of the working tree (tracked and untracked files, laid out as installed:
# gdbench/data -> data, ...), so an interrupted run never leaves a mutant in your files.
# The tests that reach the mutated function run first, then every test where they pass;
# one mutant per CPU at a time. Slow (minutes a file), so not part of .ci/run.
# MUTATE: one entry per file, SOURCE:TESTS, TESTS being the comma-separated test files
# that cover SOURCE (fast ones only: no benches, no wheel build; the tests marked e2e, which
# take seconds each, are left out, so a score is what the fast tests alone kill). Add a
# file by adding an entry. `make mutate ONLY=gdbench/judge/stats.py` runs the entries whose
# source is named there. Each file's score and survivors, as diffs, go to
# build/mutate/<source>.txt (written at the end), each mutant's verdict as it comes to
# build/mutate/<source>.txt.log.
MUTATE := \
	data/loader.py:tests/test_loader.py,tests/test_gradients.py,tests/test_cli.py \
	implementations/reference.py:tests/test_gradients.py,tests/test_cli.py \
	implementations/base.py:tests/test_cli.py,tests/test_gradients.py,tests/test_registry.py \
	gdbench/judge/stats.py:tests/test_docs_constants.py,tests/test_stats.py,tests/test_regress.py \
	gdbench/judge/regress.py:tests/test_regress.py \
	gdbench/records/results.py:tests/test_results.py,tests/test_regress.py,tests/test_tables.py \
	gdbench/harness/timing.py:tests/test_docs_constants.py,tests/test_timing.py,tests/test_collective_cost.py,tests/test_neighbours.py,tests/test_audit.py,tests/test_standalone.py \
	gdbench/commands/audit.py:tests/test_cli_reference.py,tests/test_audit.py,tests/test_audit_retime.py \
	gdbench/judge/audit.py:tests/test_docs_constants.py,tests/test_audit.py,tests/test_audit_retime.py,tests/test_standalone.py \
	gdbench/harness/standalone.py:tests/test_docs_constants.py,tests/test_cli_reference.py,tests/test_audit_retime.py,tests/test_audit.py,tests/test_own_workloads.py,tests/test_standalone.py \
	gdbench/records/run.py:tests/test_records.py,tests/test_ab.py,tests/test_own_workloads.py \
	gdbench/judge/limits.py:tests/test_limits.py \
	gdbench/judge/target.py:tests/test_target.py \
	benches/conftest.py:tests/test_suite.py,tests/test_timing.py \
	gdbench/harness/memory.py:tests/test_memory.py,tests/test_memory_bounds.py \
	gdbench/harness/launcher.py:tests/test_run.py,tests/test_jobs.py,tests/test_audit_retime.py \
	gdbench/judge/retime.py:tests/test_retime.py,tests/test_docs_constants.py,tests/test_audit_retime.py,tests/test_neighbours.py,tests/test_ab.py,tests/test_run.py \
	gdbench/commands/run.py:tests/test_cli_reference.py,tests/test_driver.py,tests/test_jobs.py,tests/test_own_workloads.py,tests/test_exit_codes.py,tests/test_run.py \
	gdbench/commands/cli.py:tests/test_cli_reference.py,tests/test_cli.py,tests/test_exit_codes.py \
	gdbench/commands/check.py:tests/test_cli_reference.py,tests/test_regress.py,tests/test_exit_codes.py \
	gdbench/commands/ab.py:tests/test_cli_reference.py,tests/test_ab.py,tests/test_exit_codes.py \
	gdbench/judge/trust.py:tests/test_trust.py,tests/test_neighbours.py,tests/test_tables.py \
	gdbench/commands/options.py:tests/test_options.py,tests/test_cli_reference.py,tests/test_own_workloads.py,tests/test_exit_codes.py,tests/test_cli.py \
	gdbench/commands/compare.py:tests/test_cli_reference.py,tests/test_exit_codes.py,tests/test_tables.py \
	gdbench/commands/plot.py:tests/test_cli_reference.py,tests/test_exit_codes.py,tests/test_plots.py \
	gdbench/commands/history.py:tests/test_cli_reference.py,tests/test_exit_codes.py,tests/test_history.py \
	gdbench/commands/executors.py:tests/test_executors.py,tests/test_cli_reference.py,tests/test_exit_codes.py,tests/test_slurm.py,tests/test_cluster.py \
	gdbench/records/formats.py:tests/test_formats.py,tests/test_cli_reference.py,tests/test_tables.py \
	gdbench/report/tables.py:tests/test_neighbours.py,tests/test_parallel_tables.py,tests/test_tables.py \
	gdbench/report/history.py:tests/test_history.py \
	gdbench/report/plots.py:tests/test_plots.py \
	gdbench/harness/machine.py:tests/test_machine.py,tests/test_timing.py \
	gdbench/harness/gpu.py:tests/test_gpu.py,tests/test_machine.py \
	gdbench/harness/cluster.py:tests/test_driver.py,tests/test_slurm.py,tests/test_cluster.py \
	gdbench/harness/dask_executor.py:tests/test_cluster.py \
	gdbench/harness/slurm_executor.py:tests/test_slurm.py
ONLY ?=
MUTATE_OUT := build/mutate
mutate: $(STAMP)
	@set -u; mkdir -p $(MUTATE_OUT); for entry in $(MUTATE); do \
		src=$${entry%%:*}; tests=$$(echo "$${entry#*:}" | tr , ' '); \
		case " $(ONLY) " in "  ") ;; *" $$src "*) ;; *) continue ;; esac; \
		out=$(MUTATE_OUT)/$$(echo "$$src" | tr / _).txt; \
		echo "mutate $$src (tests: $$tests)"; \
		$(BIN)/python scripts/mutate.py "$$src" $$tests --out "$$out" > "$$out.log" \
			|| { tail -n 20 "$$out.log"; exit 1; }; \
		tail -n 1 "$$out.log"; echo "  survivors: $$out"; \
	done

# After tests aimed at a module's survivors: re-run only its survivors (the last
# `make mutate` of it, build/mutate/<source>.txt) against its tests as they are now. Its score
# is then the full run's caught plus the survivors caught here.
.PHONY: mutate-recheck
mutate-recheck: $(STAMP)
	@set -u; for entry in $(MUTATE); do \
		src=$${entry%%:*}; tests=$$(echo "$${entry#*:}" | tr , ' '); \
		case " $(ONLY) " in "  ") ;; *" $$src "*) ;; *) continue ;; esac; \
		out=$(MUTATE_OUT)/$$(echo "$$src" | tr / _).txt; \
		[ -f "$$out" ] || { echo "$$src: no $$out: run make mutate ONLY=$$src first"; continue; }; \
		echo "recheck $$src (tests: $$tests)"; \
		$(BIN)/python scripts/mutate.py "$$out" $$tests || exit 1; \
	done

# Everything a GPU machine has to prove, in under 8 minutes (scripts/gpu-check.sh): no
# install step, as a GPU box may have no network; logs and runs go to results/gpu-check-<date>.
# Exit 3 when no GPU is here (see the script's header for every exit status).
.PHONY: gpu-check
gpu-check:
	scripts/gpu-check.sh results/gpu-check-$$(date +%Y%m%d-%H%M%S)

clean:
	rm -rf $(VENV)
