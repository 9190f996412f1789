# Dossier: `make run` starts the app on the demo corpus, `make test` runs every test, `make fuzz` fuzzes the API.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install run test fuzz lint bench browser clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## The chat on the demo corpus at http://127.0.0.1:7860 (ingests examples/articles into an empty store).
run: install
	$(BIN)/python app.py

## Debian's chromium for the browser tests (never `playwright install`: it downloads a browser).
browser:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

test: install browser
	$(BIN)/python -m pytest -q

## schemathesis (--checks all) against a real `dossier serve` on the demo corpus, bounded to a few minutes
## (tests/fuzz_api.py; FUZZ_ARGS="--max-time 60 --seed 7" to change the bounds). Findings: docs/security.md.
fuzz: install
	$(BIN)/python tests/fuzz_api.py $(FUZZ_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy assistant ingest app.py

bench: install
	$(BIN)/python bench/ingest_speed.py && $(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
