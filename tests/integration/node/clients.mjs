// Today's popular OpenAI clients against a running `shoal serve`, with their default settings:
// the official openai package, LangChain JS (@langchain/openai) and the Vercel AI SDK (ai +
// @ai-sdk/openai). Per client: chat, streaming (joined chunks == the whole answer at
// temperature 0), embeddings (the client's default encoding, equal to the float form), tools
// (a forced call with arguments valid against the declared schema, finish_reason tool_calls, a
// follow-up turn with the tool's result), structured output (json_schema, strict; also
// streamed), and the Responses API (the AI SDK's default model, client.responses incl.
// streaming, instructions, previous_response_id, function calls, text.format).
//
// usage: node clients.mjs BASE_URL CHAT_MODEL EMBEDDING_MODEL    (BASE_URL ends in /v1)
// Prints one line per check ("ok   node: ..." / "FAIL node: ...") and "N passed, M failed";
// exits 1 on any failure. The checks follow OpenAI's documented behaviour; the models may be
// random-weight ones (noise text), so tool calls and JSON are checked for validity, not content.
// The Responses API checks come last.
import OpenAI from "openai";
import { zodResponseFormat, zodTextFormat, zodFunction } from "openai/helpers/zod";
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { tool as lcTool } from "@langchain/core/tools";
import { AIMessageChunk, HumanMessage, SystemMessage, ToolMessage } from "@langchain/core/messages";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, generateObject, embed, embedMany, tool, Output, stepCountIs } from "ai";
import { z } from "zod";

const [baseURL, model, embModel] = process.argv.slice(2);
const apiKey = process.env.SHOAL_API_KEY || "none";
const TIMEOUT_MS = Number(process.env.CLIENTS_CHECK_TIMEOUT_MS || 20000);
const N = 24; // max tokens of the short answers
let passed = 0, failed = 0;

async function check(name, fn) {
  let timer;
  try {
    await Promise.race([fn(), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS); })]);
    passed++;
    console.log(`ok   node: ${name}`);
  } catch (e) {
    failed++;
    const msg = e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : String(e);
    console.log(`FAIL node: ${name}: ${msg.slice(0, 600)}`);
  } finally {
    clearTimeout(timer);
  }
}
function assert(c, msg) { if (!c) throw new Error(msg || "assertion failed"); }
const js = (x) => JSON.stringify(x)?.slice(0, 400);
const close = (a, b) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= 1e-6 * Math.max(1, Math.abs(b[i])));
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

// ---- the schemas: bounded values only (enums, bounded integers, booleans), so that a
// random-weight model's constrained output always ends within a few tokens -------------------
const weatherSchema = z.strictObject({
  city: z.enum(["Paris", "London", "Tokyo"]).describe("the city"),
  unit: z.enum(["celsius", "fahrenheit"]),
  days: z.number().int().min(1).max(7).describe("how many days of forecast"),
});
const weatherJSON = {
  type: "object",
  properties: {
    city: { type: "string", enum: ["Paris", "London", "Tokyo"], description: "the city" },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7, description: "how many days of forecast" },
  },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const personSchema = z.strictObject({
  mood: z.enum(["happy", "sad", "calm"]),
  age: z.number().int().min(0).max(120),
  likes_tea: z.boolean(),
});
function valid(schema, value, what) {
  const r = schema.safeParse(value);
  assert(r.success, `${what} does not validate: ${js(value)}: ${r.error?.issues?.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}
function validJSON(schema, text, what) {
  let v;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${what} is not JSON: ${js(text)}`); }
  return valid(schema, v, what);
}

// the embedding model's size, from /v1/models
const models = await (await fetch(`${baseURL}/models`, { headers: { Authorization: `Bearer ${apiKey}` } })).json();
const embDim = models.data.find((m) => m.id === embModel)?.meta?.dim;

// =============================================================================================
// the official openai client
// =============================================================================================
const oa = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const chatMsgs = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello! Tell me about the sea." }];
let oaWhole;
const oaTools = [{ type: "function", function: { name: "get_weather", description: "The weather forecast of a city", parameters: weatherJSON, strict: true } }];

