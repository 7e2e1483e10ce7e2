// The official openai client for Node against a running shoal node.
// usage: node openai_client.mjs BASE_URL MODEL   (BASE_URL ends in /v1)
// Prints one line per check and "N passed, M failed"; exits 1 on any failure.
import OpenAI from "openai";

const [baseURL, model, chatModel] = process.argv.slice(2);
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

const prompts = Array.from({ length: 8 }, (_, i) =>
  `Request ${i}: tell me about the sea, the wind and number ${i * 7}`);

await check("completions.create", async () => {
  const r = await client.completions.create({ model, prompt: "Hello", max_tokens: 5, temperature: 0 });
  assert(r.object === "text_completion" && r.choices.length === 1, JSON.stringify(r));
  assert(r.usage.completion_tokens === 5 && r.choices[0].finish_reason === "length");
});

await check("completions.create stream", async () => {
  const stream = await client.completions.create({ model, prompt: "Hello", max_tokens: 5, temperature: 0, stream: true });
  let text = "", n = 0, finish = null;
  for await (const chunk of stream) {
    n++;
    text += chunk.choices[0]?.text ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  const whole = await client.completions.create({ model, prompt: "Hello", max_tokens: 5, temperature: 0 });
  assert(text === whole.choices[0].text, `stream "${text}" vs whole "${whole.choices[0].text}"`);
  assert(finish === "length" && n >= 2);
});

await check("unknown model -> NotFoundError (404)", async () => {
  try {
    await client.completions.create({ model: "no-such-model", prompt: "x" });
    throw new Error("no error");
  } catch (e) {
    assert(e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === "model_not_found", String(e));
  }
});

await check("bad parameter -> BadRequestError (400)", async () => {
  try {
    await client.completions.create({ model, prompt: "x", temperature: 7 });
    throw new Error("no error");
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError && e.param === "temperature", String(e));
  }
});

await check("8 concurrent greedy streams == the same 8 run one at a time", async () => {
  const one = async (p) => {
    const s = await client.completions.create({ model, prompt: p, max_tokens: 24, temperature: 0, stream: true, logprobs: 1 });
    let text = "", lps = [];
    for await (const c of s) {
      if (!c.choices.length) continue;
      text += c.choices[0].text;
      if (c.choices[0].logprobs) lps.push(...c.choices[0].logprobs.token_logprobs);
    }
    return { text, lps };
  };
  const seq = [];
  for (const p of prompts) seq.push(await one(p));
  const par = await Promise.all(prompts.map(one));
  for (let i = 0; i < prompts.length; i++) {
    assert(seq[i].text === par[i].text, `request ${i}: "${seq[i].text}" vs "${par[i].text}"`);
    assert(JSON.stringify(seq[i].lps) === JSON.stringify(par[i].lps), `request ${i}: logprobs differ`);
  }
});

await check("seeded sampling is reproducible", async () => {
  const a = await client.completions.create({ model, prompt: "Hello", max_tokens: 12, temperature: 1.0, seed: 42 });
  const b = await client.completions.create({ model, prompt: "Hello", max_tokens: 12, temperature: 1.0, seed: 42 });
  assert(a.choices[0].text === b.choices[0].text);
});

await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model: chatModel || model, max_tokens: 4, temperature: 0,
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello!" }],
  });
  assert(r.object === "chat.completion" && r.choices[0].message.role === "assistant", JSON.stringify(r));
  assert(r.usage.completion_tokens === 4);
});

await check("chat.completions.create stream with usage", async () => {
  const stream = await client.chat.completions.create({
    model: chatModel || model, max_tokens: 4, temperature: 0, stream: true,
    stream_options: { include_usage: true }, messages: [{ role: "user", content: "Hello!" }],
  });
  let text = "", usage = null, role = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    role = role || c.choices[0].delta.role;
    text += c.choices[0].delta.content ?? "";
  }
  const whole = await client.chat.completions.create({
    model: chatModel || model, max_tokens: 4, temperature: 0, messages: [{ role: "user", content: "Hello!" }],
  });
  assert(role === "assistant" && usage && usage.completion_tokens === 4, JSON.stringify(usage));
  assert(text === whole.choices[0].message.content, `"${text}" vs "${whole.choices[0].message.content}"`);
});

await check("embeddings.create", async () => {
  const r = await client.embeddings.create({ model: chatModel || model, input: ["hello", "world"], encoding_format: "float" });
  assert(r.data.length === 2 && r.data[1].index === 1, JSON.stringify(r).slice(0, 200));
  const n = Math.sqrt(r.data[0].embedding.reduce((a, x) => a + x * x, 0));
  assert(Math.abs(n - 1) < 1e-5, `norm ${n}`);
});

await check("models.list", async () => {
  const list = await client.models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  assert(ids.includes(model), ids.join(","));
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
