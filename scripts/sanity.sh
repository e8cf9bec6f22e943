#!/bin/bash
# `make sanity`: ansible-test sanity on a copy of the tracked files laid out as
# ansible_collections/cairn/backup (ansible-test needs that path; the checkout may be anywhere).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
pip_version=$("$venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
cp "$root/scripts/ansible-test-get-pip.py" "$cache/get_pip_${pip_version//./_}.py"
work=$(mktemp -d -t cairn-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/cairn/backup"
mkdir -p "$dest"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$dest" -xf -
cd "$dest"
git init -q && git add -A && git -c user.name=sanity -c user.email=sanity@cairn.invalid commit -qm sanity
"$venv/bin/ansible-test" sanity --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --requirements --color no "$@"
