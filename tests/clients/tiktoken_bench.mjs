// js-tiktoken encode throughput on the texts kl_tokenizer_bench wrote (DIR/bench_*.txt), printed
// in the same JSON-lines shape. Usage: node tiktoken_bench.mjs DIR
import fs from 'node:fs';
import path from 'node:path';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';

const dir = process.argv[2];
for (const [encName, ranks] of [['cl100k_base', cl100k], ['o200k_base', o200k]]) {
  const enc = new Tiktoken(ranks);
  for (const name of ['english', 'chinese']) {
    const text = fs.readFileSync(path.join(dir, `bench_${name}.txt`), 'utf8');
    const bytes = Buffer.byteLength(text, 'utf8');
    enc.encode(text.slice(0, 10000));  // warm up the JIT
    let best = Infinity;
    let n = 0;
    for (let rep = 0; rep < 3; ++rep) {
      const t0 = process.hrtime.bigint();
      n = enc.encode(text).length;
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(JSON.stringify({ impl: 'js-tiktoken', encoding: encName, text: name, bytes,
                                 tokens: n, mb_per_s: +(bytes / best / 1e6).toFixed(2) }));
  }
}
