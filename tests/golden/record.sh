#!/bin/sh
# Re-records the golden outputs from the binaries in BINDIR (weir, weir-cni,
# weir-init). Only for a deliberate, reviewed change of output: see README.md.
#   tests/golden/record.sh BINDIR [--only NAME]
# Run as root, or the cases that need network namespaces are not recorded.
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 BINDIR [--only NAME]" >&2
  exit 2
fi
bindir=$1
shift
here=$(dirname "$0")
exec python3 "$here/../e2e/test_golden.py" --record "$bindir" "$@"
