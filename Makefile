# Entry points: `make demo`, `make test`, `make bench`. Every target runs `setup` first.
PYTHON ?= python3
VENV := .venv
DUPVENV := .venv-duplicity
DUPLICITY_VERSION := 3.2.1
export CAIRN_DUPLICITY ?= $(CURDIR)/$(DUPVENV)/bin/duplicity
COLL_LINK := .ansible/collections/ansible_collections/cairn/backup

.PHONY: setup test unit demo bench bench-remote bench-converge duplicity azurite podman molecule sanity clean

setup: $(VENV)/.done $(COLL_LINK)

$(VENV)/.done: requirements.txt requirements-test.txt requirements-molecule.txt pyproject.toml scripts/setup-system.sh
	scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-test.txt -r requirements-molecule.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# The oracle: stock duplicity in a venv of its own (builds its C extension against librsync).
duplicity: $(DUPVENV)/.done
$(DUPVENV)/.done: scripts/setup-system.sh
	scripts/setup-system.sh
	$(PYTHON) -m venv $(DUPVENV)
	$(DUPVENV)/bin/pip install -q duplicity==$(DUPLICITY_VERSION)
	touch $@

# Azurite, the Azure Blob Storage emulator the azure:// tests use (npm, into .cache/azurite)
azurite:
	scripts/setup-azurite.sh

# podman with runc and the local Debian 12 image with systemd the molecule scenarios run on
podman:
	scripts/setup-podman.sh

# the roles' molecule scenarios alone (make test runs them too, through pytest)
molecule: setup podman
	$(VENV)/bin/pytest -q -ra tests/molecule

test: setup duplicity azurite podman
	scripts/run-tests.sh
	scripts/sanity.sh

unit: setup
	$(VENV)/bin/pytest -q tests/unit

# ansible-test sanity on a copy laid out as ansible_collections/cairn/backup
sanity: setup
	scripts/sanity.sh

demo: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH scripts/demo.sh

# cairn against duplicity, restic and borg (Debian's packages) on the shared dataset, the
# module against the CLI, the dataset encrypted to a public key cairn against duplicity, then
# 1,000,000 small files cairn against duplicity (bench/run.py --help);
# e.g. make bench BENCH_ARGS="--runs 3 --json bench-results.json"
BENCH_ARGS ?=
bench: setup duplicity
	scripts/setup-system.sh restic borgbackup
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

# sftp and S3 upload throughput against duplicity, and --max-upload-rate accuracy
bench-remote: setup duplicity
	$(VENV)/bin/python bench/remote.py

# a 3-host site.yml converge and re-converge on podman containers, timed, the engine's install apart
# (BEFORE/AFTER: bench/converge.py --collection before=git:REV --collection after=.)
bench-converge: setup podman
	$(VENV)/bin/python bench/converge.py

clean:
	rm -rf $(VENV) $(DUPVENV) .ansible
