#!/usr/bin/env bash
# VNN-COMP: check one instance before it is timed.  Usage: prepare_instance.sh v1 BENCHMARK ONNX VNNLIB
# Exits 0 when leo reads the model and the query, non-zero (with one line on stderr) when it
# cannot, so that the instance is skipped rather than counted as an error.
set -euo pipefail
if [ "$#" -ne 4 ] || [ "$1" != "v1" ]; then
    echo "prepare_instance.sh: usage: prepare_instance.sh v1 BENCHMARK ONNX VNNLIB (got: $*)" >&2
    exit 2
fi
# shellcheck source=vnncomp/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
ONNX="$3"
VNNLIB="$4"
for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ]; then
        echo "prepare_instance.sh: no such file: $f" >&2
        exit 2
    fi
done
"$PY" - "$ONNX" "$VNNLIB" <<'PYEOF'
import sys

from leo.errors import LeoInputError
from leo.io.load import load_network

try:
    load_network(sys.argv[1])
except LeoInputError as exc:
    print(f"prepare_instance.sh: leo cannot read {sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(2)
PYEOF
