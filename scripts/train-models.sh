#!/usr/bin/env bash
# `make models`: regenerates the case-study data and retrains the shipped specialists in models/
# from scratch, reproducibly (same seeds, same thread count -> the same bytes).
#
#   models/assistant.gguf       voice-assistant encoder: intent + slots (+ sentence embeddings), Q8_0
#   models/assistant-tiny.gguf  the same task and labels, a 1-layer, 64-wide encoder: less accurate,
#                               about 10x faster (the first stage of a cascade), Q8_0
#   models/assistant-b.gguf     the same task and labels, another shape and seed (dim 160, seed 2):
#                               a second full-quality member for an ensemble, Q8_0
#   models/iot.gguf             IoT anomaly classifier (encoder), Q8_0
#   models/replies.gguf         reply LM (llama architecture, its own BPE vocabulary), Q8_0
#
# Each run's --log-json goes to models/logs/, its curves to models/curves/ (PNG). The f32 files
# and the llama.cpp export of the intent classifier stay in build/models-train/. About 40
# minutes on two cores. Arguments name the models to retrain (default: all five; `make models
# MODELS="assistant-tiny assistant-b"` passes them). THREADS (environment) overrides the thread
# count (default 2: the shipped files were trained with 2, and another count changes the bytes,
# not the quality). Every model is trained with --seed 1 but assistant-b (SEED=2 below).
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL=./build/shoal
T=${THREADS:-2}
D=build/data
W=build/models-train
mkdir -p "$W" models/logs models/curves

WANT=${*:-assistant assistant-tiny assistant-b iot replies}
python3 scripts/gen_data.py "$D" --seed 1

train() { # NAME TITLE ARGS...   (SEED=N train ...: another seed than 1)
  local name=$1 title=$2 seed=${SEED:-1}
  shift 2
  case " $WANT " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name: shoal train $*"
  "$SHOAL" train "$@" -t "$T" --seed "$seed" --log-json "models/logs/$name.jsonl" -o "$W/$name-f32.gguf"
  "$SHOAL" quantize "$W/$name-f32.gguf" "models/$name.gguf" q8_0 >/dev/null
  python3 scripts/plot_train.py "models/logs/$name.jsonl" "models/curves/$name.png" --title "$title"
  ls -l "models/$name.gguf"
}

train assistant "models/assistant.gguf" encoder --name shoal-assistant \
  --train $D/assistant/train.jsonl --dev $D/assistant/dev.jsonl \
  --vocab tests/data/vocab/ggml-vocab-bert-bge.gguf --prune-vocab \
  --dim 192 --layers 3 --heads 3 --ffn 768 --epochs 3 --batch 32 --eval-every 300 \
  --export-llama $W/assistant-intent-llama.gguf

train assistant-tiny "models/assistant-tiny.gguf" encoder --name shoal-assistant-tiny \
  --train $D/assistant/train.jsonl --dev $D/assistant/dev.jsonl \
  --vocab tests/data/vocab/ggml-vocab-bert-bge.gguf --prune-vocab \
  --dim 64 --layers 1 --heads 2 --ffn 64 --epochs 1 --batch 32 --eval-every 100

SEED=2 train assistant-b "models/assistant-b.gguf" encoder --name shoal-assistant-b \
  --train $D/assistant/train.jsonl --dev $D/assistant/dev.jsonl \
  --vocab tests/data/vocab/ggml-vocab-bert-bge.gguf --prune-vocab \
  --dim 160 --layers 3 --heads 4 --ffn 640 --epochs 3 --batch 32 --eval-every 300

train iot "models/iot.gguf" encoder --name shoal-iot \
  --train $D/iot/train.jsonl --dev $D/iot/dev.jsonl \
  --vocab tests/data/vocab/ggml-vocab-bert-bge.gguf --prune-vocab \
  --dim 128 --layers 2 --heads 2 --ffn 512 --ctx 160 --epochs 2 --batch 32 --eval-every 200 \
  --pairs 0 --w-embed 0 --mask 0.05

train replies "models/replies.gguf" lm --name shoal-replies \
  --train $D/replies/train.jsonl --dev $D/replies/dev.jsonl --bpe 2000 \
  --dim 192 --layers 4 --heads 4 --ffn 512 --ctx 96 --epochs 4 --batch 32 --eval-every 500

echo "== done; score them on the test splits:"
echo "  python3 scripts/eval_models.py assistant models/assistant.gguf $D/assistant/test.jsonl"
echo "  (the same for models/assistant-tiny.gguf and models/assistant-b.gguf)"
echo "  python3 scripts/eval_models.py iot models/iot.gguf $D/iot/test.jsonl"
echo "  python3 scripts/eval_models.py replies models/replies.gguf $D/replies/test.jsonl"
