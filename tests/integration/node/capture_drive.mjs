// Drives the official openai client, LangChain JS and the Vercel AI SDK, with their default
// settings, against tests/integration/capture_server.py, to record what each really sends.
// usage: node capture_drive.mjs BASE_URL      (the capture server's root, no /v1)
// Each scenario is announced with POST BASE_URL/__label first, so the capture's records carry
// "client: scenario". Prints one line per scenario (ok / ERR with the client's error).
import OpenAI from "openai";
import { zodResponseFormat, zodTextFormat, zodFunction } from "openai/helpers/zod";
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { tool as lcTool } from "@langchain/core/tools";
import { HumanMessage, SystemMessage, ToolMessage } from "@langchain/core/messages";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, generateObject, streamObject, embed, embedMany, tool, Output, stepCountIs } from "ai";
import { z } from "zod";

const base = process.argv[2];
const baseURL = `${base}/v1`;
const model = "m", embModel = "e";
let errors = 0;

async function label(l) {
  await fetch(`${base}/__label`, { method: "POST", body: JSON.stringify({ label: l }) });
}
async function scenario(name, fn) {
  await label(name);
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    errors++;
    console.log(`ERR  ${name}: ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e}`);
  }
}

const weatherSchema = z.object({
  city: z.string().describe("the city"),
  unit: z.enum(["celsius", "fahrenheit"]),
});
const personSchema = z.object({
  name: z.string(),
  age: z.number().int().min(0).max(150),
  mood: z.enum(["happy", "sad"]),
});
const weatherJSON = {
  type: "object",
  properties: { city: { type: "string", description: "the city" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
  required: ["city", "unit"], additionalProperties: false,
};
const msgs = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello!" }];

// ---- the official openai client ------------------------------------------------------------
const oa = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0 });
await scenario("openai: chat", () => oa.chat.completions.create({ model, messages: msgs }));
await scenario("openai: chat stream", async () => {
  const s = await oa.chat.completions.create({ model, messages: msgs, stream: true });
  for await (const _ of s);
});
await scenario("openai: chat stream helper (chat.completions.stream)", async () => {
  const s = oa.chat.completions.stream({ model, messages: msgs });
  for await (const _ of s);
  await s.finalChatCompletion();
});
await scenario("openai: embeddings single", () => oa.embeddings.create({ model: embModel, input: "hello" }));
await scenario("openai: embeddings batch", () => oa.embeddings.create({ model: embModel, input: ["hello", "world"] }));
await scenario("openai: tools required + follow-up", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: weatherJSON, strict: true } }];
  const messages = [{ role: "user", content: "Weather in Paris?" }];
  const r = await oa.chat.completions.create({ model, messages, tools, tool_choice: "required" });
  const m = r.choices[0].message;
  await oa.chat.completions.create({ model, tools, messages: [...messages, m,
    { role: "tool", tool_call_id: m.tool_calls[0].id, content: "{\"temp\": 21}" }] });
});
await scenario("openai: tools named function", () => oa.chat.completions.create({
  model, messages: [{ role: "user", content: "Weather?" }],
  tools: [{ type: "function", function: { name: "get_weather", parameters: weatherJSON } }],
  tool_choice: { type: "function", function: { name: "get_weather" } },
}));
await scenario("openai: tools parse with zodFunction", () => oa.chat.completions.parse({
  model, messages: [{ role: "user", content: "Weather?" }],
  tools: [zodFunction({ name: "get_weather", parameters: weatherSchema })], tool_choice: "required",
}));
await scenario("openai: tools stream", async () => {
  const s = await oa.chat.completions.create({ model, messages: [{ role: "user", content: "Weather?" }], stream: true,
    tools: [{ type: "function", function: { name: "get_weather", parameters: weatherJSON } }], tool_choice: "required" });
  for await (const _ of s);
});
await scenario("openai: structured chat.completions.parse zodResponseFormat", async () => {
  const r = await oa.chat.completions.parse({ model, messages: [{ role: "user", content: "A person" }],
    response_format: zodResponseFormat(personSchema, "person") });
  if (!r.choices[0].message.parsed) throw new Error("no parsed");
});
await scenario("openai: structured stream (chat.completions.stream + zodResponseFormat)", async () => {
  const s = oa.chat.completions.stream({ model, messages: [{ role: "user", content: "A person" }],
    response_format: zodResponseFormat(personSchema, "person") });
  for await (const _ of s);
  await s.finalChatCompletion();
});
await scenario("openai: responses.create", () => oa.responses.create({ model, input: "Hello!" }));
await scenario("openai: responses.create instructions", () => oa.responses.create({ model, instructions: "Be brief.", input: "Hello!" }));
await scenario("openai: responses.create stream", async () => {
  const s = await oa.responses.create({ model, input: "Hello!", stream: true });
  for await (const _ of s);
});
await scenario("openai: responses.stream helper", async () => {
  const s = oa.responses.stream({ model, input: "Hello!" });
  for await (const _ of s);
  await s.finalResponse();
});
await scenario("openai: responses previous_response_id", async () => {
  const r = await oa.responses.create({ model, input: "My name is Ada." });
  await oa.responses.create({ model, input: "What is my name?", previous_response_id: r.id });
});
await scenario("openai: responses input messages array", () => oa.responses.create({ model,
  input: [{ role: "developer", content: "Be brief." }, { role: "user", content: "Hello!" }] }));
