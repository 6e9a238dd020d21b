# Steward: `make run` tries it, `make test` checks everything CI checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# moto's S3 server for the restic tests, in its own venv (about 60 s, once).
MOTO := .moto
MOTO_STAMP := $(MOTO)/.installed
# A real Synapse homeserver for the Matrix tests, in its own venv (it pins its own deps).
SYNAPSE := .synapse
SYNAPSE_STAMP := $(SYNAPSE)/.installed
# A Debian bookworm root booted with systemd-nspawn for tests/systemd (about 90 s, once; needs
# root). Rebuilt when the dependencies or the build script change.
SYSTEMD_ROOT := .systemd-root
SYSTEMD_STAMP := $(SYSTEMD_ROOT)/.installed
# restic's rest-server for the rest: repository tests: Debian 12 has none, so trixie's .deb is
# fetched, checked against a pinned SHA256 and unpacked here (nothing installed system-wide).
TOOLS_DIR := .tools
REST_SERVER := $(TOOLS_DIR)/rest-server

.PHONY: install synapse moto tools rest-server run test lint typecheck layers pytest bench \
	clean systemd-root systemd-test

install: $(STAMP)

# Reinstall when the dependencies change; otherwise this is a no-op.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Installed once (about 40 s); a no-op while the stamp is present.
synapse: $(SYNAPSE_STAMP)

$(SYNAPSE_STAMP):
	test -x $(SYNAPSE)/venv/bin/python || $(PYTHON) -m venv $(SYNAPSE)/venv
	$(SYNAPSE)/venv/bin/python -m pip install --quiet --upgrade pip
	$(SYNAPSE)/venv/bin/python -m pip install --quiet 'matrix-synapse>=1.150,<2'
	touch $(SYNAPSE_STAMP)

moto: $(MOTO_STAMP)

$(MOTO_STAMP):
	test -x $(MOTO)/venv/bin/python || $(PYTHON) -m venv $(MOTO)/venv
	$(MOTO)/venv/bin/python -m pip install --quiet --upgrade pip
	$(MOTO)/venv/bin/python -m pip install --quiet 'moto[server]>=5,<6'
	touch $(MOTO_STAMP)

# Debian tools the suite drives, installed when missing (needs root): nix-instantiate for
# tests/nixos, knotd for the RFC 2136 DNS tests, restic for the backup tests, node to run the
# module's polkit rule (JavaScript) in tests/nixos, sshd for the sftp: repository tests, curl to
# fetch rest-server.
TOOLS := nix-instantiate:nix-bin /usr/sbin/knotd:knot restic:restic node:nodejs /usr/sbin/sshd:openssh-server \
	curl:curl
tools:
	@missing=""; \
	for pair in $(TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

rest-server: $(REST_SERVER)

$(REST_SERVER): .ci/rest-server.sh | tools
	.ci/rest-server.sh $(TOOLS_DIR)

systemd-root: $(SYSTEMD_STAMP)

$(SYSTEMD_STAMP): pyproject.toml tests/systemd/build-root.sh
	@command -v systemd-nspawn >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends \
			systemd-container debootstrap >/dev/null; }
	mkdir -p $(SYSTEMD_ROOT)
	tests/systemd/build-root.sh $(SYSTEMD_ROOT)/root .
	touch $(SYSTEMD_STAMP)

# The NixOS module's units, polkit rule and user on a real systemd 252 with dbus and polkitd
# (tests/systemd). Plain `make test` skips that folder; this target runs it, and fails when
# the container cannot boot.
systemd-test: install tools $(SYSTEMD_STAMP)
	STEWARD_SYSTEMD_ROOT=$(CURDIR)/$(SYSTEMD_ROOT)/root $(BIN)/pytest -q \
		--durations=5 tests/systemd

run: install
	$(BIN)/steward run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

pytest: install $(SYNAPSE_STAMP) $(MOTO_STAMP) tools $(REST_SERVER)
	$(BIN)/pytest -q

test: lint typecheck layers pytest

# Every benchmark runs, even after one missed a target; the exit status says whether any did.
bench: install $(SYNAPSE_STAMP) tools
	@failed=""; \
	for b in benchmarks/bench_*.py; do \
		[ -e "$$b" ] || { echo "no benchmarks yet"; break; }; \
		echo "== $$b"; \
		$(BIN)/python $$b || failed="$$failed $$b"; \
		echo; \
	done; \
	if [ -n "$$failed" ]; then echo "missed a target or failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) $(SYNAPSE) $(MOTO) $(SYSTEMD_ROOT) $(TOOLS_DIR) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
