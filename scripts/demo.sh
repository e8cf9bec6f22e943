#!/bin/bash
# `make demo`: a real backup, an incremental and a restore, on a local file:// target with a
# throwaway GnuPG key. Everything lives in one temp dir, removed at the end.
set -euo pipefail
work=$(mktemp -d -t cairn-demo.XXXXXX)
cleanup() { gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a throwaway key"
gpg --batch --quiet --passphrase '' --quick-gen-key "cairn demo <demo@cairn.invalid>" rsa2048 encrypt,sign never
key=$(gpg --with-colons --list-keys demo@cairn.invalid | awk -F: '/^fpr:/ {print $10; exit}')
echo "key $key"

step "a source tree"
src="$work/src"; mkdir -p "$src/etc/app" "$src/data"
echo "listen 8080" > "$src/etc/app/app.conf"
head -c 3000000 /dev/urandom > "$src/data/blob.bin"
printf 'line %s\n' $(seq 1 5000) > "$src/data/log.txt"
ln -s etc/app/app.conf "$src/config-link"
find "$src" | sed "s|$work/||"

target="file://$work/target"
common=(--encrypt-key "$key" --archive-dir "$work/cache" --volsize 1)

step "full backup"
cairn full "${common[@]}" "$src" "$target"

step "change something, then an incremental"
sleep 1
echo "listen 9090" > "$src/etc/app/app.conf"
echo "appended" >> "$src/data/log.txt"
rm "$src/data/blob.bin"
cairn incremental "${common[@]}" "$src" "$target"

step "collection-status"
cairn collection-status "${common[@]}" "$target"

step "list-current-files"
cairn list-current-files "${common[@]}" "$target"

step "restore the latest backup and compare"
cairn restore "${common[@]}" "$target" "$work/restored"
diff -r --no-dereference "$src" "$work/restored" && echo "restored tree matches the source"

step "restore one file as it was at the full backup"
first=$(cairn collection-status --json "${common[@]}" "$target" | python3 -c 'import json,sys; print(json.load(sys.stdin)["chains"][-1]["sets"][0]["timestamp"])')
cairn restore "${common[@]}" --time "$first" -r etc/app/app.conf "$target" "$work/old-app.conf"
cat "$work/old-app.conf"

step "verify"
cairn verify --compare-data "${common[@]}" "$target" "$src"
echo; echo "demo complete"
