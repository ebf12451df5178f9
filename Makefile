# ttscli: two commands on a fresh machine -> `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run install install-test test test-slow lint format bench voice voice-eval clean

run: install ## install, then speak "hello world" to hello.wav
	$(VENV)/bin/ttscli say "hello world" -o hello.wav

$(PY):
	$(PYTHON) -m venv $(VENV)

# A known-good torch goes in first when none is present (a bare `torch` requirement would pull
# a multi-GB CUDA build); GPU users pick theirs: `make run TORCH_SPEC="torch==2.13.0 --index-url ..."`.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e .
	touch $@

install: $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e ".[test]"
	touch $@

install-test: $(TEST_STAMP)

test: install-test ## the default suite (CPU, a few minutes)
	$(PY) -m pytest -q

test-slow: install-test ## only the slow tests
	$(PY) -m pytest -q -m slow

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-test
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: install ## measure and print a table + one JSON line
	$(PY) -m benchmarks $(if $(REF),--ref $(REF),)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
