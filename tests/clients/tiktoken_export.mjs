// Oracle side of the tokenizer comparison: exports js-tiktoken's cl100k_base and o200k_base
// (ranks as tiktoken.model text, pattern, special tokens) and its encodings of DIR/corpus.json,
// for tests/unit/tokenizer_jscheck_main.cpp to compare against. Usage: node tiktoken_export.mjs DIR
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node tiktoken_export.mjs DIR');
  process.exit(2);
}

let Tiktoken, encodings;
try {
  ({ Tiktoken } = await import('js-tiktoken/lite'));
  encodings = {
    cl100k_base: (await import('js-tiktoken/ranks/cl100k_base')).default,
    o200k_base: (await import('js-tiktoken/ranks/o200k_base')).default,
  };
} catch (e) {
  console.error(`js-tiktoken is not installed (${e.message}).\n` +
                'Run: npm --prefix tests/clients ci   (scripts/test.sh does this)');
  process.exit(1);
}

const corpus = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));

// The package stores ranks as lines "<label> <first rank> <b64> <b64> ..." with consecutive
// ranks; write them as standard tiktoken.model lines "<b64> <rank>".
function toTiktokenModel(bpeRanks) {
  const out = [];
  for (const line of bpeRanks.split('\n')) {
    if (!line) continue;
    const [, offsetStr, ...tokens] = line.split(' ');
    const offset = Number.parseInt(offsetStr, 10);
    tokens.forEach((t, i) => out.push(`${t} ${offset + i}`));
  }
  return out.join('\n') + '\n';
}

for (const [name, ranks] of Object.entries(encodings)) {
  const enc = new Tiktoken(ranks);
  fs.writeFileSync(path.join(dir, `${name}.tiktoken`), toTiktokenModel(ranks.bpe_ranks));
  fs.writeFileSync(path.join(dir, `${name}.json`),
                   JSON.stringify({ pat_str: ranks.pat_str, special_tokens: ranks.special_tokens }));
  const t0 = Date.now();
  const texts = corpus.texts.map((t) => enc.encode(t.text));
  const specialTexts = corpus.special_texts.map((t) => enc.encode(t, 'all'));
  fs.writeFileSync(path.join(dir, `${name}.ids.json`),
                   JSON.stringify({ texts, special_texts: specialTexts }));
  console.log(`${name}: encoded ${texts.length + specialTexts.length} texts in ${Date.now() - t0} ms`);
}
