# Two commands do all set-up on a fresh machine:
#   make demo   - the example project on SQLite (real workers if Redis is up)
#   make test   - lint, the type check, the docs site built strictly, the
#                 migrations check, then the lanes side by side (tests/lanes.py):
#                 the suite on PostgreSQL and SQLite (Python 3.11, Django 5.2),
#                 on Django 6 with PostgreSQL (3.12) and SQLite (3.13), the unit
#                 tests with Redis unreachable, the channels-redis contract
# tox.ini runs the same matrix. One lane: make test-unit / test-integration /
# test-e2e (CQ_TEST_DB=sqlite for SQLite; PostgreSQL by default).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12))
VENV6 ?= .venv-django6
BIN6 := $(VENV6)/bin
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13))
VENV313 ?= .venv-py313
BIN313 := $(VENV313)/bin

# What ruff checks and formats.
FORMATTED ?= cq tests bench example_project
LINTED ?= cq tests bench example_project
CQ_TEST_DB ?= postgres
# The unit lane must not need Redis: it runs with Redis unreachable.
NO_REDIS ?= redis://127.0.0.1:1

# The channels-redis versions pyproject.toml allows ("channels-redis>=4.3,<5"): cq
# reads its internals, so both ends run tests/integration/test_channels_redis_contract.py.
CHANNELS_REDIS_OLDEST ?= channels-redis==4.3.0
CHANNELS_REDIS_NEWEST ?= channels-redis>=4.3,<5
CONTRACT_VENVS := .venv-contract-oldest .venv-contract-newest

.PHONY: demo lint typecheck docs test test-postgres test-sqlite test-unit test-integration test-e2e \
	test-django6 test-py313 test-contract bench bench-scale venv clean

$(BIN)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	cd example_project && ../$(BIN)/python manage.py migrate --verbosity 0 && ../$(BIN)/python manage.py cq_demo $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(FORMATTED)

# The public API as a user's type checker sees it: tests/typecheck/public_api.py
# (settings in pyproject.toml, [tool.mypy]).
typecheck: venv
	$(BIN)/mypy

# The docs site (mkdocs.yml), warnings as errors: a broken link or a page left
# out of the nav fails. Built into site/, which is not committed.
docs: venv
	$(BIN)/mkdocs build --strict --quiet --site-dir site

# The lanes run side by side (tests/lanes.py; README.md, "Tests", says why these).
# A lane whose interpreter is missing is reported as skipped.
LANE_VENVS := $(BIN)/.installed $(if $(PYTHON312),$(BIN6)/.installed) \
	$(if $(PYTHON313),$(BIN313)/.installed) $(addsuffix /.installed,$(CONTRACT_VENVS))
LANES = $(BIN)/python -m tests.lanes --python py311=$(BIN)/python \
	--python py312=$(if $(PYTHON312),$(BIN6)/python) --python py313=$(if $(PYTHON313),$(BIN313)/python) \
	--python contract-oldest=.venv-contract-oldest/bin/python \
	--python contract-newest=.venv-contract-newest/bin/python

test: lint typecheck docs $(LANE_VENVS)
	CQ_TEST_DB=sqlite $(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings
	$(LANES) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

$(BIN6)/.installed: setup.py pyproject.toml
	$(PYTHON312) -m venv $(VENV6)
	$(BIN6)/pip install --quiet --upgrade pip
	$(BIN6)/pip install --quiet "Django>=6.0,<7" -e ".[test]"
	touch $@

test-django6: $(if $(PYTHON312),$(BIN6)/.installed)
	$(LANES) --only py3.12-django6-postgres $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# Python 3.13 and Django 6: the newest pair (README.md, "Running the tests", says
# why `make test` runs these lanes and where the rest of the matrix runs).
$(BIN313)/.installed: setup.py pyproject.toml
	$(PYTHON313) -m venv $(VENV313)
	$(BIN313)/pip install --quiet --upgrade pip
	$(BIN313)/pip install --quiet "Django>=6.0,<7" -e ".[test]"
	touch $@

test-py313: $(if $(PYTHON313),$(BIN313)/.installed)
	$(LANES) --only py3.13-django6-sqlite $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

.venv-contract-oldest/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv .venv-contract-oldest
	.venv-contract-oldest/bin/pip install --quiet -e ".[test]" "$(CHANNELS_REDIS_OLDEST)"
	touch $@

.venv-contract-newest/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv .venv-contract-newest
	.venv-contract-newest/bin/pip install --quiet --upgrade -e ".[test]" "$(CHANNELS_REDIS_NEWEST)"
	touch $@

# Fast: one file, on SQLite, per channels-redis version.
test-contract: $(addsuffix /.installed,$(CONTRACT_VENVS))
	$(LANES) --only channels-redis-oldest,channels-redis-newest

test-postgres: venv
	CQ_TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

test-sqlite: venv
	CQ_TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	CQ_TEST_DB=$(CQ_TEST_DB) CQ_TEST_REDIS=$(NO_REDIS) $(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv
	CQ_TEST_DB=$(CQ_TEST_DB) $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: venv
	CQ_TEST_DB=$(CQ_TEST_DB) $(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

# The benchmark on SQLite (docs/performance.md); BENCH_ARGS="--quick" for a smoke run.
bench: venv
	$(BIN)/python -m django migrate --settings=bench.settings_sqlite --verbosity 0
	$(BIN)/python -m django cq_bench --settings=bench.settings_sqlite $(BENCH_ARGS)

# The scaling curve (docs/performance.md): 1 to 16 worker processes against one
# PostgreSQL, database cq_bench (bench/settings_pg.py; `createdb cq_bench` once).
bench-scale: venv
	$(BIN)/python -m django migrate --settings=bench.settings_pg --verbosity 0
	$(BIN)/python -m django cq_bench --settings=bench.settings_pg --only calibrate,scale \
		--workers 1,2,4,8,16 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV6) $(VENV313) $(CONTRACT_VENVS) .pytest_cache .mypy_cache site example_project/db.sqlite3
