// End-to-end test of a running klserve (embedded default model) with the official `openai` npm
// client and plain fetch: chat, streaming with usage, completions with logprobs, seeded
// reproducibility, tools through the template path, error statuses, the serving.md 6.3 bad
// inputs, and 32 concurrent streaming greedy requests equal to the same requests run one by one.
//   node openai_e2e.mjs http://127.0.0.1:PORT
import OpenAI from "openai";
import assert from "node:assert/strict";

const base = process.argv[2];
if (!base) {
  console.error("usage: node openai_e2e.mjs BASE_URL");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const results = [];

async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`PASS ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}

async function post(path, body, headers = {}) {
  const r = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, json, text, headers: r.headers };
}

const models = await client.models.list();
const model = models.data[0].id;
const user = (content) => [{ role: "user", content }];

// Serving stays healthy after each bad input: a small request must still succeed.
async function stillServing() {
  const r = await client.chat.completions.create({ model, messages: user("ping"), max_tokens: 2 });
  assert.equal(r.choices.length, 1);
}

await check("models list names the served model", async () => {
  assert.ok(model.length > 0);
  assert.equal(models.data[0].object, "model");
});

await check("chat completion: body, usage matches /tokenize", async () => {
  const messages = user("Tell me about the French revolution.");
  const r = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  const tok = await post("/tokenize", { model, messages, add_generation_prompt: true });
  assert.equal(tok.status, 200);
  assert.equal(r.usage.prompt_tokens, tok.json.count);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

await check("streaming chat: role chunk, deltas equal the non-streamed text, usage chunk", async () => {
  const req = { model, messages: user("Write a haiku about rivers."), max_tokens: 20, temperature: 0 };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = "", first = null, finish = null, usage = null, n = 0;
  for await (const chunk of stream) {
    n++;
    if (chunk.choices.length === 0) { usage = chunk.usage; continue; }
    const c = chunk.choices[0];
    if (first === null) first = c.delta;
    text += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(first.role, "assistant");
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, "usage chunk");
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  assert.ok(n >= 3);
});

await check("completions with logprobs", async () => {
  const r = await client.completions.create({ model, prompt: "The capital of France is", max_tokens: 6, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  for (const v of lp.token_logprobs) assert.ok(v <= 0);
  for (const top of lp.top_logprobs) assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 3);
});

await check("seeded sampling is reproducible, other seeds differ", async () => {
  const req = { model, prompt: "Once upon a time", max_tokens: 24, temperature: 1.0, top_p: 0.95 };
  const a = await client.completions.create({ ...req, seed: 7 });
  const b = await client.completions.create({ ...req, seed: 7 });
  assert.equal(a.choices[0].text, b.choices[0].text);
  const texts = new Set();
  for (const seed of [1, 2, 3, 4]) texts.add((await client.completions.create({ ...req, seed })).choices[0].text);
  assert.ok(texts.size >= 2, "different seeds give different samples");
});

await check("tools through the template path: declared tools and a tool round trip", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", description: "Weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
  const messages = [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ id: "functions.get_weather:0", type: "function",
      function: { name: "get_weather", arguments: "{\"city\": \"Paris\"}" } }] },
    { role: "tool", tool_call_id: "functions.get_weather:0", content: "18 C, sunny" },
  ];
  const r = await client.chat.completions.create({ model, messages, tools, tool_choice: "auto", max_tokens: 8 });
  const plain = await client.chat.completions.create({ model, messages: user("Weather in Paris?"), max_tokens: 8 });
  assert.ok(r.usage.prompt_tokens > plain.usage.prompt_tokens + 20);
  const tok = await post("/tokenize", { model, messages, tools, add_generation_prompt: true });
  assert.equal(tok.status, 200);
  assert.equal(tok.json.count, r.usage.prompt_tokens);
});

await check("error statuses: 404 unknown model, 400 named field, context length wording", async () => {
  await assert.rejects(client.chat.completions.create({ model: "no-such-model", messages: user("x") }),
    (e) => e.status === 404);
  await assert.rejects(client.chat.completions.create({ model, messages: user("x"), temperature: -1 }),
    (e) => e.status === 400 && /temperature/.test(e.message));
  const long = "hello ".repeat(20000);
  await assert.rejects(client.completions.create({ model, prompt: long, max_tokens: 4 }),
    (e) => e.status === 400 && /maximum context length is \d+ tokens/.test(e.message));
  await stillServing();
});

await check("bad inputs of serving.md 6.3 get the right status; the server keeps serving", async () => {
  const cases = [
    ["malformed JSON", "/v1/chat/completions", "{\"model\": ", 400],
    ["wrong type", "/v1/chat/completions", { model, messages: "hi" }, 400],
    ["negative max_tokens", "/v1/completions", { model, prompt: "x", max_tokens: -5 }, 400],
    ["huge max_tokens", "/v1/completions", { model, prompt: "x", max_tokens: 1e12 }, 400],
    ["n = 10^6", "/v1/completions", { model, prompt: "x", n: 1000000 }, 400],
    ["empty messages", "/v1/chat/completions", { model, messages: [] }, 400],
    ["temperature NaN", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": NaN}", 400],
    ["1,000 stop strings", "/v1/completions", { model, prompt: "x", stop: Array.from({ length: 1000 }, (_, i) => `s${i}`) }, 400],
  ];
  for (const [name, path, body, status] of cases) {
    const r = await post(path, body);
    assert.equal(r.status, status, `${name}: got ${r.status} ${r.text.slice(0, 200)}`);
    assert.ok(r.json?.error?.message, `${name}: error envelope`);
  }
  const invalidUtf8 = new Uint8Array([...Buffer.from("{\"prompt\": \""), 0xff, 0xfe, ...Buffer.from("\"}")]);
  const u = await post("/v1/completions", invalidUtf8);
  assert.equal(u.status, 400, `invalid UTF-8: ${u.status}`);
  const big = await post("/v1/completions", JSON.stringify({ prompt: "x".repeat(4 * 1024 * 1024) }));
  assert.equal(big.status, 413, `over-limit body: ${big.status}`);
  await stillServing();
});

await check("client disconnect mid-stream: the server goes on serving", async () => {
  const ac = new AbortController();
  const r = await fetch(`${base}/v1/completions`, { method: "POST", signal: ac.signal,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: "count", max_tokens: 2000, stream: true, ignore_eos: true }) });
  const reader = r.body.getReader();
  await reader.read();
  ac.abort();
  await stillServing();
});

await check("32 concurrent streaming greedy requests equal the same requests one at a time", async () => {
  const prompts = Array.from({ length: 32 }, (_, i) => `Request ${i}: describe the number ${i * 7}.`);
  const req = (p) => ({ model, prompt: p, max_tokens: 16, temperature: 0, stream: true });
  const collect = async (p) => {
    let s = "";
    for await (const c of await client.completions.create(req(p))) s += c.choices[0]?.text ?? "";
    return s;
  };
  const sequential = [];
  for (const p of prompts) sequential.push(await collect(p));
  const concurrent = await Promise.all(prompts.map(collect));
  assert.deepEqual(concurrent, sequential);
});

const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed}/${results.length} passed`);
process.exit(failed ? 1 : 0);
