#!/usr/bin/env bash
# Integration: `shoal gen-model` and `shoal inspect` as a user runs them — generated models,
# the vocab files, JSON output, determinism, the malformed corpus and bad arguments.
source "$(dirname "$0")/lib.sh"

# ---- gen-model + inspect ------------------------------------------------------------------
M=$TMP/llama.gguf
check "gen-model llama (llama-spm vocab)" \
  "$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M" --dim 128 --layers 3 \
  --heads 4 --kv-heads 2 --ffn 256 --seed 5
check "inspect text names the architecture" grep -q '^architecture: *llama' <("$SHOAL" inspect "$M")
"$SHOAL" inspect --json "$M" >"$TMP/llama.json"
check "inspect --json is valid and consistent" python3 - "$TMP/llama.json" "$M" <<'PY'
import json, sys, hashlib, os
j = json.load(open(sys.argv[1])); path = sys.argv[2]
assert j["architecture"] == "llama", j["architecture"]
assert j["vocab_size"] == 32000 and j["tokenizer_model"] == "llama"
assert j["size"] == os.path.getsize(path)
assert j["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
hp = j["hyperparameters"]
assert hp["embedding_length"] == 128 and hp["block_count"] == 3 and hp["attention.head_count_kv"] == 2
assert hp["rope.dimension_count"] == 32 and abs(hp["attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-12
ts = {t["name"]: t for t in j["tensors"]}
assert len(ts) == j["n_tensors"] == 2 + 3 * 9 + 1
assert ts["token_embd.weight"]["shape"] == [128, 32000] and ts["token_embd.weight"]["type"] == "F32"
assert ts["blk.2.attn_k.weight"]["shape"] == [128, 64]
n = 0
for t in j["tensors"]:
    e = 1
    for d in t["shape"]: e *= d
    assert t["bytes"] == 4 * e, t
    assert t["offset"] % 32 == 0
    n += e
assert n == j["n_params"]
tok = j["metadata"]["tokenizer.ggml.tokens"]
assert tok["count"] == 32000 and tok["elem"] == "str"
PY

M2=$TMP/llama-again.gguf
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M2" --dim 128 --layers 3 \
  --heads 4 --kv-heads 2 --ffn 256 --seed 5 2>/dev/null
check "gen-model is deterministic for a seed" cmp -s "$M" "$M2"
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$M2" --dim 128 --layers 3 \
  --heads 4 --kv-heads 2 --ffn 256 --seed 6 2>/dev/null
check "another seed gives other weights" bash -c "! cmp -s '$M' '$M2'"

Q=$TMP/qwen.gguf
check "gen-model qwen2 tied + biases + f16" \
  "$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-qwen2.gguf" -o "$Q" --dim 64 --layers 2 --heads 4 \
  --kv-heads 1 --ffn 128 --tied --qkv-bias --dtype f16 --rope-theta 1000000
"$SHOAL" inspect --json "$Q" >"$TMP/qwen.json"
check "qwen2 model: no output.weight, biases F32, matrices F16" python3 - "$TMP/qwen.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
ts = {t["name"]: t for t in j["tensors"]}
assert j["architecture"] == "qwen2" and "output.weight" not in ts
assert ts["blk.0.attn_q.bias"]["type"] == "F32" and ts["blk.0.attn_q.weight"]["type"] == "F16"
assert j["hyperparameters"]["rope.freq_base"] == 1000000.0
assert j["metadata"]["general.file_type"] == 1
PY

# ---- every vocab file inspects, with the right vocabulary size ----------------------------
for v in llama-spm:32000 llama-bpe:128256 gpt-2:50257 qwen2:151936 phi-3:32064 bert-bge:30522; do
  name=${v%%:*}; n=${v##*:}
  out=$("$SHOAL" inspect --json "$VOCAB/ggml-vocab-$name.gguf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["vocab_size"])')
  check "inspect vocab $name: $n tokens" test "$out" = "$n"
done

# ---- malformed corpus: exit 1 with the expected message, never a crash ---------------------
MAL=$ROOT/tests/data/malformed
n=0; nbad=0
while IFS=$'\t' read -r f expect; do
  n=$((n + 1))
  err=$("$SHOAL" inspect "$MAL/$f" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 1 ] || ! grep -qF -- "$expect" <<<"$err"; then
    nbad=$((nbad + 1)); echo "  $f: exit $rc: $err (expected: $expect)"
  fi
done <"$MAL/MANIFEST"
check "malformed corpus: $n files rejected with clear errors" test $nbad -eq 0 -a $n -ge 40

# ---- bad arguments ------------------------------------------------------------------------
"$SHOAL" inspect "$TMP/missing.gguf" 2>"$TMP/e1"; rc=$?
check "inspect of a missing file: exit 1, says why" bash -c "[ $rc -eq 1 ] && grep -q 'cannot open' '$TMP/e1'"
"$SHOAL" inspect "$TMP" 2>"$TMP/e2"; rc=$?
check "inspect of a directory: exit 1" bash -c "[ $rc -eq 1 ] && grep -q 'not a regular file' '$TMP/e2'"
"$SHOAL" gen-model --vocab "$VOCAB/ggml-vocab-llama-spm.gguf" -o "$TMP/x.gguf" --dim 60 --heads 8 2>"$TMP/e3"; rc=$?
check "gen-model with dim not divisible by heads: exit 1" bash -c "[ $rc -eq 1 ] && grep -q 'multiple of heads' '$TMP/e3' && [ ! -e '$TMP/x.gguf' ]"
"$SHOAL" gen-model --vocab "$MAL/bad-magic.gguf" -o "$TMP/x.gguf" 2>"$TMP/e4"; rc=$?
check "gen-model with a bad vocab file: exit 1" bash -c "[ $rc -eq 1 ] && grep -q 'not a GGUF file' '$TMP/e4'"
# ---- bench: JSON figures, several sequences with a filled cache, bad values ----------------
"$SHOAL" bench -m "$M" -p 16 -n 4 -r 1 -t 1 -s 3 -d 5 --json >"$TMP/bench.json"
check "bench --json: pp, tg over 3 sequences at depth 5" python3 -c "
import json,sys; j=json.load(open(sys.argv[1]))
assert j['pp_tok_s'] > 0 and j['tg_tok_s'] > 0 and j['seqs'] == 3 and j['depth'] == 5 and j['n'] == 4, j" "$TMP/bench.json"
"$SHOAL" bench -m "$M" -s 0 2>"$TMP/e5"; rc=$?
check "bench -s 0: a clear error, exit 1" bash -c "[ $rc -eq 1 ] && grep -q -- '-s' '$TMP/e5'"

"$SHOAL" frobnicate 2>/dev/null; rc=$?
check "unknown command: exit 2" test $rc -eq 2

finish
