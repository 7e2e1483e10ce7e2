#!/usr/bin/env bash
# shoal train end to end: short runs on tiny data (the loss falls, the same seed gives the same
# bytes, a resumed run equals an uninterrupted one, Ctrl-C saves a checkpoint), bad data rejected
# with file, line and reason, and the shipped models in models/ scored on the project's own test
# split (models/README.md states the thresholds).
source "$(dirname "$0")/lib.sh"
PY=python3
BERT=$VOCAB/ggml-vocab-bert-bge.gguf

# The case-study data, as `make models` generates it (same seed): tiny slices for the runs below,
# the test splits for the shipped models.
$PY "$ROOT/scripts/gen_data.py" "$TMP/data" --seed 1 >/dev/null 2>&1
check "gen_data writes the three data sets" test -s "$TMP/data/assistant/test.jsonl" -a -s "$TMP/data/iot/test.jsonl" -a -s "$TMP/data/replies/test.jsonl"
awk 'NR % 40 == 1' "$TMP/data/assistant/train.jsonl" >"$TMP/a_train.jsonl"
head -n 120 "$TMP/data/assistant/dev.jsonl" >"$TMP/a_dev.jsonl"
awk 'NR % 60 == 1' "$TMP/data/replies/train.jsonl" >"$TMP/r_train.jsonl"
head -n 60 "$TMP/data/replies/dev.jsonl" >"$TMP/r_dev.jsonl"

ENC=(train encoder --train "$TMP/a_train.jsonl" --dev "$TMP/a_dev.jsonl" --vocab "$BERT" --prune-vocab
     --dim 32 --layers 1 --heads 2 --ffn 64 --ctx 48 --steps 120 --batch 16 --eval-every 40 --patience 0 -t 2 -q)
LM=(train lm --train "$TMP/r_train.jsonl" --dev "$TMP/r_dev.jsonl" --bpe 400
    --dim 32 --layers 2 --heads 2 --ffn 64 --ctx 96 --steps 100 --batch 8 --eval-every 50 --patience 0 -t 2 -q)

# loss_falls LOG: the mean loss of the last ten steps is below 80% of the first ten's.
loss_falls() {
  $PY - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and '"eval"' not in l]
a = sum(r["loss"] for r in rows[:10]) / 10
b = sum(r["loss"] for r in rows[-10:]) / 10
print("loss %.3f -> %.3f over %d steps" % (a, b, len(rows)))
sys.exit(0 if len(rows) >= 20 and b < 0.8 * a else 1)
EOF
}

# --- the encoder
"$SHOAL" "${ENC[@]}" -o "$TMP/e1.gguf" --log-json "$TMP/e1.log" 2>"$TMP/e1.err"
check "train encoder on tiny data" test -s "$TMP/e1.gguf"
check "encoder: the loss falls" loss_falls "$TMP/e1.log"
check "encoder: --log-json has dev evaluations" grep -q '"dev_intent_acc"' "$TMP/e1.log"
"$SHOAL" "${ENC[@]}" -o "$TMP/e2.gguf" 2>/dev/null
check "encoder: the same seed and threads give the same bytes" cmp -s "$TMP/e1.gguf" "$TMP/e2.gguf"
"$SHOAL" "${ENC[@]}" --seed 2 -o "$TMP/e3.gguf" 2>/dev/null
check "encoder: another seed gives other bytes" test -s "$TMP/e3.gguf" -a -n "$(cmp "$TMP/e1.gguf" "$TMP/e3.gguf" 2>&1)"
"$SHOAL" "${ENC[@]}" -o "$TMP/e4.gguf" --checkpoint "$TMP/e4.ckpt" --stop-after 50 2>"$TMP/e4.err"
check "encoder: --stop-after leaves a checkpoint" grep -q "stopped at step 50" "$TMP/e4.err"
"$SHOAL" "${ENC[@]}" -o "$TMP/e4.gguf" --resume "$TMP/e4.ckpt" 2>/dev/null
check "encoder: stop at 50 + resume == an uninterrupted run (bytes)" cmp -s "$TMP/e1.gguf" "$TMP/e4.gguf"
OUT=$("$SHOAL" classify -m "$TMP/e1.gguf" --json -p "turn on the kitchen lights" 2>&1)
check "the trained encoder serves intents and slots" grep -q '"labels"' <<<"$OUT"

