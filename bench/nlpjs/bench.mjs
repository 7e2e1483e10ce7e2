// nlp.js (node-nlp), the JavaScript NLU library an edge developer without Python would pick, on
// the same data as shoal's assistant encoder: trained on the training split, scored on a test
// split. Intent only (its entity extraction works from enumerated values, not learned spans).
//
//   node bench/nlpjs/bench.mjs TRAIN.jsonl TEST.jsonl
//
// Prints the training time, the intent accuracy and the per-utterance latency (median and p95 of
// nlp.classify, the NLU alone, and of manager.process, the full call) as one JSON line. nlp.js
// answers "None" when no intent scores high enough: it counts as "chat" (the out-of-domain
// intent), which can only help nlp.js.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { NlpManager } = require('node-nlp');

const load = (p) => readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const [trainPath, testPath] = process.argv.slice(2);
if (!trainPath || !testPath) {
  console.error('usage: node bench.mjs TRAIN.jsonl TEST.jsonl');
  process.exit(2);
}
const train = load(trainPath);
const test = load(testPath);

const manager = new NlpManager({ languages: ['en'], autoSave: false, autoLoad: false, nlu: { log: false } });
for (const r of train) manager.addDocument('en', r.text, r.intent);
let t0 = process.hrtime.bigint();
await manager.train();
const trainS = Number(process.hrtime.bigint() - t0) / 1e9;

const quantile = (a, q) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const pick = (intent) => (intent === 'None' ? 'chat' : intent);

let okClassify = 0;
let okProcess = 0;
const tc = [];
const tp = [];
for (const r of test) { // warm-up pass, not timed
  await manager.nlp.classify('en', r.text);
}
for (const r of test) {
  t0 = process.hrtime.bigint();
  const c = await manager.nlp.classify('en', r.text);
  tc.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (pick(c.classifications[0].intent) === r.intent) okClassify++;
  t0 = process.hrtime.bigint();
  const p = await manager.process('en', r.text);
  tp.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (pick(p.intent) === r.intent) okProcess++;
}
console.log(JSON.stringify({
  peer: 'node-nlp ' + require('node-nlp/package.json').version,
  train: train.length,
  test: test.length,
  train_seconds: +trainS.toFixed(1),
  intent_accuracy: +(okClassify / test.length).toFixed(4),
  intent_accuracy_process: +(okProcess / test.length).toFixed(4),
  classify_ms_p50: +quantile(tc, 0.5).toFixed(3),
  classify_ms_p95: +quantile(tc, 0.95).toFixed(3),
  process_ms_p50: +quantile(tp, 0.5).toFixed(3),
  process_ms_p95: +quantile(tp, 0.95).toFixed(3),
}));
