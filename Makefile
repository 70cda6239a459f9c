# trustkit: two commands do all the set-up on a fresh machine (network: PyPI, and the Debian archive
# for Fashion-MNIST where apt is available).
#   make demo   create the venv if missing, install pinned versions, run the quick report of every phase
#               notebook into reports/ (open reports/index.html; about 8 minutes on 2 cores)
#   make test   same set-up, then the test suite
#   make data   Fashion-MNIST from Debian's package dataset-fashion-mnist (part of make venv): installed
#               with apt when missing and run as root; otherwise a message, and its tests skip
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PIP_FLAGS ?= --quiet --disable-pip-version-check --progress-bar off
PYTEST_ARGS ?=
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
APT_GET ?= apt-get

.PHONY: venv data browser demo demo-full test test-fast bench mutation clean-reports clean

venv: $(STAMP) data browser

# never fails: without Debian's chromium the browser test of the offline report skips, naming it
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: found (/usr/bin/chromium)"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null 2>&1; then \
	  echo "chromium: installing Debian's package with $(APT_GET) (for the offline-report browser test)"; \
	  apt="$(APT_GET) -q -o Acquire::http::Timeout=30"; \
	  DEBIAN_FRONTEND=noninteractive $$apt install -y chromium \
	  || { $$apt update && DEBIAN_FRONTEND=noninteractive $$apt install -y chromium; } \
	  || true; \
	fi; \
	if [ -x /usr/bin/chromium ]; then echo "chromium: installed"; else \
	  echo "chromium: not found. Install it with 'sudo apt-get install chromium' (Debian/Ubuntu);" \
	    "until then the browser test of the offline report skips."; \
	fi

# never fails: without the files the Fashion-MNIST tests skip, naming the package to install
data:
	@dir="$${TRUSTKIT_FASHION_MNIST:-$(FASHION_MNIST_DIR)}"; \
	have() { for f in train-images-idx3 train-labels-idx1 t10k-images-idx3 t10k-labels-idx1; do \
	  test -f "$$dir/$$f-ubyte.gz" || return 1; done; }; \
	if have; then echo "Fashion-MNIST: found in $$dir"; exit 0; fi; \
	if [ -z "$$TRUSTKIT_FASHION_MNIST" ] && [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null 2>&1; then \
	  echo "Fashion-MNIST: installing Debian's package dataset-fashion-mnist with $(APT_GET)"; \
	  apt="$(APT_GET) -q -o Acquire::http::Timeout=30"; \
	  DEBIAN_FRONTEND=noninteractive $$apt install -y dataset-fashion-mnist \
	  || { $$apt update && DEBIAN_FRONTEND=noninteractive $$apt install -y dataset-fashion-mnist; } \
	  || true; \
	fi; \
	if have; then echo "Fashion-MNIST: found in $$dir"; else \
	  echo "Fashion-MNIST: not found in $$dir. Install it with 'sudo apt-get install dataset-fashion-mnist'" \
	    "(Debian/Ubuntu) or set TRUSTKIT_FASHION_MNIST to a folder with the four IDX .gz files;" \
	    "until then its tests skip and load_fashion_mnist() raises FileNotFoundError."; \
	fi

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (first time: a few minutes)"
	$(PIP) install $(PIP_FLAGS) -r requirements.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	$(PIP) install $(PIP_FLAGS) --no-deps -r requirements-nodeps.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	$(PIP) install $(PIP_FLAGS) --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	$(PY) -c "import trustkit, torch, torchvision, fairlearn, imagecorruptions; print('trustkit', trustkit.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__)"
	@touch $(STAMP)

demo: venv
	$(VENV)/bin/trustkit report all --preset quick --out reports

# about 75 minutes on 2 cores (measured): every phase with 5-8 seeds, the medium sweep grid, all three budget regimes
demo-full: venv
	$(VENV)/bin/trustkit report all --preset full --out reports/full

test: venv
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules trustkit tests $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not notebook" --doctest-modules trustkit tests $(PYTEST_ARGS)

# mutation testing with mutmut (configured in pyproject.toml: metrics, train/_schedulers.py, select);
# all 6,334 mutants take hours on 2 cores, so name some with a glob:
#   make mutation MUTANTS='trustkit.metrics._fairness.*'
# survivors: .venv/bin/mutmut results; one mutant's edit: .venv/bin/mutmut show NAME
MUTANTS ?=
mutation: venv
	TRUSTKIT_TEST_THREADS=1 OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(VENV)/bin/mutmut export-cicd-stats >/dev/null && $(PY) -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); \
	  print({k: s[k] for k in ('killed', 'survived', 'timeout', 'no_tests', 'skipped', 'suspicious', 'total') if k in s})"

bench: venv
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/selection_cost.py
	$(PY) benchmarks/budget_overhead.py
	$(PY) benchmarks/budget_adherence.py
	$(PY) benchmarks/memory_estimate.py
	$(PY) benchmarks/vtrust_table1.py --seeds 5
	$(PY) benchmarks/vtrust_robust.py --seeds 3
	$(PY) benchmarks/scheduler_overhead.py
	$(PY) benchmarks/adaptive_vs_static.py --seeds 5
	$(PY) benchmarks/compression.py --seeds 3
	$(PY) benchmarks/sweep_scaling.py

clean-reports:
	rm -rf reports

clean: clean-reports
	rm -rf $(VENV) *.egg-info .pytest_cache