# Ctrl-C: a long run stopped by SIGINT exits 130 with a checkpoint that --resume continues.
"$SHOAL" "${ENC[@]}" --steps 200000 -o "$TMP/c.gguf" --checkpoint "$TMP/c.ckpt" 2>"$TMP/c.err" &
PID=$!
sleep 2
kill -INT $PID
wait $PID
RC=$?
STEP=$(sed -n 's/^stopped at step \([0-9]*\).*/\1/p' "$TMP/c.err")
check "Ctrl-C: exit 130 and 'stopped at step N'" test "$RC" -eq 130 -a -n "$STEP" -a -s "$TMP/c.ckpt"
if [ -n "$STEP" ]; then
  "$SHOAL" "${ENC[@]}" --steps 200000 -o "$TMP/c.gguf" --resume "$TMP/c.ckpt" --stop-after $((STEP + 5)) 2>"$TMP/c2.err"
  check "Ctrl-C: --resume continues from step $STEP" grep -q "stopped at step $((STEP + 5))" "$TMP/c2.err"
fi

# --- the LM (a BPE vocabulary learnt from the corpus)
"$SHOAL" "${LM[@]}" -o "$TMP/l1.gguf" --log-json "$TMP/l1.log" 2>"$TMP/l1.err"
check "train lm with --bpe on tiny data" test -s "$TMP/l1.gguf"
check "lm: the loss falls" loss_falls "$TMP/l1.log"
"$SHOAL" "${LM[@]}" -o "$TMP/l2.gguf" 2>/dev/null
check "lm: the same seed and threads give the same bytes" cmp -s "$TMP/l1.gguf" "$TMP/l2.gguf"
"$SHOAL" "${LM[@]}" -o "$TMP/l3.gguf" --checkpoint "$TMP/l3.ckpt" --stop-after 37 2>/dev/null
"$SHOAL" "${LM[@]}" -o "$TMP/l3.gguf" --resume "$TMP/l3.ckpt" 2>/dev/null
check "lm: stop at 37 + resume == an uninterrupted run (bytes)" cmp -s "$TMP/l1.gguf" "$TMP/l3.gguf"
OUT=$("$SHOAL" run -m "$TMP/l1.gguf" -p "lights_on room=kitchen" -n 8 --temp 0 2>/dev/null)
check "the trained LM generates text" test -n "$OUT"

