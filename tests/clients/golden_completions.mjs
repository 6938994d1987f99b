// The golden tiny-a case served by klserve with --skip-tokenizer-init: every prompt's greedy_ids
// must come back through POST /v1/completions (token-id prompts, return_token_ids).
//   node golden_completions.mjs BASE_URL GOLDEN_CASE_DIR
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const [base, dir] = process.argv.slice(2);
const golden = JSON.parse(readFileSync(`${dir}/golden.json`, "utf8"));
let failed = 0;
for (const p of golden.prompts) {
  const r = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: p.input_ids, max_tokens: p.greedy_ids.length, temperature: 0,
      ignore_eos: true, return_token_ids: true }),
  });
  const body = await r.json();
  try {
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.deepEqual(body.choices[0].token_ids, p.greedy_ids);
    assert.deepEqual(body.prompt_token_ids ?? body.choices[0].prompt_token_ids, p.input_ids);
    console.log(`PASS ${golden.case} ${p.name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${golden.case} ${p.name}: ${e.message}`);
  }
}
console.log(`${golden.prompts.length - failed}/${golden.prompts.length} passed`);
process.exit(failed ? 1 : 0);
