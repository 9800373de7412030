# Two promises on a fresh machine: `make test` and `make demo`. Both install what is missing, once.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
REQS   := requirements.txt requirements-nodeps.txt requirements-dev.txt requirements-dev-nodeps.txt pyproject.toml

# binary:debian-package pairs; only missing ones are installed.
# A path instead of a binary checks that file (a package of data). The test-only ones: a real S3 server
# (Ceph RGW), Chromium for the web page test, Prometheus for the metrics tests, real human speech.
SYSTEM_DEPS := ffmpeg:ffmpeg ffprobe:ffmpeg espeak-ng:espeak-ng sox:sox \
               radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd ceph-authtool:ceph-common \
               chromium:chromium chromedriver:chromium-driver prometheus:prometheus \
               /usr/share/pocketsphinx/test/data/librivox:pocketsphinx-testdata

.PHONY: setup system-deps lint format test test-fast demo demo-sources clean

setup: system-deps $(STAMP)

system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do \
	  { command -v $${pair%%:*} || test -e $${pair%%:*}; } >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	  echo "Installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$pkgs; \
	fi

# uv installs the pinned files faster than pip (benchmarks/RESULTS.md, the test suite). It reads UV_* settings,
# not pip's, so pip's index and find-links settings are handed on. --compile-bytecode: as pip does, since a
# machine with PYTHONDONTWRITEBYTECODE would otherwise recompile every module in every process.
UV      := $(VENV)/bin/uv
UV_PIP  := $(UV) pip install -q --python $(PY) --compile-bytecode
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q uv==0.13.10
	links=$${PIP_FIND_LINKS:-$$($(PIP) config get global.find-links 2>/dev/null)}; \
	index=$${PIP_INDEX_URL:-$$($(PIP) config get global.index-url 2>/dev/null)}; \
	if [ -n "$$links" ]; then export UV_FIND_LINKS="$${UV_FIND_LINKS:-$$links}"; fi; \
	if [ -n "$$index" ]; then export UV_DEFAULT_INDEX="$${UV_DEFAULT_INDEX:-$$index}"; fi; \
	$(UV_PIP) -r requirements.txt -r requirements-dev.txt
	$(UV_PIP) --no-deps -r requirements-nodeps.txt -r requirements-dev-nodeps.txt
	$(UV_PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The gate every change passes (CI runs `make test`, so lint runs first). `make format` fixes what it can.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every tier: tests/unit, tests/integration (real tools, servers, Ray), tests/e2e (whole flows).
test: setup lint
	$(PY) -m pytest

# The unit tier alone (in-process: no Ray, no subprocess, no server): the loop while changing a function.
test-fast: setup
	$(PY) -m pytest tests/unit

# make demo DEMO_ARGS="--speakers 8 --test-speakers 3 --epochs 2 --trials 2 --sweep-epochs 1": a smaller run.
DEMO_OUT  ?= demo_output
DEMO_ARGS ?=
demo: setup
	$(PY) -m demo.run --out $(DEMO_OUT) $(DEMO_ARGS)

# The second demo: the demo corpus as media you already hold (a VoxCeleb2 tree, pre-downloaded AVSpeech clips),
# no HTTP server. make demo-sources SOURCES_ARGS="--store s3://bucket/demo": the same, held on S3.
SOURCES_OUT  ?= demo_sources
SOURCES_ARGS ?=
demo-sources: setup
	$(PY) -m demo.sources --out $(SOURCES_OUT) $(SOURCES_ARGS)

clean:
	rm -rf $(VENV) demo_output demo_sources .pytest_cache