# --- bad data: file, line and reason
bad_data() { # DESCRIPTION EXPECTED-MESSAGE TRAIN-LINES [DEV-LINES]
  local d=$1 want=$2
  printf '%s\n' "$3" >"$TMP/bad.jsonl"
  local dev=()
  if [ $# -ge 4 ]; then printf '%s\n' "$4" >"$TMP/baddev.jsonl"; dev=(--dev "$TMP/baddev.jsonl"); fi
  local msg
  msg=$("$SHOAL" train encoder --train "$TMP/bad.jsonl" "${dev[@]}" --vocab "$BERT" --dim 16 --layers 1 --heads 2 \
        --ffn 32 --steps 2 -q -o "$TMP/bad.gguf" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$want" <<<"$msg"; then ok "bad data: $d"; else bad "bad data: $d (rc $rc: $msg)"; fi
}
GOOD='{"text": "turn on the lights", "intent": "lights_on", "slots": {}}
{"text": "lights off in the hall", "intent": "lights_off", "slots": {"room": "hall"}}'
bad_data "malformed JSON" "bad.jsonl:3: malformed JSON" "$GOOD
{\"text\": \"dim the lights\", \"intent\": "
bad_data "a slot span not in the text" "bad.jsonl:2: slot 'room' = 'kitchen' is not a span of the text" \
  '{"text": "turn on the lights", "intent": "lights_on"}
{"text": "lights off in the hall", "intent": "lights_off", "slots": {"room": "kitchen"}}'
bad_data "an empty label set" "the label set is empty" '{"text": "turn on the lights"}
{"text": "lights off in the hall"}'
bad_data "an intent never seen in training" "baddev.jsonl:1: intent 'set_color' is never seen" "$GOOD" \
  '{"text": "make it red", "intent": "set_color"}'
bad_data "a slot never seen in training" "baddev.jsonl:1: slot 'color' is never seen" "$GOOD" \
  '{"text": "lights red", "intent": "lights_on", "slots": {"color": "red"}}'
bad_data "a missing text" "bad.jsonl:1: \"text\" is missing" '{"intent": "lights_on"}'
MSG=$("$SHOAL" train lm --train "$TMP/missing.jsonl" --bpe 400 -o "$TMP/x.gguf" -q 2>&1)
check "a missing data file is named" grep -q "missing.jsonl" <<<"$MSG"

# --- the shipped specialists on the test split (written by templates the training never saw)
M=$ROOT/models
if [ -s "$M/assistant.gguf" ] && [ -s "$M/iot.gguf" ] && [ -s "$M/replies.gguf" ]; then
  check "models/ holds at most 40 MB" test "$(du -cb "$M"/*.gguf | tail -n 1 | cut -f1)" -le $((40 * 1000 * 1000))
  for m in assistant iot replies; do
    "$SHOAL" inspect "$M/$m.gguf" >/dev/null 2>&1 || bad "shoal inspect models/$m.gguf"
  done
  R=$($PY "$ROOT/scripts/eval_models.py" assistant "$M/assistant.gguf" "$TMP/data/assistant/test.jsonl" \
      --min-intent 0.85 --min-f1 0.93 2>&1)
  RC=$?; echo "$R" | head -n 3
  check "models/assistant.gguf: test intent accuracy >= 85%, slot F1 >= 93% (a regression floor: the issue asks 97% / 95%, not met yet)" test $RC -eq 0
  R=$($PY "$ROOT/scripts/eval_models.py" iot "$M/iot.gguf" "$TMP/data/iot/test.jsonl" --min-acc 0.95 2>&1)
  RC=$?; echo "$R" | head -n 3
  check "models/iot.gguf: test label accuracy >= 95% (a regression floor: the issue asks 97%, not met yet)" test $RC -eq 0
  R=$($PY "$ROOT/scripts/eval_models.py" replies "$M/replies.gguf" "$TMP/data/replies/test.jsonl" --min-acc 0.95 2>&1)
  RC=$?; echo "$R" | head -n 3
  check "models/replies.gguf: test replies name the right device and slots >= 95%" test $RC -eq 0
else
  bad "models/assistant.gguf, iot.gguf and replies.gguf are missing (make models)"
fi
# the cascade and ensemble members (same data and labels as assistant.gguf; floors a few points
# under their measured test figures: tiny 76.05% / 83.84%, b 89.92% / 95.22%)
for m in assistant-tiny:0.72:0.80 assistant-b:0.87:0.93; do
  IFS=: read -r name acc f1 <<<"$m"
  if [ -s "$M/$name.gguf" ]; then
    R=$($PY "$ROOT/scripts/eval_models.py" assistant "$M/$name.gguf" "$TMP/data/assistant/test.jsonl" \
        --min-intent "$acc" --min-f1 "$f1" 2>&1)
    RC=$?; echo "$R" | head -n 1
    check "models/$name.gguf: test intent accuracy >= $acc, slot F1 >= $f1 (a regression floor)" test $RC -eq 0
  else
    bad "models/$name.gguf is missing (make models MODELS=$name)"
  fi
done
finish
