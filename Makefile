# The two commands of the README: `make sandbox` (the fleet on a local sandbox) and `make test`.
# Everything else here is what those two need: a virtualenv installed from the hash-checked locks (the
# project, its dev extra and the local sandbox, gco_sandbox/, a separate distribution that never ships in
# the product's wheel), the system binaries the tests and the sandbox start (redis-server, promtool), and
# the real control plane built from source (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# What the venv is installed from: every package pinned and hash-checked, the product's runtime lock
# (requirements.lock, what the image installs) extended by the dev tools and the sandbox.
DEV_LOCK := requirements-dev.lock
# `uv pip compile` flags shared by every lock: the machine kind the locks are for.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 --python-platform linux

.PHONY: test lint typecheck unit sandbox system-deps venv clean bench controlplane controlplane-lock lock \
	lock-upgrade

venv: $(STAMP)

# The venv is rebuilt from nothing whenever a lock or a pyproject changes: pip installs exactly the lock
# (--require-hashes, --no-deps: nothing resolved, nothing unpinned), then the two local packages as
# editable installs built by the lock's own setuptools (--no-build-isolation: no unpinned build backend).
$(STAMP): pyproject.toml gco_sandbox/pyproject.toml $(DEV_LOCK)
	@echo "venv: installing the hash-checked lock $(DEV_LOCK) into $(VENV)"
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	  -e . -e ./gco_sandbox
	$(BIN)/python -m pip check
	touch $@

# Regenerates the three locks from the pyprojects, keeping every pin that still satisfies them (`make
# lock-upgrade` moves every pin to the newest release allowed). The runtime lock first; the dev lock is
# constrained by it, so the venv and the image run the same versions; the build lock (setuptools, for the
# image's wheel) by the dev lock. Then `make venv` reinstalls. tests/deploy/test_locks.py checks they agree.
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(UPGRADE) pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(UPGRADE) pyproject.toml gco_sandbox/pyproject.toml --extra dev \
	  -c requirements.lock -o $(DEV_LOCK)
	echo 'setuptools>=77' | $(BIN)/uv pip compile $(LOCK_FLAGS) - -c $(DEV_LOCK) -o requirements-build.lock
	$(MAKE) venv

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

# redis-server is started privately by the tests and by the sandbox; redis-sentinel (Debian's own package)
# by the chaos suite's failover scenario (tests/chaos/); promtool (Debian's `prometheus`
# package, which also installs a Prometheus service: the tests use only its promtool) unit-tests the
# alert rules and parses the dashboard's queries. (kubectl comes from `make controlplane`: Debian's
# kubernetes-client is 1.20, too old for the overlays' kustomize.)
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null 2>&1 || missing="$$missing redis-sentinel"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing. Install them first, e.g. 'sudo apt-get install$$missing' (Debian/Ubuntu) or 'brew install redis prometheus' (macOS; Homebrew's redis has redis-sentinel)." >&2; \
	    exit 1; \
	  fi; \
	fi

# The real control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok), built
# from the official Go modules into ~/.cache/gco-tasks/controlplane/ once per version; quiet when cached.
controlplane:
	@bash controlplane/build.sh

# After a version in controlplane/versions.env changes: the wrapper modules and their go.sum, to commit.
controlplane-lock:
	bash controlplane/lock.sh

lint: $(STAMP)
	$(BIN)/ruff check gco_tasks gco_sandbox tests bench
	$(BIN)/ruff format --check gco_tasks gco_sandbox tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy gco_tasks gco_sandbox

test: $(STAMP) system-deps controlplane lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# CLUSTER=real runs the fleet against the real control plane (built first) instead of the stand-in.
CLUSTER ?= standin
sandbox: $(STAMP) system-deps $(if $(filter real,$(CLUSTER)),controlplane)
	$(BIN)/gco-tasks sandbox --cluster $(CLUSTER) $(SANDBOX_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.fleet

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
