# Two commands for a fresh machine:
#   make run   - install the dashboard (only what it needs) and open it with its embedded service
#   make test  - install the dashboard, the Redis store and the test tools, then run lint, mypy and the whole test suite
# Also: make dist (the Linux bundle and installer tarball in dist/), make deb (dist/slotdeck_*.deb from that bundle),
# make bench (benchmarks/).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTING := $(VENV)/.testing
PACKAGING := $(VENV)/.packaging

.PHONY: run test lint typecheck system-deps test-system-deps bench dist deb

# the dashboard alone: the test extras bring keyrings.alt, whose plaintext file must never hold a user's tokens
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[desktop]'
	touch $(STAMP)

$(TESTING): $(STAMP)
	$(PY) -m pip install -q -e '.[desktop,redis,test]'
	touch $(TESTING)

$(PACKAGING): $(STAMP)
	$(PY) -m pip install -q -e '.[packaging]'
	touch $(PACKAGING)

system-deps:
	bash scripts/system-deps.sh

test-system-deps:  # dpkg-shlibdeps (dpkg-dev) for the .deb test
	bash scripts/system-deps.sh dpkg-dev

run: system-deps $(STAMP)
	$(VENV)/bin/slotdeck gui

lint: $(TESTING)
	$(VENV)/bin/ruff check .

typecheck: $(TESTING)
	$(VENV)/bin/mypy

test: test-system-deps $(TESTING) $(PACKAGING) lint typecheck
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

dist: $(PACKAGING)
	bash packaging/build.sh dist

deb: dist
	bash packaging/deb/build-deb.sh dist/slotdeck dist

bench: $(TESTING)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
