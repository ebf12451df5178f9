# ttscli: two commands on a fresh machine -> `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run install install-test test test-slow test-browser test-reference lint format bench serve gpu-wheels gpu-check voice voice-deps voice-eval clean

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
	$(PIP) install -q -e ".[test,ray,serve]"
	touch $@

install-test: $(TEST_STAMP)

test: install-test ## the default suite (CPU, a few minutes)
	$(PY) -m pytest -q

test-slow: install-test ## only the slow tests
	$(PY) -m pytest -q -m slow

# The server's web page in Debian's chromium (installed with apt when missing), driven by the
# playwright package through executable_path: no browser download.
test-browser: install-test ## the web page of `ttscli serve` in a real browser
	command -v chromium >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| { sudo apt-get update -qq && sudo apt-get install -y -qq chromium; }
	CHROMIUM=$$(command -v chromium) $(PY) -m pytest -q -m slow tests/test_serve_browser.py

serve: install-test ## run the speech server on 127.0.0.1:8000 (the embedded voice unless NVIDIA's is installed)
	$(VENV)/bin/ttscli serve

# Differential tests against NVIDIA's code exported by ../shared/tools/export_reference.sh.
test-reference: install-test ## make test-reference REF=DIR [CASES=N]
	$(PY) -c "import librosa" 2>/dev/null || $(PIP) install -q -e ".[train]"
	TTS_REF=$(REF) TTS_REF_CASES=$(or $(CASES),6) $(PY) -m pytest -q -m reference

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-test
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: install ## measure and print a table + one JSON line
	$(PY) -c "import starlette, uvicorn, httpx" 2>/dev/null || $(PIP) install -q -e ".[serve]" httpx
	$(PY) -m benchmarks $(if $(REF),--ref $(REF),)

# GPU check: on a machine whose python3 has only a CUDA torch (and pytest, numpy, click, tqdm),
# the runtime dependencies it lacks travel as wheels in .whl (fetched here by `make gpu-wheels`).
GPU_PYTHON ?= python3
GPU_WHEELS ?= soundfile==0.13.1 cffi==2.0.0 pycparser==2.23 unidecode==1.4.0 inflect==7.5.0 \
	more-itertools==10.8.0 typeguard==4.4.4
GPU_PLATFORMS = $(foreach n,28 27 17,--platform manylinux_2_$(n)_x86_64) --platform manylinux2014_x86_64

gpu-wheels: ## download the wheels gpu-check installs (needs the network; run before the GPU)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_PLATFORMS) -d .whl $(GPU_WHEELS)

gpu-check: ## on a GPU machine: cuda tests + real-time factors, one JSON line (< 8 min)
	$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --upgrade --target .gpu-site .whl/*.whl
	PYTHONPATH=$(CURDIR)/src:$(CURDIR)/.gpu-site $(GPU_PYTHON) -m benchmarks.gpu_check --device cuda

VOICE_MINUTES ?= 30
# Teacher (festival + HTS voice) and everyday sentences for its corpus (fortune-cookie files).
VOICE_APT = festival festvox-us-slt-hts fortunes

# The embedded voice: festival's HTS voice as teacher (Debian packages, installed when missing).
voice-deps: install
	{ command -v festival >/dev/null && test -d /usr/share/games/fortunes; } \
		|| { apt-get update -qq && apt-get install -y -qq $(VOICE_APT); } \
		|| { sudo apt-get update -qq && sudo apt-get install -y -qq $(VOICE_APT); }
	$(PIP) install -q -e ".[train]"

voice: voice-deps ## render the corpus (cached), train VOICE_MINUTES more (resumes), export
	$(PY) -m ttscli.training render
	$(PY) -m ttscli.training train --minutes $(VOICE_MINUTES)
	$(PY) -m ttscli.training export

voice-eval: voice-deps ## quality figures of the shipped voice: LJSpeech test lines, then everyday sentences
	$(PY) -m ttscli.training render
	$(PY) -m ttscli.training eval
	$(PY) -m ttscli.training eval --text src/ttscli/training/general_sentences.txt

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .gpu-site
