# harmony-bench: the two commands a new user needs are `make demo` and `make test`.
# Both install first (idempotent: ~1 s once installed; the first install builds
# mmcv with compiled ops, ~10-15 min on 2 cores, once per machine).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-slow test-fast lint format bench clean

install:
	bash scripts/install.sh

# The demo suite (benchmarks/suites/demo.yaml): synthetic data, every smoke task, table + leaderboard
# under results/synthetic/demo/ (a rerun resumes; delete that directory to start over).
demo: install
	$(VENV)/bin/harmony-bench suite run demo

# The README's test command: everything but the tests marked `slow` (about 5 min on 2 cores; the slow ones: 6 min).
test: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The tests marked `slow` (multi-process DDP, kill-and-resume, the whole demo suite); CI runs them after `make test`.
test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Without the OpenMMLab tests (for quick iterations).
test-fast: install
	$(PY) -m pytest -m "not mm and not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	@for script in benchmarks/speed/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
