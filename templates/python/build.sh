#!/usr/bin/env bash
# Builds {{name}}.wasm, a tether {{kind}} component, from app.py with componentize-py.
# Uses componentize-py from PATH, or installs it into .venv (Python 3.10+ and pip needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v componentize-py >/dev/null; then
    if [ ! -x .venv/bin/componentize-py ]; then
        echo "installing componentize-py 0.25.1 into .venv" >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet componentize-py==0.25.1 >&2
    fi
    PATH="$PWD/.venv/bin:$PATH"
fi
componentize-py -d wit -w {{world}} componentize -p . app -o {{name}}.wasm >&2
echo "built {{name}}.wasm" >&2
