#!/usr/bin/env bash
# Builds {{name}}.wasm, a tether {{kind}} component, from {{kind}}.js with componentize-qjs
# (QuickJS). Uses componentize-qjs from PATH, or installs it with npm into node_modules.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v componentize-qjs >/dev/null; then
    if [ ! -x node_modules/.bin/componentize-qjs ]; then
        echo "installing componentize-qjs 0.4.5 into node_modules" >&2
        npm install --silent --no-audit --no-fund --no-save componentize-qjs@0.4.5 >&2
    fi
    PATH="$PWD/node_modules/.bin:$PATH"
fi
# --sync: the synchronous ABI; wasmtime 48 refuses components built for the async one.
componentize-qjs --wit wit -n {{world}} --js {{kind}}.js --sync -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm" >&2
