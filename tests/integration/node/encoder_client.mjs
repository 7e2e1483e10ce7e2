// The official openai client for Node against a shoal node serving an encoder, with the
// client's defaults: embeddings.create asks for base64 unless told otherwise and decodes it.
// usage: node encoder_client.mjs BASE_URL EMBEDDING_MODEL
// Prints one line per check and "N passed, M failed"; exits 1 on any failure.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.SHOAL_API_KEY || "none", maxRetries: 0 });
let passed = 0, failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   node: ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL node: ${name}: ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e}`);
  }
}
function assert(c, msg) { if (!c) throw new Error(msg || "assertion failed"); }
const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));

let byDefault;
await check("embeddings.create with the client's default encoding (base64)", async () => {
  const r = await client.embeddings.create({ model, input: ["turn on the lights", "what time is it?"] });
  assert(r.data.length === 2 && r.data[1].index === 1, JSON.stringify(r).slice(0, 200));
  byDefault = r.data[0].embedding;
  assert(Array.isArray(byDefault) && byDefault.length === 128, `decoded: ${typeof byDefault}`);
  assert(Math.abs(norm(byDefault) - 1) < 1e-5, `norm ${norm(byDefault)}`);
  assert(r.usage.prompt_tokens > 0, JSON.stringify(r.usage));
});

await check("embeddings.create encoding_format float gives the same vector", async () => {
  const r = await client.embeddings.create({ model, input: "turn on the lights", encoding_format: "float" });
  const v = r.data[0].embedding;
  assert(v.length === byDefault.length && v.every((x, i) => Math.abs(x - byDefault[i]) < 1e-7));
});

await check("a bad request is an APIError with status 400", async () => {
  try {
    await client.embeddings.create({ model, input: [] });
    throw new Error("accepted");
  } catch (e) {
    assert(e.status === 400, `status ${e.status}`);
  }
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
