# Shared by prepare_instance.sh and run_instance.sh (sourced, not run).
# The Python that runs leo: $LEO_PYTHON, else the environment install_tool.sh made, else python3.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${LEO_PYTHON:-}" ]; then
    PY="$LEO_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
else
    PY=python3
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# Prints the text of a VNN-LIB file (.vnnlib or .vnnlib.gz).
vnnlib_text() {
    case "$1" in
        *.gz) gzip -dc -- "$1" ;;
        *) cat -- "$1" ;;
    esac
}

# Succeeds when the file is VNN-LIB 2.0 (it states its version; 1.0 files do not).
is_vnnlib2() {
    vnnlib_text "$1" | grep -q '(vnnlib-version'
}

# The first network a VNN-LIB 2.0 file declares.
first_network() {
    vnnlib_text "$1" | tr '\n' ' ' | grep -o '(declare-network[[:space:]]\+[^[:space:]()]\+' | head -n 1 \
        | awk '{print $2}'
}
