#!/usr/bin/env bash
# VNN-COMP: install leo once per machine.  Usage: install_tool.sh v1
# Makes a virtual environment at the repository root (.venv) with torch and leo with its ONNX
# extra, installed as CI installs them (.ci/run), at the versions CI pinned (.ci/constraints.txt).
set -euo pipefail
if [ "$#" -ne 1 ] || [ "$1" != "v1" ]; then
    echo "install_tool.sh: expected one argument, the interface version v1 (got: $*)" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --upgrade pip
# torch first, as CI installs it (.ci/run), so nothing pulls another build
"$ROOT/.venv/bin/python" -m pip install torch==2.13.0
"$ROOT/.venv/bin/python" -m pip install -c "$ROOT/.ci/constraints.txt" -e "$ROOT[onnx]"
"$ROOT/.venv/bin/leo" --help > /dev/null
"$ROOT/.venv/bin/leo-vnnlib" --name > /dev/null
echo "install_tool.sh: leo installed in $ROOT/.venv"
