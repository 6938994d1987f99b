// End-to-end check of klserve's gRPC API with the official node client (@grpc/grpc-js): Generate
// (token ids and text), Tokenize, ModelInfo, errors, bearer auth, grpc.health.v1 and reflection.
// Usage: node grpc_client_test.mjs PORT [API_KEY]   (exits non-zero on the first mismatch)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const [port, apiKey = ''] = process.argv.slice(2);
if (!port) {
  console.error('usage: node grpc_client_test.mjs PORT [API_KEY]');
  process.exit(2);
}
const address = `127.0.0.1:${port}`;

// The test server's FakeExecutor: token = 3 + (seq * 7919 + position * 104729) % (vocab - 3),
// vocab 768; the first request of a fresh server runs as sequence 0.
const kVocab = 768;
const fakeToken = (seq, pos) => 3 + ((seq * 7919 + pos * 104729) % (kVocab - 3));

const loadOptions = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, loadOptions));
}
const klserve = load(path.join(here, '../../proto/klserve/v1/klserve.proto')).klserve.v1;
const health = load(path.join(here, 'protos/grpc_health_v1.proto')).grpc.health.v1;
const reflection = load(path.join(here, 'protos/grpc_reflection_v1alpha.proto')).grpc.reflection
  .v1alpha;

const creds = grpc.credentials.createInsecure();
const client = new klserve.Klserve(address, creds);
const healthClient = new health.Health(address, creds);
const reflectionClient = new reflection.ServerReflection(address, creds);

