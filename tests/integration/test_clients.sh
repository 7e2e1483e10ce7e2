#!/usr/bin/env bash
# Integration: today's popular OpenAI clients for Node, with their default settings, against a
# real `shoal serve` on loopback: the official openai package, LangChain JS (@langchain/openai)
# and the Vercel AI SDK (ai + @ai-sdk/openai), each through chat, streaming, embeddings, tools,
# structured output and the Responses API (tests/integration/node/clients.mjs; the versions are
# pinned in tests/integration/node/package-lock.json, installed by `npm ci`).
# The chat model is random-weight (noise text): tool calls and JSON are checked for validity
# against their schemas, which constrained decoding guarantees whatever the weights.
# What these clients send by default was found with a capture server (not part of the suite):
#   python3 tests/integration/capture_server.py build/client-capture.jsonl &   # prints its port
#   node tests/integration/node/capture_drive.mjs http://127.0.0.1:PORT
#   python3 tests/integration/capture_server.py --summarize build/client-capture.jsonl
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
trap 'stop_server; rm -rf "$TMP"' EXIT

CHAT=$TMP/chat.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-qwen2.gguf" -o "$CHAT" --dim 64 --layers 2 --heads 4 \
  --kv-heads 2 --ffn 128 --ctx 4096 --seed 11 --tied --qkv-bias 2>/dev/null
EMB=$ROOT/models/assistant.gguf   # the shipped encoder: sentence embeddings, dim 192

# --ctx 1024: requests without a token limit (the clients' defaults) end at the context
start_server "$TMP/serve.log" -m chat="$CHAT" -m emb="$EMB" --slots 4 --ctx 1024 -t 2 ||
  { bad "server start"; finish; exit 1; }
B="http://127.0.0.1:$PORT"

if ensure_node_clients; then
  node "$ROOT/tests/integration/node/clients.mjs" "$B/v1" chat emb >"$TMP/node.txt" 2>&1
  grep -v "passed, .* failed" "$TMP/node.txt"
  np=$(grep -oE '^[0-9]+ passed' "$TMP/node.txt" | awk '{print $1}'); nf=$(grep -oE '[0-9]+ failed$' "$TMP/node.txt" | awk '{print $1}')
  T_PASS=$((T_PASS + ${np:-0})); T_FAIL=$((T_FAIL + ${nf:-1}))
else
  bad "npm ci of the node clients (tests/integration/node)"
fi

alive() { kill -0 "$SPID" 2>/dev/null && curl -sf -o /dev/null "$B/health"; }
if alive; then
  ok "the server is still up after every client's requests"
else
  bad "the server is still up after every client's requests (it died; the log ends:)"
  tail -n 5 "$TMP/serve.log"
  SPID=""
fi
finish
