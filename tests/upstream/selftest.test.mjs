// SPDX-License-Identifier: Apache-2.0
//
// Self-check of the fake upstream (node --test tests/upstream/), driven by the official openai SDK
// exactly as a gateway's callers drive keygate: if these pass, the upstream speaks OpenAI's wire
// formats well enough for the SDK, and its recording and fault injection work.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

import {
  startUpstream,
  embeddingFor,
  embeddingFromBase64,
  UPSTREAM_RESPONSE_HEADERS,
  DEFAULT_API_KEY,
} from './server.mjs';
import { makeTestCA } from './test-ca.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

let up;
let client;

before(async () => {
  up = await startUpstream();
  client = new OpenAI({ baseURL: up.baseURL, apiKey: DEFAULT_API_KEY, maxRetries: 0, timeout: 10_000 });
});

after(async () => {
  await up?.close();
});

describe('http upstream through the openai SDK', () => {
  test('chat, non-streaming: echo, usage, recorded request and response headers', async () => {
    up.reset();
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }] })
      .withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.model, 'gpt-4o-mini');
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(data.choices[0].message.content, 'echo: hello there');
    assert.equal(data.choices[0].finish_reason, 'stop');
    // prompt: "be brief\nhello there" = 20 chars → 5; completion: 3 words.
    assert.deepEqual(
      [data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.total_tokens],
      [5, 3, 8],
    );
    for (const [k, v] of Object.entries(UPSTREAM_RESPONSE_HEADERS)) assert.equal(response.headers.get(k), v, k);

    assert.equal(up.received.length, 1);
    const rec = up.last();
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/chat/completions');
    assert.equal(rec.headers.authorization, `Bearer ${DEFAULT_API_KEY}`);
    assert.equal(rec.headers['content-type'], 'application/json');
    assert.equal(rec.headers['x-stainless-lang'], 'js');
    assert.ok(rec.headers['x-stainless-package-version'], 'SDK sends x-stainless-package-version');
    assert.equal(rec.headers['x-stainless-retry-count'], '0');
    assert.match(rec.headers['user-agent'], /^OpenAI\/JS /);
    assert.equal(JSON.parse(rec.body).messages[1].content, 'hello there');
    assert.equal(rec.status, 200);
    assert.equal(rec.finished, true);
  });

  test('chat max_tokens truncates with finish_reason length', async () => {
    const r = await client.chat.completions.create({ model: 'm', max_tokens: 2, messages: [{ role: 'user', content: 'a b c d' }] });
    assert.equal(r.choices[0].message.content, 'echo: a');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 2);
  });

  test('chat streaming: role chunk, one chunk per word spaced by the delay, finish, usage, [DONE]', async () => {
    up.reset();
    const delay = 60;
    const t0 = performance.now();
    const stream = await client.chat.completions.create(
      {
        model: 'gpt-4o-mini',
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'one two three four' }],
      },
      { headers: { 'x-test-delay-ms': String(delay) } },
    );
    const chunks = [];
    const times = [];
    for await (const c of stream) {
      chunks.push(c);
      times.push(performance.now() - t0);
    }
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const words = chunks.filter((c) => c.choices[0]?.delta?.content).map((c) => c.choices[0].delta.content);
    assert.deepEqual(words, ['echo:', ' one', ' two', ' three', ' four']);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finish.length, 1);
    assert.equal(finish[0].choices[0].finish_reason, 'stop');
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 5);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));

    // Arrival times: each event after the first comes about `delay` ms after the previous one
    // (never all at once at the end: the upstream writes and flushes each event separately).
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    for (const g of gaps) assert.ok(g >= delay * 0.6, `gap ${g.toFixed(1)} ms < ${delay * 0.6} (gaps ${gaps.map(Math.round)})`);
    assert.ok(times[times.length - 1] >= delay * (chunks.length - 1) * 0.8);

    assert.equal(up.last().json.stream, true);
    assert.equal(up.last().headers.accept, 'application/json');
  });

  test('chat streaming without include_usage: no usage chunk, no usage member', async () => {
    const stream = await client.chat.completions.create(
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'x y' }] },
      { headers: { 'x-test-delay-ms': '0' } },
    );
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.every((c) => c.choices.length === 1 && !('usage' in c)));
    assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, 'stop');
  });

  test('raw SSE framing: data lines, blank-line separators, [DONE] last', async () => {
    const res = await fetch(`${up.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEFAULT_API_KEY}`, 'content-type': 'application/json', 'x-test-delay-ms': '0' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const text = await res.text();
    const events = text.split('\n\n').filter(Boolean);
    assert.ok(events.every((e) => e.startsWith('data: ')));
    assert.equal(events[events.length - 1], 'data: [DONE]');
    assert.ok(text.endsWith('data: [DONE]\n\n'));
  });

  test('completions (text_completion), plain and streamed', async () => {
    const r = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'say this' });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices[0].text, 'echo: say this');
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    const s = await client.completions.create(
      { model: 'gpt-3.5-turbo-instruct', prompt: 'a b', stream: true, stream_options: { include_usage: true } },
      { headers: { 'x-test-delay-ms': '0' } },
    );
    const parts = [];
    let usage;
    for await (const c of s) {
      if (c.choices[0]) parts.push(c.choices[0].text);
      if (c.usage) usage = c.usage;
    }
    assert.equal(parts.join(''), 'echo: a b');
    assert.equal(usage.completion_tokens, 3);
  });

  test('embeddings: the SDK asks for base64 by default and decodes it to the right floats', async () => {
    up.reset();
    const r = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha', 'beta'] });
    assert.equal(up.last().json.encoding_format, 'base64', 'SDK default is base64');
    assert.equal(r.object, 'list');
    assert.equal(r.data.length, 2);
    assert.deepEqual(Array.from(r.data[0].embedding), embeddingFor('alpha'));
    assert.deepEqual(Array.from(r.data[1].embedding), embeddingFor('beta'));
    assert.equal(r.data[1].index, 1);
    assert.equal(r.data[0].embedding.length, 8);
    assert.ok(r.usage.prompt_tokens > 0);

    const f = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'alpha', encoding_format: 'float' });
    assert.deepEqual(f.data[0].embedding, embeddingFor('alpha'));

    // The raw base64 answer is float32 little-endian.
    const raw = await fetch(`${up.baseURL}/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEFAULT_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'e', input: 'alpha', encoding_format: 'base64' }),
    }).then((x) => x.json());
    assert.equal(typeof raw.data[0].embedding, 'string');
    assert.deepEqual(embeddingFromBase64(raw.data[0].embedding), embeddingFor('alpha'));
  });

  test('models list and retrieve; unknown model 404', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes('gpt-4o-mini') && ids.includes('text-embedding-3-small'));
    const m = await client.models.retrieve('gpt-4o-mini');
    assert.equal(m.object, 'model');
    await assert.rejects(client.models.retrieve('no-such-model'), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  });

  test('recording endpoints: /__received, /__last, /__reset (themselves not recorded)', async () => {
    await fetch(`${up.url}/__reset`, { method: 'POST' });
    assert.equal(up.received.length, 0);
    await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'rec' }] }, { query: { a: '1' } });
    const all = await fetch(`${up.url}/__received`).then((r) => r.json());
    assert.equal(all.length, 1);
    assert.equal(all[0].path, '/v1/chat/completions');
    assert.deepEqual(all[0].query, { a: '1' });
    assert.equal(all[0].headers.authorization, `Bearer ${DEFAULT_API_KEY}`);
    assert.equal(JSON.parse(all[0].body).messages[0].content, 'rec');
    const last = await fetch(`${up.url}/__last`).then((r) => r.json());
    assert.equal(last.seq, all[0].seq);
    assert.equal(up.received.length, 1, 'control calls are not recorded');
  });

  test('wrong or missing key: 401 invalid_api_key, SDK raises AuthenticationError', async () => {
    const bad = new OpenAI({ baseURL: up.baseURL, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
    const res = await fetch(`${up.baseURL}/models`);
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  });

  test('fault status:<code> gives an OpenAI error the SDK maps to its class', async () => {
    const cases = [
      [429, OpenAI.RateLimitError],
      [500, OpenAI.InternalServerError],
      [503, OpenAI.InternalServerError],
      [400, OpenAI.BadRequestError],
    ];
    for (const [status, cls] of cases) {
      await assert.rejects(
        client.chat.completions.create(
          { model: 'm', messages: [{ role: 'user', content: 'x' }] },
          { headers: { 'x-test-fault': `status:${status}` } },
        ),
        (e) => {
          assert.ok(e instanceof cls, `${status}: ${e.constructor.name}`);
          assert.equal(e.status, status);
          assert.ok(e.error && 'message' in e.error && 'type' in e.error);
          return true;
        },
      );
      assert.equal(up.last().fault, `status:${status}`);
      assert.equal(up.last().status, status);
    }
  });

  test('fault via body member x_test_fault and via a queued fault (for gateways that drop x-test-*)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], x_test_fault: 'status:502' }),
      (e) => e.status === 502,
    );
    up.setFault('status:504', { times: 1, path: '/v1/embeddings' });
    const ok = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(ok.object, 'chat.completion', 'queued fault bound to another path');
    await assert.rejects(client.embeddings.create({ model: 'e', input: 'x' }), (e) => e.status === 504);
    await client.embeddings.create({ model: 'e', input: 'x' }); // used up
    const r = await fetch(`${up.url}/__fault`, { method: 'POST', body: JSON.stringify({ fault: 'status:418', times: 1 }) });
    assert.equal(r.status, 200);
    await assert.rejects(client.models.list(), (e) => e.status === 418);
  });

  test('fault slow-headers:<ms>: answer delayed; an SDK timeout shorter than it fires', async () => {
    const t0 = performance.now();
    const r = await client.chat.completions.create(
      { model: 'm', messages: [{ role: 'user', content: 'slow' }] },
      { headers: { 'x-test-fault': 'slow-headers:300' } },
    );
    assert.equal(r.choices[0].message.content, 'echo: slow');
    assert.ok(performance.now() - t0 >= 280);
    await assert.rejects(
      client.chat.completions.create(
        { model: 'm', messages: [{ role: 'user', content: 'slow' }] },
        { headers: { 'x-test-fault': 'slow-headers:2000' }, timeout: 150 },
      ),
      (e) => {
        assert.ok(e instanceof OpenAI.APIConnectionTimeoutError, e.constructor.name);
        return true;
      },
    );
    // the upstream sees the client give up (the record's closedEarly turns true)
    await up.waitForRequest((r) => r.fault === 'slow-headers:2000' && r.closedEarly, 2000);
  });

  test('fault close-mid-stream: two SSE events, then the connection dies; the SDK raises', async () => {
    const stream = await client.chat.completions.create(
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'a b c d e f' }] },
      { headers: { 'x-test-fault': 'close-mid-stream', 'x-test-delay-ms': '10' } },
    );
    const got = [];
    await assert.rejects(async () => {
      for await (const c of stream) got.push(c);
    });
    assert.equal(got.length, 2);
    assert.equal(got[0].choices[0].delta.role, 'assistant');
    assert.equal(got[1].choices[0].delta.content, 'echo:');
    assert.equal(up.last().closedEarly, true);

    // Non-streaming: the full content-length is announced, half the body sent, then the socket
    // dies. Beware: openai v4's default transport in Node (node-fetch 2) never settles on such a
    // truncated body, and its `timeout` does not cover the body; Node's own fetch raises
    // `TypeError: terminated`, so this check uses that.
    const viaFetch = new OpenAI({ baseURL: up.baseURL, apiKey: DEFAULT_API_KEY, maxRetries: 0, fetch: globalThis.fetch });
    await assert.rejects(
      viaFetch.chat.completions.create(
        { model: 'm', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-test-fault': 'close-mid-stream' } },
      ),
      /terminated/,
    );
    assert.equal(up.last().closedEarly, true);
    assert.equal(up.last().finished, false);
  });

  test('fault stall-mid-stream: two events, then silence until the client leaves', async () => {
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'a b c' }] },
      { headers: { 'x-test-fault': 'stall-mid-stream', 'x-test-delay-ms': '0' }, signal: ac.signal },
    );
    const got = [];
    const it = (async () => {
      for await (const c of stream) got.push(c);
    })();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, 2);
    const rec = up.last();
    assert.equal(rec.finished, false);
    ac.abort(); // the SDK ends its iterator quietly on abort
    await it;
    assert.equal(got.length, 2);
    await up.waitForRequest((r) => r === rec && r.closedEarly, 2000);
  });

  test('fault reset: no response at all; the SDK raises APIConnectionError', async () => {
    await assert.rejects(
      client.chat.completions.create(
        { model: 'm', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-test-fault': 'reset' } },
      ),
      (e) => {
        assert.ok(e instanceof OpenAI.APIConnectionError, e.constructor.name);
        return true;
      },
    );
    assert.equal(up.last().fault, 'reset');
    assert.equal(up.last().status, null);
  });

  test('unknown fault and unknown route answer OpenAI errors', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'm', messages: [] }, { headers: { 'x-test-fault': 'bogus' } }),
      (e) => e.status === 400 && /unknown x-test-fault/.test(e.message),
    );
    const r = await fetch(`${up.baseURL}/nope`, { headers: { authorization: `Bearer ${DEFAULT_API_KEY}` } });
    assert.equal(r.status, 404);
    assert.match((await r.json()).error.message, /Invalid URL \(GET \/v1\/nope\)/);
  });
});

describe('https upstream with a test CA', () => {
  let pki;
  let tup;
  let dir;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-upstream-test-'));
    pki = makeTestCA(dir);
    tup = await startUpstream({ tls: { key: pki.serverKey, cert: pki.serverCert } });
  });

  after(async () => {
    await tup?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the SDK trusting the test CA talks to it over TLS', async () => {
    assert.match(tup.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const agent = new https.Agent({ ca: fs.readFileSync(pki.caCert) });
    const c = new OpenAI({ baseURL: tup.baseURL, apiKey: DEFAULT_API_KEY, maxRetries: 0, httpAgent: agent });
    const r = await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'secure' }] });
    assert.equal(r.choices[0].message.content, 'echo: secure');
    assert.equal(tup.last().tls, true);
    const stream = await c.chat.completions.create(
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'a b' }] },
      { headers: { 'x-test-delay-ms': '0' } },
    );
    let text = '';
    for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'echo: a b');
    agent.destroy();
  });

  test('localhost name verifies too; an unrelated CA and a wrong-host cert are refused', async () => {
    const get = (url, ca, extra = {}) =>
      new Promise((resolve, reject) => {
        const req = https.get(url, { ca: fs.readFileSync(ca), headers: { authorization: `Bearer ${DEFAULT_API_KEY}` }, ...extra }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', reject);
      });
    assert.equal(await get(`https://localhost:${tup.port}/v1/models`, pki.caCert), 200);
    await assert.rejects(get(`${tup.url}/v1/models`, pki.otherCaCert), (e) => e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');

    const agent = new https.Agent({ ca: fs.readFileSync(pki.otherCaCert) });
    const c = new OpenAI({ baseURL: tup.baseURL, apiKey: DEFAULT_API_KEY, maxRetries: 0, httpAgent: agent });
    await assert.rejects(c.models.list(), (e) => e instanceof OpenAI.APIConnectionError);
    agent.destroy();

    const wrong = await startUpstream({ tls: { key: pki.wrongHostKey, cert: pki.wrongHostCert } });
    try {
      await assert.rejects(get(`${wrong.url}/v1/models`, pki.caCert), (e) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      await wrong.close();
    }
  });
});

test('CLI: prints its address and serves until SIGTERM', async () => {
  const child = spawn(process.execPath, [path.join(HERE, 'server.mjs'), '--port', '0', '--delay-ms', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 5000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = /^upstream listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: DEFAULT_API_KEY, maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'cli' }] });
    assert.equal(r.choices[0].message.content, 'echo: cli');
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});

test('close() ends open streams and resolves', async () => {
  const u = await startUpstream({ delayMs: 1000 });
  const c = new OpenAI({ baseURL: u.baseURL, apiKey: DEFAULT_API_KEY, maxRetries: 0 });
  const stream = await c.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'a b c' }] });
  const it = (async () => {
    for await (const _ of stream);
  })();
  const t0 = performance.now();
  await u.close();
  assert.ok(performance.now() - t0 < 500, 'close does not wait for the stream');
  await assert.rejects(it);
});
