# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test bench catalog clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import crossroads.app"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import openai, openrouter, pytest, mypy"
	touch $@

run: install
	$(BIN)/crossroads serve $(ARGS)

test: $(VENV)/.installed-test
	scripts/ensure-postgres
	scripts/ensure-redis
	scripts/ensure-chromium
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	CROSSROADS_TEST_POSTGRES_URL=$${CROSSROADS_TEST_POSTGRES_URL:-$(POSTGRES_URL)} $(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py $(ARGS)

catalog: install
	$(BIN)/python scripts/build_catalog.py

clean:
	rm -rf $(VENV) data .pytest_cache
