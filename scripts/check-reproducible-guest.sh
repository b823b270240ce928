#!/usr/bin/env bash
# Builds the guest twice from scratch in two fresh target folders (and, for the second, from a copy
# of the repository at another path) and compares the ELFs and image ids. An auditor runs this to
# check that the image id pinned in a run manifest comes from this source.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -r "$REPO" "$WORK/elsewhere"
rm -rf "$WORK/elsewhere/.git"
one="$(VERITRAIN_CACHE="$WORK/a" bash "$REPO/scripts/build-guest.sh")"
two="$(VERITRAIN_CACHE="$WORK/b" bash "$WORK/elsewhere/scripts/build-guest.sh")"
a="$(sha256sum "$one" | cut -d' ' -f1)"
b="$(sha256sum "$two" | cut -d' ' -f1)"
echo "build 1 ($REPO): $a"
echo "build 2 ($WORK/elsewhere): $b"
[ "$a" = "$b" ] && echo "reproducible: identical ELF, so identical image id" || { echo "NOT reproducible"; exit 1; }
