#!/usr/bin/env bash
# Correctness of shoal's forward pass against llama.cpp (through the llama_peer harness).
# Not part of `make test`: it needs the peer (shared/peer/setup.sh) and takes a few minutes.
#
#   scripts/compare-llama.sh [WORKDIR]
#
# For a matrix of generated models (llama with the llama-spm and llama-bpe vocabs, qwen2 with
# its vocab, tied embeddings and q/k/v biases; GQA and MQA; head sizes 32 and 64; RoPE bases
# 1e4 / 5e5 / 1e6, linear scaling with rope_freqs factors; f32 and f16 weights;
# llama.cpp-quantized Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and the Q4_K_M mix) it
# compares, on the same token ids:
#   - last-position logits: shoal --kv-f32 against llama.cpp --kv-type f32 --fa off (like for
#     like: no f16 rounding on either side), and shoal's default f16 KV cache against
#     llama.cpp's defaults (f16 KV, flash attention auto);
#   - greedy decoding of 32 tokens (f32 KV on both sides, flash attention off in llama.cpp):
#     how many leading tokens agree; at the first difference the llama.cpp logit gap between
#     its token and shoal's (a near-tie when tiny compared to the logits' range).
# Tolerances: rel L2 < 1e-3 for f32/f16 weights, < 2e-2 for quantized ones (like for like);
# f32/f16 weights must also stay < 1e-3 with the f16 cache against llama.cpp's defaults (shoal's
# f16-cache attention mirrors llama.cpp's flash-attention roundings, docs/engine.md).
# The last line is "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHOAL=$ROOT/build/shoal
PEER=${PEER:-$HOME/.cache/shoal-peer/bin/llama_peer}
PEERDIR=${PEERDIR:-/work/shared/peer}
VOCAB=${VOCAB:-/work/shared/vocab}
W=${1:-$(mktemp -d /tmp/shoal-compare-XXXXXX)}
mkdir -p "$W"
[ -x "$PEER" ] || { echo "llama_peer not found at $PEER (run shared/peer/setup.sh)" >&2; exit 2; }
[ -x "$SHOAL" ] || make -s >/dev/null || exit 2

IDS="1 415 2936 9060 285 1142 29871 3 14 1000 322 263 2107 310 278 3186 29889 450 11203 338 4 5 6 7"
PASS=0
FAIL=0
T=2

gen() { # name generator-args...
  local name=$1; shift
  [ -s "$W/$name.gguf" ] || "$@" -o "$W/$name.gguf" >/dev/null 2>&1 || { echo "cannot make $name" >&2; return 1; }
}

rel() { # test ref -> rel_l2
  "$PEER" cmp "$1" "$2" 2>/dev/null | sed -n 's/.*rel_l2=\([^ ]*\).*/\1/p'
}

