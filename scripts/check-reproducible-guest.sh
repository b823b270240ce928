#!/usr/bin/env bash
# Rebuilds the guest from this source and answers match / no match:
#   1. two builds from scratch, in two fresh target folders and from two clone paths, give the
#      same ELF (the build is reproducible);
#   2. the rebuilt guest's image id is the one embedded in the installed extension (what
#      `veritrain verify` trusts by default);
#   3. with RUN_URI, it is the image id pinned in that run's run.json.
# Exit 0 when every comparison matches, 1 when one does not, 2 on usage errors.
#
#   bash scripts/check-reproducible-guest.sh [RUN_URI]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
PY="${VERITRAIN_PYTHON:-$CACHE/venv/bin/python}"
[ $# -le 1 ] || { echo "usage: $0 [RUN_URI]" >&2; exit 2; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r "$REPO" "$WORK/elsewhere"
rm -rf "$WORK/elsewhere/.git"
one="$(VERITRAIN_CACHE="$WORK/a" bash "$REPO/scripts/build-guest.sh")"
two="$(VERITRAIN_CACHE="$WORK/b" bash "$WORK/elsewhere/scripts/build-guest.sh")"
a="$(sha256sum "$one" | cut -d' ' -f1)"
b="$(sha256sum "$two" | cut -d' ' -f1)"
echo "build 1 ($REPO): ELF sha256 $a"
echo "build 2 ($WORK/elsewhere): ELF sha256 $b"
status=0
if [ "$a" = "$b" ]; then echo "reproducible: match"; else echo "reproducible: NO MATCH"; status=1; fi
cd "$REPO"
"$PY" - "$one" "${1:-}" <<'PY' || status=1
import sys

from prover import _native

elf, run_uri = sys.argv[1], sys.argv[2]
rebuilt = _native.image_id_of(open(elf, "rb").read())
print(f"rebuilt guest image id: {rebuilt.hex()}")
ok = True


def compare(what: str, other: bytes) -> None:
    global ok
    same = other == rebuilt
    ok &= same
    print(f"{what}: {'match' if same else 'NO MATCH'} ({other.hex()})")


compare("installed extension's guest", _native.image_id())
if run_uri:
    from pipeline.run import Manifest
    from pipeline.store import open_store, split_run_uri

    store_uri, run_id = split_run_uri(run_uri)
    compare(f"run {run_id}'s pinned image id", Manifest.load(open_store(store_uri), run_id).image_id)
sys.exit(0 if ok else 1)
PY
exit $status