await check("openai: chat.completions.create: text, usage, finish_reason", async () => {
  const r = await oa.chat.completions.create({ model, messages: chatMsgs, max_completion_tokens: N, temperature: 0 });
  assert(r.object === "chat.completion" && r.choices.length === 1, js(r));
  const c = r.choices[0];
  assert(c.message.role === "assistant" && typeof c.message.content === "string" && c.message.content.length > 0, js(c));
  assert(["stop", "length"].includes(c.finish_reason), c.finish_reason);
  const u = r.usage;
  assert(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= N && u.total_tokens === u.prompt_tokens + u.completion_tokens, js(u));
  oaWhole = c.message.content;
});

await check("openai: chat.completions.create with nothing but model and messages (no limit)", async () => {
  const r = await oa.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }] });
  assert(typeof r.choices[0].message.content === "string" && r.usage.completion_tokens > 0, js(r));
  assert(["stop", "length"].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
});

await check("openai: chat stream: several chunks joining to the whole answer", async () => {
  const s = await oa.chat.completions.create({ model, messages: chatMsgs, max_completion_tokens: N, temperature: 0, stream: true });
  let text = "", n = 0, finish = null, role = null;
  for await (const c of s) {
    if (!c.choices.length) continue;
    role = role || c.choices[0].delta.role;
    if (c.choices[0].delta.content) { n++; text += c.choices[0].delta.content; }
    finish = c.choices[0].finish_reason ?? finish;
  }
  assert(role === "assistant" && n >= 2, `role ${role}, ${n} content chunks`);
  assert(["stop", "length"].includes(finish), finish);
  assert(text === oaWhole, `stream ${js(text)} vs whole ${js(oaWhole)}`);
});

await check("openai: chat.completions.stream helper with include_usage", async () => {
  const s = oa.chat.completions.stream({ model, messages: chatMsgs, max_completion_tokens: N, temperature: 0, stream_options: { include_usage: true } });
  let deltas = "";
  s.on("content", (d) => { deltas += d; });
  const r = await s.finalChatCompletion();
  assert(r.choices[0].message.content === oaWhole && deltas === oaWhole, js(r.choices[0].message.content));
  assert(r.usage && r.usage.completion_tokens > 0, js(r.usage));
});

let oaEmb;
await check("openai: embeddings.create default (base64): the model's size, unit length", async () => {
  const r = await oa.embeddings.create({ model: embModel, input: "turn on the kitchen lights" });
  assert(r.object === "list" && r.data.length === 1 && r.data[0].index === 0, js(r));
  oaEmb = r.data[0].embedding;
  assert(Array.isArray(oaEmb) && oaEmb.length === embDim, `length ${oaEmb?.length} vs dim ${embDim}`);
  assert(Math.abs(norm(oaEmb) - 1) < 1e-4, `norm ${norm(oaEmb)}`);
  assert(r.usage.prompt_tokens > 0, js(r.usage));
});

await check("openai: embeddings.create batch default == float form", async () => {
  const input = ["turn on the kitchen lights", "what time is it?"];
  const b = await oa.embeddings.create({ model: embModel, input });
  const f = await oa.embeddings.create({ model: embModel, input, encoding_format: "float" });
  assert(b.data.length === 2 && b.data[1].index === 1, js(b));
  assert(close(b.data[0].embedding, oaEmb), "batch item 0 differs from the single input");
  for (let i = 0; i < 2; i++) assert(close(b.data[i].embedding, f.data[i].embedding), `item ${i}: base64 and float differ`);
  assert(!close(b.data[0].embedding, b.data[1].embedding), "different inputs, equal vectors");
});

const weatherQ = [{ role: "user", content: "What is the weather in Paris for the next three days?" }];
function oaToolCall(r, name = "get_weather") {
  const c = r.choices[0];
  assert(c.finish_reason === "tool_calls", `finish_reason ${c.finish_reason}: ${js(c)}`);
  const tc = c.message.tool_calls;
  assert(Array.isArray(tc) && tc.length >= 1, `no tool_calls: ${js(c.message)}`);
  assert(tc[0].type === "function" && typeof tc[0].id === "string" && tc[0].id.length > 0, js(tc[0]));
  assert(tc[0].function.name === name, `name ${tc[0].function.name}`);
  validJSON(weatherSchema, tc[0].function.arguments, "arguments");
  return c.message;
}

