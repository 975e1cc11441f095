# Two commands for a fresh machine:
#   make run   - install everything and open the dashboard with its embedded service
#   make test  - install everything and run lint + the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint system-deps bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[desktop,redis,test]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

run: system-deps $(STAMP)
	$(VENV)/bin/slotdeck gui

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: system-deps $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