await scenario("openai: responses tools + function_call_output", async () => {
  const tools = [{ type: "function", name: "get_weather", description: "Weather in a city", parameters: weatherJSON, strict: true }];
  const r = await oa.responses.create({ model, input: "Weather in Paris?", tools, tool_choice: "required" });
  const fc = r.output.find((o) => o.type === "function_call");
  await oa.responses.create({ model, tools, previous_response_id: r.id,
    input: [{ type: "function_call_output", call_id: fc.call_id, output: "{\"temp\": 21}" }] });
});
await scenario("openai: responses.parse zodTextFormat", () => oa.responses.parse({ model, input: "A person",
  text: { format: zodTextFormat(personSchema, "person") } }));

// ---- LangChain JS ---------------------------------------------------------------------------
const lc = new ChatOpenAI({ model, apiKey: "none", configuration: { baseURL }, maxRetries: 0 });
const lcWeather = lcTool(async ({ city }) => `21 degrees in ${city}`, {
  name: "get_weather", description: "Weather in a city", schema: weatherSchema,
});
await scenario("langchain: invoke", () => lc.invoke([new SystemMessage("Be brief."), new HumanMessage("Hello!")]));
await scenario("langchain: stream", async () => {
  for await (const _ of await lc.stream("Hello!"));
});
await scenario("langchain: embedQuery", () =>
  new OpenAIEmbeddings({ model: embModel, apiKey: "none", configuration: { baseURL }, maxRetries: 0 }).embedQuery("hello"));
await scenario("langchain: embedDocuments", () =>
  new OpenAIEmbeddings({ model: embModel, apiKey: "none", configuration: { baseURL }, maxRetries: 0 }).embedDocuments(["hello", "world"]));
await scenario("langchain: bindTools (default tool_choice) + ToolMessage follow-up", async () => {
  const bound = lc.bindTools([lcWeather]);
  const q = new HumanMessage("Weather in Paris?");
  const ai = await bound.invoke([q]);
  if (!ai.tool_calls?.length) throw new Error("no tool_calls");
  await bound.invoke([q, ai, new ToolMessage({ tool_call_id: ai.tool_calls[0].id, content: "21 degrees" })]);
});
await scenario("langchain: bindTools tool_choice required", () => lc.bindTools([lcWeather], { tool_choice: "required" }).invoke("Weather?"));
await scenario("langchain: bindTools tool_choice by name", () => lc.bindTools([lcWeather], { tool_choice: "get_weather" }).invoke("Weather?"));
await scenario("langchain: bindTools stream", async () => {
  for await (const _ of await lc.bindTools([lcWeather], { tool_choice: "required" }).stream("Weather?"));
});
await scenario("langchain: withStructuredOutput (default method)", async () => {
  const r = await lc.withStructuredOutput(personSchema).invoke("A person");
  if (!r || typeof r.age !== "number") throw new Error(JSON.stringify(r));
});
await scenario("langchain: withStructuredOutput name+strict", () => lc.withStructuredOutput(personSchema, { name: "person", strict: true }).invoke("A person"));
await scenario("langchain: withStructuredOutput functionCalling", () => lc.withStructuredOutput(personSchema, { method: "functionCalling" }).invoke("A person"));
await scenario("langchain: withStructuredOutput stream", async () => {
  for await (const _ of await lc.withStructuredOutput(personSchema).stream("A person"));
});
const lct = new ChatOpenAI({ model, apiKey: "none", configuration: { baseURL }, maxRetries: 0, temperature: 0, maxTokens: 24, seed: 1 });
await scenario("langchain(temperature 0, maxTokens 24, seed 1): invoke", () => lct.invoke("Hello!"));
await scenario("langchain(temperature 0, maxTokens 24, seed 1): stream", async () => {
  for await (const _ of await lct.stream("Hello!"));
});
const lcr = new ChatOpenAI({ model, apiKey: "none", configuration: { baseURL }, maxRetries: 0, useResponsesApi: true });
await scenario("langchain(useResponsesApi): invoke", () => lcr.invoke([new SystemMessage("Be brief."), new HumanMessage("Hello!")]));
await scenario("langchain(useResponsesApi): stream", async () => {
  for await (const _ of await lcr.stream("Hello!"));
});
await scenario("langchain(useResponsesApi): bindTools required", () => lcr.bindTools([lcWeather], { tool_choice: "required" }).invoke("Weather?"));
await scenario("langchain(useResponsesApi, temperature 0, maxTokens 24): invoke", () =>
  new ChatOpenAI({ model, apiKey: "none", configuration: { baseURL }, maxRetries: 0, useResponsesApi: true, temperature: 0, maxTokens: 24 }).invoke("Hello!"));
