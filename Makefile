# Two commands for a fresh machine:
#   make run   - install everything and open the dashboard with its embedded service
#   make test  - install everything and run lint + the whole test suite
# Also: make dist (the Linux bundle and installer tarball in dist/), make bench (benchmarks/).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PACKAGING := $(VENV)/.packaging

.PHONY: run test lint system-deps bench dist

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[desktop,redis,test]'
	touch $(STAMP)

$(PACKAGING): $(STAMP)
	$(PY) -m pip install -q -e '.[packaging]'
	touch $(PACKAGING)

system-deps:
	bash scripts/system-deps.sh

run: system-deps $(STAMP)
	$(VENV)/bin/slotdeck gui

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: system-deps $(STAMP) $(PACKAGING) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

dist: $(PACKAGING)
	bash packaging/build.sh dist

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
