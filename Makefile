# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: here 2.13.0 resolves to the local CPU build (no CUDA wheels pulled in).
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/pip install --quiet "torch>=2.11"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dermsynth demo

# Debian's Chromium for the visual Turing test's browser test (tests/test_vtt_browser.py). Allowed to fail
# (not root, no apt, no network): the test is then skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 && \
	    echo "installed Debian chromium for the browser test"; } || \
	  echo "note: Debian chromium not installed; the browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/pgan_throughput.py
	$(BIN)/python benchmarks/pix2pixhd_throughput.py
	$(BIN)/python benchmarks/metrics_speed.py
	$(BIN)/python benchmarks/vtt_load.py

clean:
	rm -rf $(VENV) runs .pytest_cache
