// Load generator for a running klserve (a benchmark, not a test): streaming /v1/completions
// requests at fixed concurrency levels; reports TTFT, TPOT, ITL (p50 / p99) and output tok/s.
//   node tests/bench/load_gen.mjs BASE_URL [--concurrency 1,8,32] [--requests N] [--max-tokens M]
//                                 [--prompt-tokens P]
// Uses only Node's built-in fetch, so it runs wherever node 18+ does.
const args = process.argv.slice(2);
const base = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const levels = opt("concurrency", "1,8,32").split(",").map(Number);
const maxTokens = Number(opt("max-tokens", "64"));
const promptWords = Number(opt("prompt-tokens", "128"));

function pct(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function one(i) {
  const prompt = Array.from({ length: promptWords }, (_, k) => `w${(i * 31 + k) % 97}`).join(" ");
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true,
      stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const times = [];
  let buf = "", tokens = 0;
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) tokens = j.usage.completion_tokens;
      if (j.choices?.length) times.push(performance.now());
    }
  }
  const end = performance.now();
  const ttft = times.length ? times[0] - t0 : NaN;
  const itl = times.slice(1).map((t, k) => t - times[k]);
  const tpot = tokens > 1 ? (end - times[0]) / (tokens - 1) : NaN;
  return { ttft, itl, tpot, tokens, e2e: end - t0 };
}

const requestsPer = Number(opt("requests", "0"));
for (const c of levels) {
  const n = requestsPer || Math.max(c * 2, 8);
  const t0 = performance.now();
  let next = 0;
  const results = [];
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) results.push(await one(next++));
  }));
  const secs = (performance.now() - t0) / 1000;
  const ttft = results.map((r) => r.ttft), tpot = results.map((r) => r.tpot);
  const itl = results.flatMap((r) => r.itl);
  const toks = results.reduce((a, r) => a + r.tokens, 0);
  console.log(
    `concurrency ${String(c).padStart(2)}: ${n} requests, ${toks} tokens in ${secs.toFixed(2)} s = ` +
      `${(toks / secs).toFixed(1)} tok/s | TTFT p50 ${pct(ttft, 50).toFixed(1)} p99 ${pct(ttft, 99).toFixed(1)} ms | ` +
      `TPOT p50 ${pct(tpot, 50).toFixed(2)} p99 ${pct(tpot, 99).toFixed(2)} ms | ` +
      `ITL p50 ${pct(itl, 50).toFixed(2)} p99 ${pct(itl, 99).toFixed(2)} ms`);
}