await check("openai: tools, tool_choice required: a valid call, then a tool message follow-up", async () => {
  const r = await oa.chat.completions.create({ model, messages: weatherQ, tools: oaTools, tool_choice: "required", temperature: 0, max_completion_tokens: 200 });
  const m = oaToolCall(r);
  assert(m.content === null || m.content === "", `content ${js(m.content)}`);
  const r2 = await oa.chat.completions.create({ model, tools: oaTools, temperature: 0, max_completion_tokens: N, messages: [...weatherQ, m,
    { role: "tool", tool_call_id: m.tool_calls[0].id, content: JSON.stringify({ temperature: 21, sky: "clear" }) }] });
  assert(r2.choices[0].message.role === "assistant" && r2.usage.prompt_tokens > r.usage.prompt_tokens, js(r2));
  assert(["stop", "length", "tool_calls"].includes(r2.choices[0].finish_reason), r2.choices[0].finish_reason);
});

await check("openai: tools, tool_choice a named function", async () => {
  const tools = [...oaTools, { type: "function", function: { name: "get_time", description: "The time", parameters: { type: "object", properties: {}, required: [], additionalProperties: false } } }];
  const r = await oa.chat.completions.create({ model, messages: weatherQ, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, temperature: 0, max_completion_tokens: 200 });
  oaToolCall(r);
});

await check("openai: tools streamed: deltas join to a valid call, finish_reason tool_calls", async () => {
  const s = await oa.chat.completions.create({ model, messages: weatherQ, tools: oaTools, tool_choice: "required", temperature: 0, max_completion_tokens: 200, stream: true });
  let id = null, name = null, args = "", finish = null, n = 0;
  for await (const c of s) {
    if (!c.choices.length) continue;
    for (const d of c.choices[0].delta.tool_calls || []) {
      if (d.index !== 0) continue;
      n++;
      id = id || d.id; name = name || d.function?.name;
      args += d.function?.arguments || "";
    }
    finish = c.choices[0].finish_reason ?? finish;
  }
  assert(n >= 1 && id && name === "get_weather" && finish === "tool_calls", `id ${id} name ${name} finish ${finish}`);
  validJSON(weatherSchema, args, "streamed arguments");
});

await check("openai: chat.completions.parse with zodFunction (strict): parsed_arguments", async () => {
  const r = await oa.chat.completions.parse({ model, messages: weatherQ, tools: [zodFunction({ name: "get_weather", parameters: weatherSchema })], tool_choice: "required", temperature: 0, max_completion_tokens: 200 });
  const tc = r.choices[0].message.tool_calls?.[0];
  assert(tc && tc.function.name === "get_weather", js(r.choices[0]));
  valid(weatherSchema, tc.function.parsed_arguments, "parsed_arguments");
});

const personQ = [{ role: "user", content: "Describe a person." }];
await check("openai: structured output: chat.completions.parse + zodResponseFormat", async () => {
  const r = await oa.chat.completions.parse({ model, messages: personQ, response_format: zodResponseFormat(personSchema, "person"), temperature: 0, max_completion_tokens: 200 });
  const c = r.choices[0];
  assert(c.finish_reason === "stop", `finish_reason ${c.finish_reason}: ${js(c.message.content)}`);
  validJSON(personSchema, c.message.content, "content");
  valid(personSchema, c.message.parsed, "parsed");
});

await check("openai: structured output streamed (chat.completions.stream): chunks join to valid JSON", async () => {
  const s = oa.chat.completions.stream({ model, messages: personQ, response_format: zodResponseFormat(personSchema, "person"), temperature: 0, max_completion_tokens: 200 });
  let n = 0;
  s.on("content", () => { n++; });
  const r = await s.finalChatCompletion();
  assert(n >= 2, `${n} content chunks`);
  valid(personSchema, r.choices[0].message.parsed, "parsed");
});

await check("openai: response_format json_schema by hand (strict), plain create", async () => {
  const r = await oa.chat.completions.create({ model, messages: personQ, temperature: 0, max_completion_tokens: 200,
    response_format: { type: "json_schema", json_schema: { name: "weather", strict: true, schema: weatherJSON } } });
  validJSON(weatherSchema, r.choices[0].message.content, "content");
});