let failures = 0;
function check(cond, what) {
  if (cond) {
    console.log(`ok   ${what}`);
  } else {
    console.error(`FAIL ${what}`);
    failures += 1;
  }
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function metadata(key = apiKey) {
  const md = new grpc.Metadata();
  if (key) md.set('authorization', `Bearer ${key}`);
  return md;
}
const deadline = () => Date.now() + 20000;

function unary(method, request, md = metadata()) {
  return new Promise((resolve) => {
    client[method](request, md, { deadline: deadline() }, (err, resp) => resolve({ err, resp }));
  });
}

function generate(request, md = metadata()) {
  return new Promise((resolve) => {
    const out = { ids: {}, text: {}, finish: {}, usage: null, messages: 0, err: null };
    const call = client.Generate(request, md, { deadline: deadline() });
    call.on('data', (msg) => {
      out.messages += 1;
      for (const c of msg.choices) {
        out.ids[c.index] = (out.ids[c.index] ?? []).concat(c.token_ids);
        out.text[c.index] = (out.text[c.index] ?? '') + c.text;
        if (c.finish_reason) out.finish[c.index] = c.finish_reason;
      }
      if (msg.usage) out.usage = msg.usage;
    });
    call.on('error', (err) => {
      out.err = err;
      resolve(out);
    });
    call.on('end', () => resolve(out));
  });
}

async function main() {
  // Generate from token ids (the fresh server's first request: sequence 0).
  const prompt = Array.from({ length: 8 }, (_, i) => 10 + i);
  const g = await generate({ token_ids: { ids: prompt }, sampling: { max_tokens: 10, temperature: 0 } });
  check(!g.err, `Generate(token_ids) succeeds ${g.err ? g.err.message : ''}`);
  const expected = Array.from({ length: 10 }, (_, i) => fakeToken(0, 8 + i));
  check(same(g.ids[0], expected), `Generate streams the executor's tokens ${JSON.stringify(g.ids[0])}`);
  check(g.finish[0] === 'length', `finish_reason "length" (got ${g.finish[0]})`);
  check(g.usage && g.usage.prompt_tokens === 8 && g.usage.completion_tokens === 10 &&
        g.usage.total_tokens === 18, `usage ${JSON.stringify(g.usage)}`);
  check(g.messages >= 2, `streamed over ${g.messages} messages`);

  // Generate from text with n = 2; the prompt length must equal Tokenize's count.
  const text = 'Hello, world! 你好';
  const t = await unary('Tokenize', { text });
  check(!t.err && t.resp.count === t.resp.token_ids.length && t.resp.count > 0,
        `Tokenize ${t.err ? t.err.message : JSON.stringify(t.resp)}`);
  check(!t.err && t.resp.max_model_len === 512, 'Tokenize reports max_model_len 512');
  const g2 = await generate({ text, sampling: { n: 2, max_tokens: 6, seed: 1 } });
  check(!g2.err, `Generate(text, n=2) succeeds ${g2.err ? g2.err.message : ''}`);
  check(g2.ids[0]?.length === 6 && g2.ids[1]?.length === 6, 'both choices have 6 tokens');
  check(g2.finish[0] === 'length' && g2.finish[1] === 'length', 'both choices end by length');
  check(!t.err && g2.usage && g2.usage.prompt_tokens === t.resp.count &&
        g2.usage.completion_tokens === 12, `usage of the text request ${JSON.stringify(g2.usage)}`);
  check(typeof g2.text[0] === 'string', 'text deltas arrive');

  // ModelInfo.
  const m = await unary('ModelInfo', {});
  check(!m.err && m.resp.served_model_name === 'kimi-linear-test' && m.resp.vocab_size === kVocab &&
        m.resp.max_model_len === 512 && m.resp.has_tokenizer,
        `ModelInfo ${m.err ? m.err.message : JSON.stringify(m.resp)}`);

  // Errors.
  const bad = await generate({ token_ids: { ids: prompt }, sampling: { temperature: -1 } });
  check(bad.err && bad.err.code === grpc.status.INVALID_ARGUMENT && /temperature/.test(bad.err.details),
        `temperature -1 -> INVALID_ARGUMENT (${bad.err ? bad.err.details : 'no error'})`);
  const long = await generate({ token_ids: { ids: prompt }, sampling: { max_tokens: 1000 } });
  check(long.err && long.err.code === grpc.status.INVALID_ARGUMENT &&
        /maximum context length is 512 tokens/.test(long.err.details),
        `over the context length -> INVALID_ARGUMENT (${long.err ? long.err.details : 'no error'})`);
  if (apiKey) {
    const anon = await unary('ModelInfo', {}, metadata(''));
    check(anon.err && anon.err.code === grpc.status.UNAUTHENTICATED, 'no bearer token -> UNAUTHENTICATED');
    const wrong = await unary('ModelInfo', {}, metadata('wrong-key'));
    check(wrong.err && wrong.err.code === grpc.status.UNAUTHENTICATED, 'wrong key -> UNAUTHENTICATED');
  }

  // Cancelling mid-stream ends the call; the server goes on serving.
  await new Promise((resolve) => {
    const call = client.Generate({ token_ids: { ids: prompt }, sampling: { max_tokens: 400 } },
                                 metadata(), { deadline: deadline() });
    let got = 0;
    call.on('data', () => { got += 1; if (got === 2) call.cancel(); });
    call.on('error', () => {});  // the outcome is read from 'status', which comes exactly once
    call.on('status', (st) => {
      check(st.code === grpc.status.CANCELLED, `cancelled stream ends CANCELLED (${st.code})`);
      resolve();
    });
  });
  const after = await generate({ token_ids: { ids: prompt }, sampling: { max_tokens: 3 } });
  check(!after.err && after.ids[0]?.length === 3, 'serving continues after a cancel');

  // grpc.health.v1 (no credentials: probes carry none).
  for (const service of ['', 'klserve.v1.Klserve']) {
    const h = await new Promise((resolve) => {
      healthClient.Check({ service }, { deadline: deadline() }, (err, resp) => resolve({ err, resp }));
    });
    check(!h.err && h.resp.status === 'SERVING', `health "${service}" SERVING`);
  }

  // Server reflection: list services, then the file defining klserve.v1.Klserve.
  const refl = await new Promise((resolve) => {
    const md = metadata();
    const call = reflectionClient.ServerReflectionInfo(md, { deadline: deadline() });
    const responses = [];
    call.on('data', (r) => responses.push(r));
    call.on('error', (err) => resolve({ err, responses }));
    call.on('end', () => resolve({ err: null, responses }));
    call.write({ list_services: '' });
    call.write({ file_containing_symbol: 'klserve.v1.Klserve' });
    call.end();
  });
  check(!refl.err && refl.responses.length === 2, `reflection answers (${refl.err ? refl.err.message : refl.responses.length})`);
  const names = (refl.responses[0]?.list_services_response?.service ?? []).map((s) => s.name);
  check(names.includes('klserve.v1.Klserve') && names.includes('grpc.health.v1.Health'),
        `reflection lists the services ${JSON.stringify(names)}`);
  const files = refl.responses[1]?.file_descriptor_response?.file_descriptor_proto ?? [];
  check(files.length > 0 && Buffer.concat(files).includes('GenerateResponse'),
        'reflection returns the klserve.v1 file descriptor');

  client.close();
  healthClient.close();
  reflectionClient.close();
  if (failures) {
    console.error(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('all gRPC client checks passed');
}

main().catch((e) => {
  console.error(`FAIL: ${e.stack ?? e}`);
  process.exit(1);
});
