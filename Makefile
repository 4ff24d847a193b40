# Two commands do all set-up on a fresh machine:
#   make demo   - the example project on SQLite (real workers if Redis is up)
#   make test   - the test suite on PostgreSQL and on SQLite, with real Redis
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-postgres test-sqlite bench venv clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	cd example_project && ../$(BIN)/python manage.py migrate --verbosity 0 && ../$(BIN)/python manage.py cq_demo

test: venv
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings
	CQ_TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)
	CQ_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: venv
	CQ_TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

test-sqlite: venv
	CQ_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark on SQLite (docs/performance.md); BENCH_ARGS="--quick" for a smoke run.
bench: venv
	$(BIN)/python -m django migrate --settings=cq.bench.settings_sqlite --verbosity 0
	$(BIN)/python -m django cq_bench --settings=cq.bench.settings_sqlite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache example_project/db.sqlite3
