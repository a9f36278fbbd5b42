// SPDX-License-Identifier: Apache-2.0
//
// The data plane as a newcomer meets it: the repository's sample keygate.yaml (no provider
// credential set), a fresh access key from the local CLI, and the official openai SDK pointed
// at the gateway. The demo provider answers chat, completions and embeddings (SPEC §7a); the
// OpenAI models answer 503 provider_unavailable until their credential exists. The same calls
// as raw HTTP (curl-style), also under the /api/v1/ alias (SPEC §4).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
  api,
  assertError,
  cliJson,
  ok,
  readTimed,
  sandbox,
  sseData,
  startGateway,
  stopAll,
  waitFor,
} from './lib/harness.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];
const DEMO_EMBED_DIMS = 16; // the demo provider's default vector length

describe('data plane with the demo provider (newcomer flow, openai SDK)', () => {
  let sb;
  let gw;
  let key; // the newcomer's access key (CLI --json reply)
  let client;

  const sdk = (opts = {}) =>
    new OpenAI({
      apiKey: key.key,
      baseURL: `${gw.url}/v1`,
      maxRetries: 0,
      timeout: 10000,
      fetch: globalThis.fetch,
      ...opts,
    });

  before(async () => {
    sb = sandbox('dp-mock'); // the sample config, as shipped
    // OPENAI_API_KEY empty = unset: the sample's OpenAI provider is unavailable, as on a laptop.
    gw = await startGateway(sb, { env: { OPENAI_API_KEY: '' } });
    key = cliJson(await sb.cli(['access-key', 'create', '--name', 'newcomer', '--json']), 'access-key create');
    assert.match(key.key, /^kg_live_/, 'a production (live) access key');
    // Made by the local CLI in the store file: the gateway's change feed picks it up (SPEC §7: < 100 ms).
    await waitFor(async () => (await api(gw, 'GET', '/v1/models', { key: key.key })).status === 200, {
      timeoutMs: 2000,
      what: 'the CLI-made key to reach the gateway',
    });
    client = sdk();
  });
  after(stopAll);

  test('models.list(): the raw models and the agent, in the OpenAI list envelope', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    for (const id of ['demo-chat', 'demo-embed', 'gpt-4o-mini', 'text-embedding-3-small', 'support-bot'])
      assert.ok(ids.includes(id), `${id} is listed: ${ids}`);
    for (const m of page.data) {
      assert.equal(m.object, 'model');
      assert.equal(typeof m.created, 'number');
      assert.ok(Number.isInteger(m.created) && m.created > 1.6e9, `created is unix seconds: ${m.created}`);
      assert.equal(typeof m.owned_by, 'string');
      assert.equal(typeof m.keygate?.available, 'boolean', `${m.id} says whether it is available`);
    }
    const byId = Object.fromEntries(page.data.map((m) => [m.id, m]));
    assert.deepEqual(byId['demo-chat'].keygate, { kind: 'model', available: true });
    assert.deepEqual(byId['demo-embed'].keygate, { kind: 'model', available: true });
    assert.equal(byId['gpt-4o-mini'].keygate.available, false, 'no OPENAI_API_KEY: unavailable (SPEC §7a)');
    assert.equal(byId['support-bot'].keygate.kind, 'agent');

    const raw = ok(await api(gw, 'GET', '/v1/models', { key: key.key }));
    assert.equal(raw.object, 'list');
    assert.equal(raw.has_more, false);

    const one = await client.models.retrieve('demo-chat');
    assert.equal(one.id, 'demo-chat');
    assert.equal(one.object, 'model');
    await assert.rejects(client.models.retrieve('no-such-model'), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, `NotFoundError, got ${e?.constructor?.name}`);
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });

    const agents = ok(await api(gw, 'GET', '/v1/agents', { key: key.key }));
    assert.equal(agents.object, 'list');
    assert.deepEqual(
      agents.data.map((a) => a.id),
      ['support-bot'],
      'GET /v1/agents lists the agents only'
    );
  });

  test('chat.completions.create: a whole answer', async () => {
    const { data: c, response } = await client.chat.completions
      .create({ model: 'demo-chat', messages: MSG })
      .withResponse();
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, 'demo-chat');
    assert.equal(typeof c.id, 'string');
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(typeof c.choices[0].message.content, 'string');
    assert.ok(c.choices[0].message.content.split(' ').length >= 10, `a sentence: ${c.choices[0].message.content}`);
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.ok(c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0);
    assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
    assert.match(response.headers.get('content-type'), /^application\/json/);
    assert.ok(response.headers.get('x-request-id'), 'x-request-id on the answer');
  });

  test('chat streaming: word by word, spread over time, same text as the whole answer', async () => {
    const whole = await client.chat.completions.create({ model: 'demo-chat', messages: MSG });
    const t0 = performance.now();
    const stream = await client.chat.completions.create({ model: 'demo-chat', messages: MSG, stream: true });
    const deltas = [];
    let finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, 'demo-chat');
      assert.equal(chunk.usage ?? null, null, 'no usage chunk unless asked');
      const ch = chunk.choices[0];
      if (ch.finish_reason) finish = ch.finish_reason;
      if (typeof ch.delta?.content === 'string' && ch.delta.content !== '')
        deltas.push({ t: performance.now() - t0, text: ch.delta.content });
    }
    assert.equal(finish, 'stop');
    assert.ok(deltas.length >= 10, `at least 10 content chunks, got ${deltas.length}`);
    const spread = deltas.at(-1).t - deltas[0].t;
    assert.ok(spread >= 200, `chunks arrive over time, not at once: first-to-last ${spread.toFixed(0)} ms`);
    assert.equal(
      deltas.map((d) => d.text).join(''),
      whole.choices[0].message.content,
      'the streamed words make the whole answer'
    );
  });

  test('chat streaming with stream_options.include_usage: a final usage chunk with no choices', async () => {
    const stream = await client.chat.completions.create({
      model: 'demo-chat',
      messages: MSG,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
    assert.ok(last.usage.prompt_tokens > 0 && last.usage.completion_tokens > 0, JSON.stringify(last.usage));
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
    assert.ok(
      chunks.slice(0, -1).every((c) => c.usage == null),
      'only the last chunk carries usage'
    );
  });

  test('embeddings.create: the SDK default (base64 on the wire) decodes to floats; encoding_format float', async () => {
    const e = await client.embeddings.create({ model: 'demo-embed', input: 'hello world' });
    assert.equal(e.object, 'list');
    assert.equal(e.model, 'demo-embed');
    assert.equal(e.data.length, 1);
    const v = e.data[0].embedding;
    assert.ok(Array.isArray(v), 'the SDK decoded the base64 vector into numbers');
    assert.equal(v.length, DEMO_EMBED_DIMS);
    assert.ok(v.every(Number.isFinite), 'finite floats');
    const norm = Math.hypot(...v);
    assert.ok(Math.abs(norm - 1) < 1e-3, `a unit vector: |v| = ${norm}`);
    assert.ok(e.usage.prompt_tokens > 0);

    // What the SDK asked for, seen raw: a base64 string of float32 LE.
    const raw = ok(
      await api(gw, 'POST', '/v1/embeddings', {
        key: key.key,
        body: { model: 'demo-embed', input: 'hello world', encoding_format: 'base64' },
      })
    );
    assert.equal(typeof raw.data[0].embedding, 'string', 'base64 on the wire');
    const bytes = Buffer.from(raw.data[0].embedding, 'base64');
    assert.equal(bytes.length, DEMO_EMBED_DIMS * 4, 'float32 per dimension');
    const decoded = Array.from({ length: DEMO_EMBED_DIMS }, (_, i) => bytes.readFloatLE(i * 4));
    assert.deepEqual(decoded, v, 'the SDK shows exactly the floats on the wire');

    const f = await client.embeddings.create({
      model: 'demo-embed',
      input: ['first', 'second'],
      encoding_format: 'float',
      dimensions: 4,
    });
    assert.deepEqual(
      f.data.map((d) => d.index),
      [0, 1],
      'one embedding per input, in order'
    );
    for (const d of f.data) {
      assert.equal(d.object, 'embedding');
      assert.equal(d.embedding.length, 4, 'dimensions is honoured');
      assert.ok(d.embedding.every(Number.isFinite));
    }
  });

  test('completions.create: whole and streamed', async () => {
    const c = await client.completions.create({ model: 'demo-chat', prompt: 'Once upon a time' });
    assert.equal(c.object, 'text_completion');
    assert.equal(c.model, 'demo-chat');
    assert.equal(typeof c.choices[0].text, 'string');
    assert.ok(c.choices[0].text.length > 0);
    assert.equal(c.choices[0].finish_reason, 'stop');

    const stream = await client.completions.create({ model: 'demo-chat', prompt: 'Once upon a time', stream: true });
    let text = '';
    let n = 0;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'text_completion');
      text += chunk.choices[0]?.text ?? '';
      n++;
    }
    assert.ok(n >= 10, `streamed in pieces: ${n}`);
    assert.equal(text, c.choices[0].text);
  });

  test('a model whose provider has no credential: 503 provider_unavailable (APIError.status)', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG }), (e) => {
      assert.ok(e instanceof OpenAI.APIError, `APIError, got ${e?.constructor?.name}: ${e}`);
      assert.equal(e.status, 503);
      assert.equal(e.code, 'provider_unavailable');
      assert.equal(e.type, 'api_error');
      return true;
    });
    await assert.rejects(client.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }), (e) => {
      assert.equal(e.status, 503);
      assert.equal(e.code, 'provider_unavailable');
      return true;
    });
    // The SDK retries 5xx by default: after its retries the answer is still the 503.
    const retrying = sdk({ maxRetries: 1 });
    await assert.rejects(retrying.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG }), (e) => {
      assert.equal(e.status, 503);
      assert.equal(e.code, 'provider_unavailable');
      return true;
    });
    const r = await api(gw, 'POST', '/v1/chat/completions', { key: key.key, body: { model: 'gpt-4o-mini', messages: MSG } });
    assertError(r, 503, 'provider_unavailable');
    assert.equal(r.json.error.type, 'api_error');
  });

  test('unknown model → 404 model_not_found; no model → 400 missing_model (SDK error classes)', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: MSG }), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
    const r = await api(gw, 'POST', '/v1/chat/completions', { key: key.key, body: { messages: MSG } });
    assertError(r, 400, 'missing_model');
  });

  test('curl-style raw HTTP, and every data-plane route under /api/v1/', async () => {
    const auth = { key: key.key };
    for (const prefix of ['/v1', '/api/v1']) {
      const what = (p) => `${prefix}${p}`;
      const models = ok(await api(gw, 'GET', `${prefix}/models`, auth), 200, what('/models'));
      assert.ok(models.data.some((m) => m.id === 'demo-chat'));
      assert.equal(ok(await api(gw, 'GET', `${prefix}/models/demo-embed`, auth)).id, 'demo-embed');
      assertError(await api(gw, 'GET', `${prefix}/models/nope`, auth), 404, 'model_not_found');
      assert.equal(ok(await api(gw, 'GET', `${prefix}/agents`, auth)).object, 'list');

      const chat = await api(gw, 'POST', `${prefix}/chat/completions`, { ...auth, body: { model: 'demo-chat', messages: MSG } });
      assert.equal(ok(chat, 200, what('/chat/completions')).object, 'chat.completion');
      assert.ok(chat.headers.get('x-request-id'), 'x-request-id');

      const cmpl = ok(await api(gw, 'POST', `${prefix}/completions`, { ...auth, body: { model: 'demo-chat', prompt: 'Hi' } }));
      assert.equal(cmpl.object, 'text_completion');
      const emb = ok(
        await api(gw, 'POST', `${prefix}/embeddings`, {
          ...auth,
          body: { model: 'demo-embed', input: 'x', encoding_format: 'float' },
        })
      );
      assert.equal(emb.data[0].embedding.length, DEMO_EMBED_DIMS);

      // A streamed chat read as a curl user sees it: SSE events, then data: [DONE].
      const res = await fetch(`${gw.url}${prefix}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo-chat', messages: MSG, stream: true }),
        signal: AbortSignal.timeout(10000),
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type'), /^text\/event-stream/);
      const { text, events } = await readTimed(res);
      assert.ok(text.endsWith('data: [DONE]\n\n'), `ends with [DONE]: …${JSON.stringify(text.slice(-40))}`);
      const data = sseData(text);
      assert.equal(data.at(-1), '[DONE]');
      for (const d of data.slice(0, -1)) assert.equal(JSON.parse(d).object, 'chat.completion.chunk');
      assert.ok(events.length >= 12, `${events.length} events`);
    }

    // The SDK pointed at the alias works the same.
    const alias = sdk({ baseURL: `${gw.url}/api/v1` });
    const c = await alias.chat.completions.create({ model: 'demo-chat', messages: MSG });
    assert.equal(c.object, 'chat.completion');
  });

  test('every data-plane response carries its own x-request-id', async () => {
    const seen = new Set();
    const replies = [
      await api(gw, 'GET', '/v1/models', { key: key.key }),
      await api(gw, 'POST', '/v1/chat/completions', { key: key.key, body: { model: 'demo-chat', messages: MSG } }),
      await api(gw, 'POST', '/v1/chat/completions', { key: key.key, body: { model: 'gpt-4o-mini', messages: MSG } }),
      await api(gw, 'POST', '/v1/chat/completions', { key: key.key, body: { model: 'nope', messages: MSG } }),
      await api(gw, 'POST', '/v1/embeddings', { key: key.key, raw: '{' }),
      await api(gw, 'GET', '/v1/models'),
    ];
    for (const r of replies) {
      const id = r.headers.get('x-request-id');
      assert.ok(id && /^[0-9A-Za-z_-]{8,}$/.test(id), `status ${r.status} has an x-request-id: ${id}`);
      assert.ok(!seen.has(id), `x-request-id ${id} is unique`);
      seen.add(id);
    }
  });
});