// =============================================================================================
// LangChain JS
// =============================================================================================
const lcOpts = { model, apiKey, configuration: { baseURL }, maxRetries: 0 };
const lc = new ChatOpenAI({ ...lcOpts, temperature: 0, maxTokens: N });
const lcMsgs = [new SystemMessage("Be brief."), new HumanMessage("Hello! Tell me about the sea.")];
const lcWeather = lcTool(async ({ city }) => `21 degrees in ${city}`, {
  name: "get_weather", description: "The weather forecast of a city", schema: weatherSchema,
});
const lcLong = new ChatOpenAI({ ...lcOpts, temperature: 0, maxTokens: 200 }); // room for a call or a JSON answer
let lcWhole;

await check("langchain: ChatOpenAI.invoke: text, usage_metadata, finish_reason", async () => {
  const m = await lc.invoke(lcMsgs);
  assert(typeof m.content === "string" && m.content.length > 0, js(m.content));
  const u = m.usage_metadata;
  assert(u && u.input_tokens > 0 && u.output_tokens > 0 && u.output_tokens <= N && u.total_tokens === u.input_tokens + u.output_tokens, js(u));
  assert(["stop", "length"].includes(m.response_metadata?.finish_reason), js(m.response_metadata));
  lcWhole = m.content;
});

await check("langchain: invoke with the default settings (no limit, default temperature)", async () => {
  const m = await new ChatOpenAI(lcOpts).invoke("Hi");
  assert(typeof m.content === "string" && m.usage_metadata?.output_tokens > 0, js(m));
});

await check("langchain: stream: several chunks joining to the invoke answer, usage at the end", async () => {
  let text = "", n = 0, usage = null;
  for await (const c of await lc.stream(lcMsgs)) {
    if (typeof c.content === "string" && c.content) { n++; text += c.content; }
    if (c.usage_metadata) usage = c.usage_metadata;
  }
  assert(n >= 2, `${n} chunks`);
  assert(text === lcWhole, `stream ${js(text)} vs invoke ${js(lcWhole)}`);
  assert(usage && usage.output_tokens > 0, js(usage));
});

await check("langchain: OpenAIEmbeddings embedQuery/embedDocuments (default base64) == float form", async () => {
  const e = new OpenAIEmbeddings({ ...lcOpts, model: embModel });
  const q = await e.embedQuery("turn on the kitchen lights");
  assert(q.length === embDim, `length ${q.length}`);
  assert(close(q, oaEmb), "differs from the openai client's vector");
  const d = await e.embedDocuments(["turn on the kitchen lights", "what time is it?"]);
  assert(d.length === 2 && close(d[0], q), "embedDocuments[0] differs from embedQuery");
  const f = await new OpenAIEmbeddings({ ...lcOpts, model: embModel, encodingFormat: "float" }).embedDocuments(["turn on the kitchen lights", "what time is it?"]);
  assert(close(f[0], d[0]) && close(f[1], d[1]), "float and base64 differ");
});

function lcToolCall(m) {
  assert(m.response_metadata?.finish_reason === "tool_calls", `finish_reason ${m.response_metadata?.finish_reason}: ${js(m.content)} ${js(m.invalid_tool_calls)}`);
  assert(m.tool_calls?.length >= 1, `no tool_calls: ${js(m.invalid_tool_calls)}`);
  const tc = m.tool_calls[0];
  assert(tc.name === "get_weather" && tc.id, js(tc));
  valid(weatherSchema, tc.args, "args");
  return tc;
}

await check("langchain: bindTools tool_choice required: a valid call, then a ToolMessage follow-up", async () => {
  const q = new HumanMessage("What is the weather in Paris for the next three days?");
  const ai = await lcLong.bindTools([lcWeather], { tool_choice: "required" }).invoke([q]);
  const tc = lcToolCall(ai);
  const res = await lcWeather.invoke(tc); // a ToolMessage
  assert(res instanceof ToolMessage, "tool did not give a ToolMessage");
  const m2 = await lc.bindTools([lcWeather]).invoke([q, ai, res]);
  assert(typeof m2.content === "string" && m2.usage_metadata?.input_tokens > ai.usage_metadata.input_tokens, js(m2));
});

await check("langchain: bindTools tool_choice by name", async () => {
  const ai = await lcLong.bindTools([lcWeather], { tool_choice: "get_weather" }).invoke("Weather in Tokyo?");
  lcToolCall(ai);
});

await check("langchain: bindTools streamed: chunks concat to a valid call", async () => {
  const bound = lcLong.bindTools([lcWeather], { tool_choice: "required" });
  let acc = null;
  for await (const c of await bound.stream("Weather in London?")) acc = acc ? acc.concat(c) : c;
  assert(acc instanceof AIMessageChunk, "no chunks");
  lcToolCall(acc);
});

