#!/usr/bin/env bash
# The README's first command ends here: generate a small model (once) and inspect it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/models
M=build/models/demo-llama-19m.gguf
if [ ! -f "$M" ]; then
  ./build/shoal gen-model --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf -o "$M" \
    --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 1
fi
./build/shoal inspect "$M"
