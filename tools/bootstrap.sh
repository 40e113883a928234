#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv.
# Idempotent: the install runs again only when requirements.lock changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python 3.11 or newer is required, found $("$python" --version 2>&1); set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
for tool in g++ make; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: '$tool' not found; Verilator needs a C++ compiler and make (Debian: apt-get install g++ make)" >&2
        exit 2
    fi
done

stamp="$venv/.lock-sha256"
want="$(sha256sum "$root/requirements.lock" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "bootstrap: creating $venv" >&2
    "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bootstrap: installing pinned packages from requirements.lock" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install --quiet -r "$root/requirements.lock"
    "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
    echo "$want" > "$stamp"
fi