await check("langchain: withStructuredOutput (default method: json_schema)", async () => {
  const r = await lcLong.withStructuredOutput(personSchema, { includeRaw: true }).invoke("Describe a person.");
  valid(personSchema, r.parsed, "parsed");
  assert(r.raw.response_metadata?.finish_reason === "stop", js(r.raw.response_metadata));
});

await check("langchain: withStructuredOutput method functionCalling", async () => {
  valid(personSchema, await lcLong.withStructuredOutput(personSchema, { method: "functionCalling" }).invoke("Describe a person."), "parsed");
});

await check("langchain: withStructuredOutput streamed", async () => {
  let last = null, n = 0;
  for await (const c of await lcLong.withStructuredOutput(personSchema).stream("Describe a person.")) { last = c; n++; }
  assert(n >= 1, "no chunks");
  valid(personSchema, last, "the last chunk");
});

// =============================================================================================
// the Vercel AI SDK, chat model (openai.chat)
// =============================================================================================
const provider = createOpenAI({ baseURL, apiKey });
const weatherTool = tool({ description: "The weather forecast of a city", inputSchema: weatherSchema,
  execute: async ({ city, days }) => ({ city, days, temperature: 21 }) });

async function aiSdkSection(kind, mdl, finishOf) {
  let whole;
  await check(`${kind}: generateText: text, usage, finishReason`, async () => {
    const r = await generateText({ model: mdl, system: "Be brief.", prompt: "Hello! Tell me about the sea.", maxOutputTokens: N, temperature: 0, maxRetries: 0 });
    assert(typeof r.text === "string" && r.text.length > 0, js(r.text));
    assert(r.usage.inputTokens > 0 && r.usage.outputTokens > 0 && r.usage.outputTokens <= N, js(r.usage));
    assert(["stop", "length"].includes(r.finishReason), r.finishReason);
    whole = r.text;
  });
  await check(`${kind}: generateText with the default settings (no limit)`, async () => {
    const r = await generateText({ model: mdl, prompt: "Hi", maxRetries: 0 });
    assert(typeof r.text === "string" && r.usage.outputTokens > 0, js(r.usage));
  });
  await check(`${kind}: streamText: several chunks joining to the generateText answer`, async () => {
    const r = streamText({ model: mdl, system: "Be brief.", prompt: "Hello! Tell me about the sea.", maxOutputTokens: N, temperature: 0, maxRetries: 0,
      onError: () => {} });
    let text = "", n = 0;
    for await (const t of r.textStream) { if (t) { n++; text += t; } }
    assert(n >= 2, `${n} chunks`);
    assert(text === whole, `stream ${js(text)} vs whole ${js(whole)}`);
    const u = await r.usage;
    assert(u.outputTokens > 0, js(u));
  });
  const q = "What is the weather in Paris for the next three days?";
  await check(`${kind}: tools, toolChoice required: a valid call, finishReason tool-calls, then the follow-up turn`, async () => {
    const r = await generateText({ model: mdl, prompt: q, tools: { get_weather: weatherTool }, toolChoice: "required", temperature: 0, maxOutputTokens: 200, maxRetries: 0 });
    assert(r.finishReason === "tool-calls", `finishReason ${r.finishReason}: ${js(r.text)}`);
    const tc = r.toolCalls[0];
    assert(tc && tc.toolName === "get_weather" && !tc.invalid && tc.toolCallId, js(r.toolCalls));
    valid(weatherSchema, tc.input, "input");
    assert(r.toolResults[0]?.output?.temperature === 21, js(r.toolResults));
    const r2 = await generateText({ model: mdl, messages: [{ role: "user", content: q }, ...r.response.messages], tools: { get_weather: weatherTool },
      toolChoice: "none", temperature: 0, maxOutputTokens: N, maxRetries: 0 });
    assert(["stop", "length"].includes(r2.finishReason) && r2.usage.inputTokens > r.usage.inputTokens, `${r2.finishReason} ${js(r2.usage)}`);
  });
  await check(`${kind}: tools, toolChoice a named tool`, async () => {
    const r = await generateText({ model: mdl, prompt: q, tools: { get_weather: weatherTool, get_time: tool({ description: "The time", inputSchema: z.object({}) }) },
      toolChoice: { type: "tool", toolName: "get_weather" }, temperature: 0, maxOutputTokens: 200, maxRetries: 0 });
    assert(r.toolCalls[0]?.toolName === "get_weather" && !r.toolCalls[0].invalid, js(r.toolCalls));
    valid(weatherSchema, r.toolCalls[0].input, "input");
  });
  await check(`${kind}: streamText tools required: a valid tool-call part`, async () => {
    const r = streamText({ model: mdl, prompt: q, tools: { get_weather: weatherTool }, toolChoice: "required", temperature: 0, maxOutputTokens: 200, maxRetries: 0, onError: () => {} });
    const calls = [];
    for await (const p of r.fullStream) {
      if (p.type === "tool-call") calls.push(p);
      if (p.type === "error") throw p.error;
    }
    assert(calls.length >= 1 && calls[0].toolName === "get_weather" && !calls[0].invalid, js(calls));
    valid(weatherSchema, calls[0].input, "input");
    assert((await r.finishReason) === "tool-calls", await r.finishReason);
  });
  await check(`${kind}: generateText with output Output.object`, async () => {
    const r = await generateText({ model: mdl, output: Output.object({ schema: personSchema }), prompt: "Describe a person.", temperature: 0, maxOutputTokens: 200, maxRetries: 0 });
    valid(personSchema, r.output, "output");
    assert(r.finishReason === "stop", r.finishReason);
  });
  await check(`${kind}: streamText with output Output.object: partial outputs, a valid last one`, async () => {
    const r = streamText({ model: mdl, output: Output.object({ schema: personSchema }), prompt: "Describe a person.", temperature: 0, maxOutputTokens: 200, maxRetries: 0, onError: () => {} });
    let n = 0;
    for await (const _ of r.partialOutputStream) n++;
    assert(n >= 1, "no partial outputs");
    valid(personSchema, await r.output, "output");
  });
  await check(`${kind}: generateObject (deprecated, still common)`, async () => {
    const r = await generateObject({ model: mdl, schema: personSchema, prompt: "Describe a person.", temperature: 0, maxOutputTokens: 200, maxRetries: 0 });
    valid(personSchema, r.object, "object");
  });
  await check(`${kind}: the agent loop: stopWhen stepCountIs(2), a call forced in step 1, the result answered in step 2`, async () => {
    const r = await generateText({ model: mdl, prompt: q, tools: { get_weather: weatherTool }, stopWhen: stepCountIs(2), temperature: 0, maxOutputTokens: 200, maxRetries: 0,
      prepareStep: ({ stepNumber }) => (stepNumber === 0 ? { toolChoice: "required" } : { toolChoice: "none" }) });
    assert(r.steps.length === 2, `${r.steps.length} steps`);
    assert(r.steps[0].finishReason === "tool-calls" && r.steps[0].toolResults.length === 1, `step 1: ${r.steps[0].finishReason}`);
    assert(["stop", "length"].includes(r.steps[1].finishReason) && r.steps[1].usage.inputTokens > r.steps[0].usage.inputTokens, `step 2: ${r.steps[1].finishReason}`);
  });
}

