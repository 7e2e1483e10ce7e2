#!/usr/bin/env bash
# The README's first command ends here: generate a small model (once), quantize it, inspect it
# and generate a few tokens with it, then say how to serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/models
M=build/models/demo-llama-19m.gguf
Q=build/models/demo-llama-19m-q8_0.gguf
if [ ! -f "$M" ]; then
  ./build/shoal gen-model --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf -o "$M" \
    --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 768 --seed 1
fi
[ -f "$Q" ] || ./build/shoal quantize "$M" "$Q" q8_0
./build/shoal inspect "$Q"
echo
echo "== shoal run (random weights: the text is noise, the machinery is real)"
./build/shoal run -m "$Q" -p "Once upon a time" -n 24 --temp 0
echo
echo "Serve it:  ./build/shoal serve -m demo=$Q   then   curl -s localhost:8080/v1/completions -d '{\"prompt\":\"Hello\",\"max_tokens\":8}'"
