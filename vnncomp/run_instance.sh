#!/usr/bin/env bash
# VNN-COMP: verify one instance.  Usage: run_instance.sh v1 BENCHMARK ONNX VNNLIB RESULTS TIMEOUT
# Writes RESULTS in the competition's format: the answer (sat, unsat, unknown, timeout) on the
# first line and, for sat, the counterexample that the network's forward pass confirmed:
#   VNN-LIB 1.0 queries: ((X_0 v) ... (Y_0 v) ...) as `leo property --results` writes it;
#   VNN-LIB 2.0 queries: the standard's assignment (`leo-vnnlib verify` output).
# RESULTS is written once, complete, and never over an existing file. Exit 0 when an answer was
# written; 2 on bad input (nothing written); leo's exit code otherwise.
set -uo pipefail
if [ "$#" -ne 6 ] || [ "$1" != "v1" ]; then
    echo "run_instance.sh: usage: run_instance.sh v1 BENCHMARK ONNX VNNLIB RESULTS TIMEOUT (got: $*)" >&2
    exit 2
fi
# shellcheck source=vnncomp/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
ONNX="$3"
VNNLIB="$4"
RESULTS="$5"
TIMEOUT="$6"
if ! [[ "$TIMEOUT" =~ ^[0-9]+([.][0-9]+)?$ ]] || awk -v t="$TIMEOUT" 'BEGIN { exit !(t <= 0) }'; then
    echo "run_instance.sh: TIMEOUT must be a positive number of seconds, not '$TIMEOUT'" >&2
    exit 2
fi
if [ -e "$RESULTS" ]; then
    echo "run_instance.sh: $RESULTS exists already; remove it first (leo never writes over a file)" >&2
    exit 2
fi
# leo's own limit leaves room for starting Python and writing the file: 2 s plus 5 %.
LIMIT="$(awk -v t="$TIMEOUT" 'BEGIN { l = t * 0.95 - 2; if (l < 1) l = 1; printf "%.3f", l }')"
# A last guard should leo overrun: the competition's clock stops at TIMEOUT anyway.
GUARD="$(awk -v t="$TIMEOUT" 'BEGIN { printf "%d", t + 10 }')"

if is_vnnlib2 "$VNNLIB"; then
    NAME="$(first_network "$VNNLIB")"
    TMP="$(mktemp "$(dirname -- "$RESULTS")/.leo-results.XXXXXX")"
    timeout --kill-after=5 "$GUARD" "$PY" -m leo.cli.vnnlib verify "$VNNLIB" --network "$NAME=$ONNX" \
        --timeout "$LIMIT" > "$TMP"
    code=$?
    if [ "$code" -ne 0 ]; then
        rm -f -- "$TMP"
        exit "$code"
    fi
    # the standard's result word for a run out of time is timed-out; the competition's is timeout
    sed -i '1s/^timed-out$/timeout/' "$TMP"
    mv -n -- "$TMP" "$RESULTS"
    exit 0
fi
timeout --kill-after=5 "$GUARD" "$PY" -m leo.cli.main property "$ONNX" "$VNNLIB" --time-limit "$LIMIT" \
    --results "$RESULTS" -q > /dev/null
code=$?
case "$code" in
    0|1|3) exit 0 ;;  # unsat, sat, undecided: the answer is in RESULTS
    124|137) [ -s "$RESULTS" ] && exit 0 || exit "$code" ;;  # stopped by the guard after writing it
    *) exit "$code" ;;
esac