// silence the AI SDK's console warnings (generateObject's deprecation)
globalThis.AI_SDK_LOG_WARNINGS = false;
await aiSdkSection("ai-sdk openai.chat", provider.chat(model));

await check("ai-sdk: embed / embedMany (default: float) == the openai client's base64 vectors", async () => {
  const e = provider.embedding(embModel);
  const one = await embed({ model: e, value: "turn on the kitchen lights", maxRetries: 0 });
  assert(one.embedding.length === embDim && close(one.embedding, oaEmb), `length ${one.embedding.length}`);
  const many = await embedMany({ model: e, values: ["turn on the kitchen lights", "what time is it?"], maxRetries: 0 });
  assert(many.embeddings.length === 2 && close(many.embeddings[0], oaEmb), "embedMany[0] differs");
  assert(many.usage.tokens > 0, js(many.usage));
});

// =============================================================================================
// the Responses API (last: the newest part of the server)
// =============================================================================================
function respText(r) {
  return r.output.filter((o) => o.type === "message").flatMap((o) => o.content).filter((c) => c.type === "output_text").map((c) => c.text).join("");
}
function respDone(r, what) {
  assert(r.object === "response" && typeof r.id === "string" && r.id.length > 0, `${what}: ${js(r)}`);
  assert(r.status === "completed" || (r.status === "incomplete" && r.incomplete_details?.reason === "max_output_tokens"), `${what}: status ${r.status} ${js(r.incomplete_details)}`);
  const u = r.usage;
  assert(u && u.input_tokens > 0 && u.output_tokens > 0 && u.total_tokens === u.input_tokens + u.output_tokens, `${what}: usage ${js(u)}`);
}
let rWhole;
await check("openai: responses.create: a message with output_text, usage, status", async () => {
  const r = await oa.responses.create({ model, input: "Hello! Tell me about the sea.", max_output_tokens: N, temperature: 0 });
  respDone(r, "response");
  assert(r.output.some((o) => o.type === "message" && o.role === "assistant"), js(r.output));
  assert(typeof r.output_text === "string" && r.output_text.length > 0 && r.output_text === respText(r), js(r.output_text));
  assert(r.usage.output_tokens <= N, js(r.usage));
  rWhole = r.output_text;
});

