#!/usr/bin/env bash
# Rebuilds the guest from this source and answers match / no match:
#   1. two builds from scratch, in two fresh target folders and from two clone paths, give the
#      same ELF (the build is reproducible);
#   2. the rebuilt guest's image id is the one embedded in the installed extension
#      (`prover.image_id()`, the guest `veritrain verify` accepts by default);
#   3. with RUN_URI, it is the image id pinned in that run's run.json.
# With --elf FILE, FILE (a guest ELF built elsewhere, say in the auditor's own environment) is
# compared instead of building, and comparison 1 is skipped.
#
# Exit 0 when every comparison matches; otherwise the sum of 4 (the two builds differ),
# 8 (the installed extension's guest is another) and 16 (the run's pinned image id is another).
# 2 usage; 3 a build failed or the run could not be read.
#
#   bash scripts/check-reproducible-guest.sh [--elf FILE] [RUN_URI]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VERITRAIN_CACHE:-$HOME/.cache/veritrain}"
PY="${VERITRAIN_PYTHON:-$CACHE/venv/bin/python}"
usage() { echo "usage: $0 [--elf FILE] [RUN_URI]" >&2; exit 2; }
elf=""
if [ "${1:-}" = "--elf" ]; then
  [ $# -ge 2 ] || usage
  elf="$(realpath -e -- "$2" 2>/dev/null)" || { echo "--elf $2: no such file" >&2; exit 2; }
  shift 2
fi
[ $# -le 1 ] || usage
case "${1:-}" in -*) usage ;; esac
status=0
if [ -z "$elf" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  cp -r "$REPO" "$WORK/elsewhere"
  rm -rf "$WORK/elsewhere/.git"
  elf="$(VERITRAIN_CACHE="$WORK/a" bash "$REPO/scripts/build-guest.sh")" \
    || { echo "build 1 failed" >&2; exit 3; }
  two="$(VERITRAIN_CACHE="$WORK/b" bash "$WORK/elsewhere/scripts/build-guest.sh")" \
    || { echo "build 2 failed" >&2; exit 3; }
  a="$(sha256sum "$elf" | cut -d' ' -f1)"
  b="$(sha256sum "$two" | cut -d' ' -f1)"
  echo "build 1 ($REPO): ELF sha256 $a"
  echo "build 2 ($WORK/elsewhere): ELF sha256 $b"
  if [ "$a" = "$b" ]; then echo "reproducible: match"; else echo "reproducible: NO MATCH"; status=4; fi
fi
cd "$REPO"
compared=0
"$PY" - "$elf" "${1:-}" <<'PY' || compared=$?
import sys

from veritrain.pipeline.errors import StorageError, UsageError
from veritrain.prover import VeritrainError, _native

elf, run_uri = sys.argv[1], sys.argv[2]
try:
    rebuilt = _native.image_id_of(open(elf, "rb").read())
except (OSError, VeritrainError) as e:
    print(f"{elf}: {e}", file=sys.stderr)
    sys.exit(3)
print(f"image id of {elf}: {rebuilt.hex()}")
status = 0


def compare(what: str, other: bytes, bit: int) -> None:
    global status
    same = other == rebuilt
    status |= 0 if same else bit
    print(f"{what}: {'match' if same else 'NO MATCH'} ({other.hex()})")


compare("installed extension's guest", _native.image_id(), 8)
if run_uri:
    from veritrain.pipeline.run.manifest import Manifest
    from veritrain.pipeline.store.base import open_store
    from veritrain.pipeline.store.uris import split_run_uri

    try:
        store_uri, run_id = split_run_uri(run_uri)
        pinned = Manifest.load(open_store(store_uri), run_id).image_id
    except UsageError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    except (StorageError, VeritrainError) as e:
        print(f"{run_uri}: cannot read the run's pinned image id ({e})", file=sys.stderr)
        sys.exit(3)
    compare(f"run {run_id}'s pinned image id", pinned, 16)
sys.exit(status)
PY
case "$compared" in
  0 | 8 | 16 | 24) exit $((status | compared)) ;;
  *) exit "$compared" ;;
esac
