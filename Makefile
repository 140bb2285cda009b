# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap a fresh machine on first use (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap compile demo test test-fast bench lint fmt dashboards clean

bootstrap:
	@scripts/bootstrap.sh

# the compiled core alone (bootstrap runs it too); after editing streams/core the core
# runs interpreted until this is run again
compile:
	@$(PY) scripts/compile_core.py

demo: bootstrap
	@$(PY) -m streams.cli demo

test: bootstrap
	@scripts/run-tests.sh

test-fast: bootstrap
	@$(PY) -m pytest -q -m "not kafka and not slow"

# all benchmarks, or some: make bench BENCH="peers -- --events 50000"
bench: bootstrap
	@$(PY) -c "import quixstreams" 2>/dev/null || $(PY) -m pip install -q -e ".[dev,bench]"
	@$(PY) -m bench $(BENCH)

dashboards: bootstrap
	@$(PY) -m grafana.generate

lint: bootstrap
	@$(VENV)/bin/ruff check streams tests bench scripts
	@$(VENV)/bin/mypy streams/core

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .mypy_cache streams/core/_compiled