await check("openai: responses.create with nothing but model and input (no limit)", async () => {
  const r = await oa.responses.create({ model, input: "Hi" });
  respDone(r, "response");
});

await check("openai: responses.create instructions: echoed, and they change the prompt", async () => {
  const a = await oa.responses.create({ model, input: "Hello! Tell me about the sea.", max_output_tokens: 4, temperature: 0 });
  const r = await oa.responses.create({ model, instructions: "Be brief.", input: "Hello! Tell me about the sea.", max_output_tokens: 4, temperature: 0 });
  respDone(r, "response");
  assert(r.instructions === "Be brief.", js(r.instructions));
  assert(r.usage.input_tokens > a.usage.input_tokens, `${r.usage.input_tokens} vs ${a.usage.input_tokens}`);
});

await check("openai: responses.create stream: created .. output_text.delta .. completed, joined == whole", async () => {
  const s = await oa.responses.create({ model, input: "Hello! Tell me about the sea.", max_output_tokens: N, temperature: 0, stream: true });
  const types = [];
  let text = "", fin = null, lastSeq = -1, seqOk = true;
  for await (const e of s) {
    types.push(e.type);
    if (typeof e.sequence_number === "number") { if (e.sequence_number <= lastSeq) seqOk = false; lastSeq = e.sequence_number; }
    if (e.type === "response.output_text.delta") text += e.delta;
    if (e.type === "response.completed" || e.type === "response.incomplete") fin = e.response;
  }
  assert(types[0] === "response.created", types.slice(0, 3).join(","));
  assert(types.filter((t) => t === "response.output_text.delta").length >= 2, types.join(","));
  for (const t of ["response.output_item.added", "response.content_part.added", "response.output_text.done", "response.content_part.done", "response.output_item.done"])
    assert(types.includes(t), `no ${t}: ${types.join(",")}`);
  assert(fin && seqOk, `final ${js(fin)}, sequence numbers increasing ${seqOk}`);
  respDone(fin, "final response");
  assert(text === rWhole && respText(fin) === rWhole, `stream ${js(text)} vs whole ${js(rWhole)}`);
});

await check("openai: responses.stream helper: finalResponse", async () => {
  const s = oa.responses.stream({ model, input: "Hello! Tell me about the sea.", max_output_tokens: N, temperature: 0 });
  let deltas = "";
  s.on("response.output_text.delta", (e) => { deltas += e.delta; });
  const r = await s.finalResponse();
  assert(r.output_text === rWhole && deltas === rWhole, js(r.output_text));
});

await check("openai: responses previous_response_id: the earlier turn is part of the prompt", async () => {
  const a = await oa.responses.create({ model, input: "My name is Ada.", max_output_tokens: 8, temperature: 0 });
  const b = await oa.responses.create({ model, input: "What is my name?", previous_response_id: a.id, max_output_tokens: 8, temperature: 0 });
  respDone(b, "second response");
  assert(b.previous_response_id === a.id, js(b.previous_response_id));
  assert(b.usage.input_tokens > a.usage.input_tokens + 2, `${b.usage.input_tokens} vs ${a.usage.input_tokens}`);
});