check() { # name tol [also-f16kv]
  local name=$1 tol=$2 also16=${3:-0} m="$W/$1.gguf"
  rm -f "$W/$name".s32 "$W/$name".s16 "$W/$name".r32 "$W/$name".r16 "$W/$name".div
  "$SHOAL" run -m "$m" --ids "$IDS" -n 1 --temp 0 -t $T --kv-f32 --logits-out "$W/$name.s32" >/dev/null 2>&1
  "$SHOAL" run -m "$m" --ids "$IDS" -n 1 --temp 0 -t $T --logits-out "$W/$name.s16" >/dev/null 2>&1
  "$PEER" logits "$m" --ids "$IDS" --exact --kv-type f32 --fa off -t $T -o "$W/$name.r32" >/dev/null 2>&1
  "$PEER" logits "$m" --ids "$IDS" --exact -t $T -o "$W/$name.r16" >/dev/null 2>&1
  local r32 r16
  r32=$(rel "$W/$name.s32" "$W/$name.r32")
  r16=$(rel "$W/$name.s16" "$W/$name.r16")
  # greedy: 32 tokens each
  local ps ss
  ps=$("$PEER" gen "$m" --ids "$IDS" -n 32 -t $T --kv-type f32 --fa off 2>/dev/null | sed -n 's/^tokens: //p')
  ss=$("$SHOAL" run -m "$m" --ids "$IDS" -n 32 --temp 0 -t $T --kv-f32 --ignore-eos --json 2>/dev/null |
       python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["tokens"])))')
  local agree gap="-"
  agree=$(python3 -c 'import sys
a=sys.argv[1].split(); b=sys.argv[2].split(); n=0
while n<len(a) and n<len(b) and a[n]==b[n]: n+=1
print(n)' "$ps" "$ss")
  if [ "$agree" -lt 32 ]; then
    # llama.cpp's logits at the first difference: gap between its choice and shoal's
    local prefix
    prefix="$IDS"
    [ "$agree" -gt 0 ] && prefix="$IDS $(echo $ps | cut -d' ' -f1-$agree)"
    "$PEER" logits "$m" --ids "$prefix" --exact -t $T --kv-type f32 --fa off -o "$W/$name.div" >/dev/null 2>&1
    local pt st
    pt=$(echo $ps | cut -d' ' -f$((agree + 1)))
    st=$(echo $ss | cut -d' ' -f$((agree + 1)))
    gap=$(python3 -c 'import sys
l=[float(x) for x in open(sys.argv[1])]; a,b=int(sys.argv[2]),int(sys.argv[3])
s=(max(l)-min(l)) or 1
print("%.2g (%.2g of range)" % (l[a]-l[b], (l[a]-l[b])/s))' "$W/$name.div" "$pt" "$st")
  fi
  local ok=1
  python3 -c "import sys; sys.exit(0 if float('$r32') < $tol else 1)" 2>/dev/null || ok=0
  [ "$also16" = 1 ] && { python3 -c "import sys; sys.exit(0 if float('$r16') < $tol else 1)" 2>/dev/null || ok=0; }
  if [ $ok = 1 ]; then PASS=$((PASS + 1)); st=ok; else FAIL=$((FAIL + 1)); st=FAIL; fi
  printf '%-4s %-24s relL2(f32kv)=%-11s relL2(f16kv,llama defaults)=%-11s greedy=%2s/32 gap=%s\n' \
    "$st" "$name" "$r32" "$r16" "$agree" "$gap"
}

G() { "$SHOAL" gen-model "$@"; }
SPM=$VOCAB/ggml-vocab-llama-spm.gguf
BPE=$VOCAB/ggml-vocab-llama-bpe.gguf
QW=$VOCAB/ggml-vocab-qwen2.gguf

gen spm-gqa-hd32 G --vocab "$SPM" --dim 256 --layers 3 --heads 8 --kv-heads 2 --ffn 768 --seed 11 --init-std 0.05
gen spm-gqa-hd32-f16 G --vocab "$SPM" --dim 256 --layers 3 --heads 8 --kv-heads 2 --ffn 768 --seed 11 --init-std 0.05 --dtype f16
gen bpe-mqa-hd64 G --vocab "$BPE" --dim 256 --layers 2 --heads 4 --kv-heads 1 --ffn 512 --rope-theta 500000 --seed 12 --init-std 0.05
gen bpe-mqa-hd64-f16 G --vocab "$BPE" --dim 256 --layers 2 --heads 4 --kv-heads 1 --ffn 512 --rope-theta 500000 --seed 12 --init-std 0.05 --dtype f16
gen qwen2-tied-bias G --vocab "$QW" --arch qwen2 --tied --qkv-bias --dim 256 --layers 2 --heads 8 --kv-heads 2 --ffn 512 --rope-theta 1000000 --seed 13 --init-std 0.05
gen qwen2-tied-bias-f16 G --vocab "$QW" --arch qwen2 --tied --qkv-bias --dim 256 --layers 2 --heads 8 --kv-heads 2 --ffn 512 --rope-theta 1000000 --seed 13 --init-std 0.05 --dtype f16
gen spm-hd64-headdim G --vocab "$SPM" --dim 192 --layers 2 --heads 4 --kv-heads 2 --head-dim 64 --ffn 512 --seed 14 --init-std 0.05
gen mkgguf-spm python3 "$PEERDIR/mkgguf.py" --vocab "$SPM" --dim 256 --layers 2 --heads 8 --kv-heads 4 --ffn 768 --seed 15 --init-std 0.05
gen mkgguf-qwen2 python3 "$PEERDIR/mkgguf.py" --vocab "$QW" --qkv-bias --tied --dim 128 --layers 2 --heads 2 --kv-heads 1 --ffn 256 --seed 16 --init-std 0.05

# Llama-3 style RoPE extras (linear scaling factor 2, rope_freqs.weight divisors) added to a
# generated model by a small helper built against the library.
if [ ! -s "$W/spm-rope-extras.gguf" ]; then
  cat > "$W/rope_extras.c" <<'EOF_C'
#include <stdio.h>
#include <string.h>
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "tensor/dtype.h"
int main(int argc, char **argv) {
    sh_err err = {{0}};
    gguf_ctx *g = argc == 3 ? gguf_open(argv[1], &err) : NULL;
    if (!g) return 1;
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g->n_kv; i++) gguf_writer_add(w, g->kv[i].key, &g->kv[i].val);
    gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 2.0f);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size);
    }
    float ff[16] = {1, 1, 1, 1.5f, 2, 2, 3, 4, 4, 6, 8, 8, 12, 16, 16, 32}; /* head size 32 */
    uint64_t ne[1] = {16};
    gguf_writer_add_tensor(w, "rope_freqs.weight", DT_F32, 1, ne, ff, sizeof ff);
    return gguf_writer_write(w, argv[2], &err) ? 1 : 0;
}
EOF_C
  cc -std=c11 -D_GNU_SOURCE -Isrc -o "$W/rope_extras" "$W/rope_extras.c" build/libshoal.a \
     -ljansson -lcrypto -lm -pthread && "$W/rope_extras" "$W/spm-gqa-hd32.gguf" "$W/spm-rope-extras.gguf"
fi

for m in spm-gqa-hd32 spm-gqa-hd32-f16 bpe-mqa-hd64 bpe-mqa-hd64-f16 qwen2-tied-bias \
         qwen2-tied-bias-f16 spm-hd64-headdim mkgguf-spm mkgguf-qwen2 spm-rope-extras; do
  check $m 1e-3 1
done
for q in q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_m; do
  for base in spm-gqa-hd32 qwen2-tied-bias; do
    [ -s "$W/$base-$q.gguf" ] || "$PEER" quantize "$W/$base.gguf" "$W/$base-$q.gguf" $q >/dev/null 2>&1
    check $base-$q 2e-2
  done
done
echo "work dir: $W"
echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
