#!/bin/bash
# `make test`'s pytest part: the molecule scenarios (mostly waiting on containers, apt and
# Ansible) run beside the rest of the suite rather than after it, which keeps a CI run on a
# 2-core machine well inside its hour. Output of the molecule half follows the other's; the
# exit status is non-zero when either half failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
log=$(mktemp -t cairn-molecule.XXXXXX)
trap 'rm -f "$log"' EXIT
.venv/bin/pytest -q -ra tests/molecule >"$log" 2>&1 &
molecule_pid=$!
.venv/bin/pytest -q -ra tests --ignore=tests/molecule
rest=$?
wait "$molecule_pid"
molecule=$?
echo "--- molecule scenarios (tests/molecule) ---"
cat "$log"
[ "$rest" -eq 0 ] && [ "$molecule" -eq 0 ]
