#!/usr/bin/env bash
# The README's first command ends here: the shipped specialists in models/ answering through
# `shoal serve` (scripts/demo.py): voice commands -> intent + slots -> the reply LM, and an IoT
# sensor window -> anomaly label -> explanation; then the assistant as one OpenAI chat model
# (examples/assistant.yaml) answering voice commands with tool calls. Extra arguments are voice
# commands to try.
set -euo pipefail
cd "$(dirname "$0")/.."
for m in assistant iot replies; do
  if [ ! -s "models/$m.gguf" ]; then
    echo "models/$m.gguf is missing: make models trains the shipped specialists (about 25 minutes)" >&2
    exit 1
  fi
done
python3 scripts/demo.py "$@"
echo
echo "Serve them:  ./build/shoal serve -m assistant=models/assistant.gguf -m iot=models/iot.gguf -m replies=models/replies.gguf"
echo "then:        curl -s localhost:8080/v1/classify -d '{\"model\":\"assistant\",\"input\":\"turn on the kitchen lights\"}'"