await scenario("langchain(useResponsesApi): withStructuredOutput", () => lcr.withStructuredOutput(personSchema).invoke("A person"));

// ---- the Vercel AI SDK ----------------------------------------------------------------------
const provider = createOpenAI({ baseURL, apiKey: "none" });
const weatherTool = tool({ description: "Weather in a city", inputSchema: weatherSchema,
  execute: async ({ city }) => ({ city, temp: 21 }) });
for (const [kind, mdl] of [["ai-sdk openai(id)", provider(model)], ["ai-sdk openai.chat(id)", provider.chat(model)]]) {
  await scenario(`${kind}: generateText`, () => generateText({ model: mdl, system: "Be brief.", prompt: "Hello!", maxRetries: 0 }));
  await scenario(`${kind}: generateText maxOutputTokens 24, temperature 0, seed 1`, () => generateText({ model: mdl,
    prompt: "Hello!", maxOutputTokens: 24, temperature: 0, seed: 1, maxRetries: 0 }));
  await scenario(`${kind}: streamText`, async () => {
    const r = streamText({ model: mdl, prompt: "Hello!", maxRetries: 0 });
    for await (const _ of r.textStream);
  });
  await scenario(`${kind}: tools toolChoice required (one step)`, () => generateText({ model: mdl, prompt: "Weather in Paris?",
    tools: { get_weather: weatherTool }, toolChoice: "required", maxRetries: 0 }));
  await scenario(`${kind}: tools toolChoice named`, () => generateText({ model: mdl, prompt: "Weather in Paris?",
    tools: { get_weather: weatherTool }, toolChoice: { type: "tool", toolName: "get_weather" }, maxRetries: 0 }));
  await scenario(`${kind}: tools auto, stopWhen stepCountIs(2) (follow-up turn)`, () => generateText({ model: mdl,
    prompt: "Weather in Paris?", tools: { get_weather: weatherTool }, stopWhen: stepCountIs(2), maxRetries: 0 }));
  await scenario(`${kind}: streamText tools required`, async () => {
    const r = streamText({ model: mdl, prompt: "Weather?", tools: { get_weather: weatherTool }, toolChoice: "required", maxRetries: 0 });
    for await (const _ of r.fullStream);
  });
  await scenario(`${kind}: generateObject`, () => generateObject({ model: mdl, schema: personSchema, prompt: "A person", maxRetries: 0 }));
  await scenario(`${kind}: streamObject`, async () => {
    const r = streamObject({ model: mdl, schema: personSchema, prompt: "A person", maxRetries: 0 });
    for await (const _ of r.partialObjectStream);
    await r.object;
  });
  await scenario(`${kind}: generateText output Output.object`, async () => {
    const r = await generateText({ model: mdl, output: Output.object({ schema: personSchema }), prompt: "A person", maxRetries: 0 });
    if (typeof r.output?.age !== "number") throw new Error(JSON.stringify(r.output));
  });
  await scenario(`${kind}: streamText output Output.object`, async () => {
    const r = streamText({ model: mdl, output: Output.object({ schema: personSchema }), prompt: "A person", maxRetries: 0 });
    for await (const _ of r.partialOutputStream);
    await r.output;
  });
}
await scenario("ai-sdk: embed", () => embed({ model: provider.embedding(embModel), value: "hello", maxRetries: 0 }));
await scenario("ai-sdk: embedMany", () => embedMany({ model: provider.embedding(embModel), values: ["hello", "world"], maxRetries: 0 }));
await label("");
console.log(`${errors} scenarios raised errors`);