await check("openai: responses input as messages (developer + user)", async () => {
  const r = await oa.responses.create({ model, max_output_tokens: 8, temperature: 0,
    input: [{ role: "developer", content: "Be brief." }, { role: "user", content: [{ type: "input_text", text: "Hello!" }] }] });
  respDone(r, "response");
});

const respTools = [{ type: "function", name: "get_weather", description: "The weather forecast of a city", parameters: weatherJSON, strict: true }];
await check("openai: responses tools required: a valid function_call, then function_call_output", async () => {
  const r = await oa.responses.create({ model, input: "What is the weather in Paris for the next three days?", tools: respTools, tool_choice: "required", temperature: 0, max_output_tokens: 200 });
  assert(r.status === "completed", `status ${r.status}`);
  const fc = r.output.find((o) => o.type === "function_call");
  assert(fc && fc.name === "get_weather" && fc.call_id && typeof fc.arguments === "string", js(r.output));
  validJSON(weatherSchema, fc.arguments, "arguments");
  const r2 = await oa.responses.create({ model, tools: respTools, previous_response_id: r.id, temperature: 0, max_output_tokens: N,
    input: [{ type: "function_call_output", call_id: fc.call_id, output: JSON.stringify({ temperature: 21 }) }] });
  respDone(r2, "follow-up");
  assert(r2.usage.input_tokens > r.usage.input_tokens, `${r2.usage.input_tokens} vs ${r.usage.input_tokens}`);
});

await check("openai: responses tools streamed: function_call_arguments deltas join to valid arguments", async () => {
  const s = await oa.responses.create({ model, input: "Weather in Tokyo?", tools: respTools, tool_choice: { type: "function", name: "get_weather" }, temperature: 0, max_output_tokens: 200, stream: true });
  let args = "", done = null, fin = null;
  for await (const e of s) {
    if (e.type === "response.function_call_arguments.delta") args += e.delta;
    if (e.type === "response.function_call_arguments.done") done = e.arguments;
    if (e.type === "response.completed") fin = e.response;
  }
  assert(fin && done === args, `done ${js(done)} vs deltas ${js(args)}`);
  validJSON(weatherSchema, args, "arguments");
  assert(fin.output.some((o) => o.type === "function_call" && o.arguments === args), js(fin.output));
});

await check("openai: responses.parse with zodTextFormat (text.format json_schema)", async () => {
  const r = await oa.responses.parse({ model, input: "Describe a person.", text: { format: zodTextFormat(personSchema, "person") }, temperature: 0, max_output_tokens: 200 });
  assert(r.status === "completed", `status ${r.status}`);
  valid(personSchema, r.output_parsed, "output_parsed");
});

await check("openai: responses streamed with text.format json_schema: valid JSON", async () => {
  const s = oa.responses.stream({ model, input: "Describe a person.", text: { format: zodTextFormat(personSchema, "person") }, temperature: 0, max_output_tokens: 200 });
  const r = await s.finalResponse();
  validJSON(personSchema, r.output_text, "output_text");
});

// LangChain sends POST /v1/responses with `text: {}` always, tools with `strict: null`, and
// (1.6.0) drops a string tool_choice ("required") on this path: a named function is sent.
const lcr = new ChatOpenAI({ ...lcOpts, temperature: 0, maxTokens: 200, useResponsesApi: true });
await check("langchain(useResponsesApi): invoke: text and usage", async () => {
  const m = await lcr.invoke([new SystemMessage("Be brief."), new HumanMessage("Hello!")]);
  assert(typeof m.text === "string" && m.text.length > 0 && m.usage_metadata?.output_tokens > 0, js(m));
});
await check("langchain(useResponsesApi): bindTools tool_choice by name: a valid call", async () => {
  const ai = await lcr.bindTools([lcWeather], { tool_choice: "get_weather" }).invoke("Weather in Paris?");
  assert(ai.tool_calls?.[0]?.name === "get_weather", `tool_calls ${js(ai.tool_calls)} invalid ${js(ai.invalid_tool_calls)} text ${js(ai.text)}`);
  valid(weatherSchema, ai.tool_calls[0].args, "args");
});
await check("langchain(useResponsesApi): withStructuredOutput (text.format json_schema)", async () => {
  valid(personSchema, await lcr.withStructuredOutput(personSchema).invoke("Describe a person."), "structured");
});

await aiSdkSection("ai-sdk openai(id) (Responses API)", provider(model));

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
