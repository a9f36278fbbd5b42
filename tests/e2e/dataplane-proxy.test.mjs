// SPDX-License-Identifier: Apache-2.0
//
// The data plane in front of a real (fake) OpenAI-compatible provider, tests/upstream/server.mjs:
// answers relayed intact, the provider credential swapped in for the caller's key, header hygiene
// both ways (SPEC §4), request bodies forwarded byte for byte, streams relayed chunk by chunk as
// they arrive (SPEC §5), and upstream connections kept alive.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
  createAccessKey,
  rawExchange,
  readRootKey,
  readTimed,
  SECRET_RE_G,
  sseData,
  startWithUpstream,
  stopAll,
} from './lib/harness.mjs';
import {
  UPSTREAM_RESPONSE_HEADERS,
  answerPieces,
  chatAnswer,
  embeddingFor,
  startUpstream,
} from '../upstream/server.mjs';

/** Request headers the gateway may send upstream (SPEC §4 allowlist + its own framing). */
const ALLOWED_UPSTREAM = new Set([
  'host',
  'content-length',
  'authorization',
  'content-type',
  'accept',
  'user-agent',
  'accept-language',
  'idempotency-key',
  'openai-beta',
  'connection',
]);
const allowedUpstream = (name) => ALLOWED_UPSTREAM.has(name) || name.startsWith('x-stainless-');

describe('data plane through an upstream provider', () => {
  let up;
  let sb;
  let gw;
  let key; // access key (201 reply)

  /** The SDK on the gateway, with a fetch that records what it sent. */
  const sdk = (opts = {}) => {
    const sent = [];
    const client = new OpenAI({
      apiKey: key.key,
      baseURL: `${gw.url}/v1`,
      maxRetries: 0,
      timeout: 10000,
      fetch: async (url, init) => {
        sent.push({ url: String(url), headers: new Headers(init?.headers), body: init?.body });
        return globalThis.fetch(url, init);
      },
      ...opts,
    });
    return { client, sent };
  };

  /** POST to the gateway with exactly these body bytes; resolves {res, sent: Buffer}. */
  const postRaw = async (path, bytes, headers = {}) => {
    const body = Buffer.from(bytes);
    const res = await fetch(`${gw.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', ...headers },
      body,
      signal: AbortSignal.timeout(10000),
    });
    return { res, sent: body };
  };

  /** Asserts no caller secret (nor its key id) reached the upstream in any header. */
  const assertNoCallerKey = (rec, what) => {
    const all = rec.rawHeaders.join('\n');
    assert.ok(!all.includes(key.key), `${what}: the caller's secret never reaches the upstream`);
    assert.deepEqual(all.match(SECRET_RE_G) ?? [], [], `${what}: no keygate secret at all upstream`);
    assert.ok(!all.includes(key.id), `${what}: nor the caller's key id`);
    const auths = rec.rawHeaders.filter((_, i) => i % 2 === 0 && rec.rawHeaders[i].toLowerCase() === 'authorization');
    assert.equal(auths.length, 1, `${what}: exactly one authorization header upstream`);
    assert.equal(rec.headers.authorization, `Bearer ${up.apiKey}`, `${what}: the provider credential`);
  };

  /** Asserts the upstream's response headers were filtered as SPEC §4 says. */
  const assertResponseHygiene = (headers, what) => {
    assert.equal(headers.get('set-cookie'), null, `${what}: set-cookie dropped`);
    assert.equal(headers.get('openai-organization'), null, `${what}: openai-organization dropped`);
    assert.equal(headers.get('openai-project'), null, `${what}: openai-project dropped`);
    for (const [k, v] of Object.entries(UPSTREAM_RESPONSE_HEADERS))
      if (k.startsWith('x-ratelimit-'))
        assert.notEqual(headers.get(k), v, `${what}: the upstream's ${k} is not relayed (ours replace it)`);
    const rid = headers.get('x-request-id');
    assert.ok(rid && rid !== 'req_upstream' && !rid.includes(','), `${what}: one x-request-id, keygate's own: ${rid}`);
    assert.equal(headers.get('x-upstream-request-id'), 'req_upstream', `${what}: the upstream's id, renamed`);
    assert.equal(headers.get('x-upstream-marker'), 'yes', `${what}: other upstream headers pass`);
    assert.equal(headers.get('openai-processing-ms'), '5', `${what}: openai-processing-ms passes`);
  };

  before(async () => {
    up = await startUpstream();
    ({ sb, gw } = await startWithUpstream('dp-proxy', up, {
      models: [
        { name: 'gpt-4o-mini', provider: 'up' },
        { name: 'gpt-3.5-turbo-instruct', provider: 'up' },
        { name: 'text-embedding-3-small', provider: 'up' },
      ],
    }));
    key = await createAccessKey(gw, readRootKey(sb), 'proxy');
  });
  after(async () => {
    await stopAll();
    await up?.close();
  });

  test('chat via the SDK: the upstream answer, and what the upstream received', async () => {
    const { client, sent } = sdk({ organization: 'org-caller', project: 'proj_caller' });
    up.reset();
    const content = 'What is the capital of France?';
    const { data: c, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], temperature: 0.2 })
      .withResponse();
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, 'gpt-4o-mini');
    assert.match(c.id, /^chatcmpl-upstream/);
    assert.equal(c.choices[0].message.content, chatAnswer([{ role: 'user', content }]));
    assert.equal(c.system_fingerprint, 'fp_keygate_upstream');
    assertResponseHygiene(response.headers, 'SDK chat');

    assert.equal(up.received.length, 1, 'one upstream request');
    const rec = up.last();
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/chat/completions', 'base_url path + /chat/completions');
    assert.equal(rec.search, '');
    assertNoCallerKey(rec, 'SDK chat');
    assert.equal(rec.headers['openai-organization'], undefined, 'the SDK organization header is not forwarded');
    assert.equal(rec.headers['openai-project'], undefined, 'the SDK project header is not forwarded');
    assert.equal(rec.headers['accept-encoding'], undefined, 'accept-encoding is not forwarded');

    // The SDK's telemetry headers pass, unchanged.
    const mine = sent.at(-1);
    const stainless = [...mine.headers.keys()].filter((h) => h.startsWith('x-stainless-'));
    assert.ok(stainless.length >= 5, `the SDK sent x-stainless-*: ${stainless}`);
    for (const h of stainless) assert.equal(rec.headers[h], mine.headers.get(h), `${h} forwarded`);
    assert.equal(rec.headers['user-agent'], mine.headers.get('user-agent'), 'user-agent forwarded');
    assert.equal(rec.headers['content-type'], 'application/json');
    for (const h of Object.keys(rec.headers)) assert.ok(allowedUpstream(h), `header ${h} is allowlisted`);

    // The pretty-printed JSON the SDK sent, byte for byte.
    assert.equal(typeof mine.body, 'string');
    assert.equal(rec.body, mine.body, 'the upstream got the SDK body unchanged');
    assert.equal(Number(rec.headers['content-length']), Buffer.byteLength(mine.body));
  });

  test('the upstream is always told the body is JSON, whatever content type the caller sent', async () => {
    // The gateway reads every body as JSON; an upstream told "form" would read other fields
    // (another model) out of the same bytes.
    const body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":"&model=other&y="}';
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain', null]) {
      up.reset();
      const headers = type === null ? { 'content-type': '' } : { 'content-type': type };
      const { res } = await postRaw('/v1/chat/completions', body, headers);
      assert.equal(res.status, 200, `${type}: ${await res.text()}`);
      const rec = up.last();
      const types = rec.rawHeaders.filter((_, i) => i % 2 === 0 && rec.rawHeaders[i].toLowerCase() === 'content-type');
      assert.equal(types.length, 1, `${type}: one content-type upstream`);
      assert.equal(rec.headers['content-type'], 'application/json', `${type}: sent upstream as JSON`);
      assert.equal(rec.body, body, `${type}: the body unchanged`);
    }
  });

  test('embeddings via the SDK: base64 by default and float, the upstream vectors exactly', async () => {
    const { client, sent } = sdk();
    up.reset();
    const e = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha', 'beta'] });
    assert.equal(JSON.parse(sent.at(-1).body).encoding_format, 'base64', 'the SDK asked for base64');
    assert.equal(up.last().path, '/v1/embeddings');
    assert.equal(up.last().json.encoding_format, 'base64');
    assert.equal(up.last().body, sent.at(-1).body);
    assert.deepEqual(
      e.data.map((d) => d.embedding),
      [embeddingFor('alpha'), embeddingFor('beta')],
      'the decoded vectors are the upstream ones'
    );
    assert.equal(e.model, 'text-embedding-3-small');
    assert.ok(e.usage.prompt_tokens > 0);

    const f = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'gamma', encoding_format: 'float' });
    assert.deepEqual(f.data[0].embedding, embeddingFor('gamma'));
    assert.equal(up.last().json.encoding_format, 'float');
  });

  test('completions via the SDK reach /completions', async () => {
    const { client } = sdk();
    up.reset();
    const c = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say this is a test' });
    assert.equal(c.choices[0].text, 'echo: Say this is a test');
    assert.equal(up.last().path, '/v1/completions');
    assertNoCallerKey(up.last(), 'completions');
  });

  test('header hygiene: a hand-written request full of headers that must not pass', async () => {
    up.reset();
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hygiene' }] });
    const head = [
      'POST /v1/chat/completions HTTP/1.1',
      `Host: 127.0.0.1:${gw.port}`,
      `Authorization: Bearer ${key.key}`,
      `X-Api-Key: ${key.key}`, // the same credential twice is allowed, and forwarded never
      'Content-Type: application/json',
      'Accept: application/json',
      'User-Agent: hygiene-test/1.0',
      'Accept-Language: fr-CH',
      'X-Stainless-Lang: js',
      'X-Stainless-Custom-Thing: 42',
      'Idempotency-Key: idem-123',
      'OpenAI-Beta: assistants=v2',
      'Cookie: session=caller-cookie',
      'OpenAI-Organization: org-caller',
      'OpenAI-Project: proj_caller',
      'X-Test-Fault: status:500', // would make the upstream fail if it were forwarded
      'X-Test-Delay-Ms: 1',
      'X-Forwarded-For: 203.0.113.9',
      'X-Forwarded-Host: evil.example',
      'X-Real-IP: 203.0.113.9',
      'Forwarded: for=203.0.113.9',
      'Via: 1.1 evil-proxy',
      'X-Keygate-Org: org_evil', // identity headers are the gateway's to set (SPEC §4)
      'X-Keygate-Key: pk_evil',
      'Proxy-Authorization: Basic Zm9vOmJhcg==',
      'Accept-Encoding: gzip, br',
      'Keep-Alive: timeout=5',
      'TE: trailers',
      'Upgrade: websocket',
      'Connection: close, X-Hop',
      'X-Hop: hop-by-hop',
      'X-Custom-Header: not-allowlisted',
      'Referer: https://app.example/',
      'Origin: https://app.example',
      `Content-Length: ${Buffer.byteLength(body)}`,
    ];
    const r = await rawExchange(gw.port, [`${head.join('\r\n')}\r\n\r\n${body}`]);
    assert.equal(r.status, 200, `answered normally (x-test-fault not forwarded): ${r.raw.slice(0, 300)}`);
    assert.equal(r.json.choices[0].message.content, 'echo: hygiene');
    assertResponseHygiene(r.headers, 'raw chat');

    assert.equal(up.received.length, 1);
    const rec = up.last();
    assertNoCallerKey(rec, 'raw chat');
    assert.equal(rec.fault, null, 'no fault header reached the upstream');
    const names = Object.keys(rec.headers);
    const leaked = names.filter((n) => !allowedUpstream(n));
    assert.deepEqual(leaked, [], `only allowlisted headers upstream; got ${names.join(', ')}`);
    assert.ok(!/x-hop/i.test(rec.headers.connection ?? ''), 'the caller Connection header is not forwarded');
    assert.equal(rec.headers.host, `127.0.0.1:${up.port}`, 'Host is the upstream authority');
    assert.equal(rec.headers['user-agent'], 'hygiene-test/1.0');
    assert.equal(rec.headers['accept-language'], 'fr-CH');
    assert.equal(rec.headers['x-stainless-lang'], 'js');
    assert.equal(rec.headers['x-stainless-custom-thing'], '42');
    assert.equal(rec.headers['idempotency-key'], 'idem-123');
    assert.equal(rec.headers['openai-beta'], 'assistants=v2');
    assert.equal(rec.headers.accept, 'application/json');
    assert.equal(rec.body, body);
  });

  test('the body reaches the upstream byte for byte (whitespace, unknown members, big numbers, UTF-8)', async () => {
    const bodies = {
      'chat, odd formatting': Buffer.concat([
        Buffer.from(
          '  {\t"model" :"gpt-4o-mini" ,\r\n "messages":[ {"role":"user","content":"h\\u00e9llo \\ud83d\\ude00 \\"q\\" '
        ),
        Buffer.from('ünïcødé 日本 🚀', 'utf8'),
        Buffer.from(
          '"} ],\n"n":1e400,"seed":12345678901234567890,"temperature":0.70,"top_p":1.0E0,' +
            '"x_unknown":{"nested":[1,2.50,-0.0,1E-7,true,null,{"a":1,"a":2}],"":""},"logit_bias":{}}\n\n'
        ),
      ]),
      'embeddings, token arrays': Buffer.from(
        '{"input":[[1,2,3],[4,5,6]],"model":"text-embedding-3-small","encoding_format":"float","user":"u-1","dimensions":8}'
      ),
      'completions, prompt list': Buffer.from(
        '{"model":"gpt-3.5-turbo-instruct","prompt":["a","b"],"max_tokens":9007199254740993,"echo":false,"suffix":null}'
      ),
    };
    const paths = {
      'chat, odd formatting': '/v1/chat/completions',
      'embeddings, token arrays': '/v1/embeddings',
      'completions, prompt list': '/v1/completions',
    };
    for (const [what, bytes] of Object.entries(bodies)) {
      up.reset();
      const { res, sent } = await postRaw(paths[what], bytes);
      const text = await res.text();
      assert.equal(res.status, 200, `${what}: ${text}`);
      assert.equal(up.received.length, 1, `${what}: one upstream request`);
      const rec = up.last();
      assert.equal(rec.path, paths[what]);
      assert.equal(rec.bodyBase64, sent.toString('base64'), `${what}: identical bytes`);
      assert.equal(Number(rec.headers['content-length']), sent.length, `${what}: content-length`);
    }

    // A chunked request body is forwarded whole, with a content-length, unchanged.
    up.reset();
    const bytes = Buffer.from('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"chunked body"}],"z":  1}');
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: new ReadableStream({
        start(c) {
          c.enqueue(bytes.subarray(0, 20));
          c.enqueue(bytes.subarray(20));
          c.close();
        },
      }),
      duplex: 'half',
      signal: AbortSignal.timeout(10000),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).choices[0].message.content, 'echo: chunked body');
    const rec = up.last();
    assert.equal(rec.bodyBase64, bytes.toString('base64'), 'chunked: identical bytes');
    assert.equal(rec.headers['transfer-encoding'], undefined, 'no transfer-encoding upstream');
    assert.equal(Number(rec.headers['content-length']), bytes.length);
  });

  test('response headers of a stream and of an upstream error are filtered the same way', async () => {
    up.reset();
    const { res } = await postRaw(
      '/v1/chat/completions',
      JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, x_test_delay_ms: 0 })
    );
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    assertResponseHygiene(res.headers, 'stream');
    const { text } = await readTimed(res);
    assert.equal(sseData(text).at(-1), '[DONE]');

    // An upstream 4xx is relayed as the provider said it, headers filtered.
    const bad = await postRaw(
      '/v1/chat/completions',
      JSON.stringify({ model: 'gpt-4o-mini', messages: [], x_test_fault: 'status:400' })
    );
    assert.equal(bad.res.status, 400);
    assertResponseHygiene(bad.res.headers, 'upstream 400');
    const err = await bad.res.json();
    assert.equal(err.error.type, 'invalid_request_error');
  });

  test('streaming: each chunk reaches the client before the upstream sends the next', async () => {
    const DELAY = 200;
    const content = 'one two three four';
    up.reset();
    const t0 = Date.now();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content }],
        stream: true,
        x_test_delay_ms: DELAY,
      }),
      signal: AbortSignal.timeout(15000),
    });
    assert.equal(res.status, 200);
    // Wall-clock arrival of each event, comparable with the upstream's Date.now() records.
    const offset = Date.now() - performance.now();
    const { events } = await readTimed(res);
    const arrivals = events.map((e) => e.t + offset);
    const rec = up.last();
    const pieces = answerPieces(chatAnswer([{ role: 'user', content }]));
    assert.equal(events.length, pieces.length + 3, 'role chunk + one per word + finish chunk + [DONE]');
    assert.equal(events.at(-1).data, '[DONE]');
    const text = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.data).choices[0].delta.content ?? '')
      .join('');
    assert.equal(text, pieces.join(''));

    const firstLag = arrivals[0] - rec.time;
    assert.ok(rec.time >= t0 - 5, 'the upstream recorded the request after it was sent');
    assert.ok(
      firstLag < 100,
      `the first event arrives ${firstLag.toFixed(0)} ms after the upstream wrote it (< 100 ms, the next comes ${DELAY} ms later)`
    );
    const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
    assert.ok(
      gaps.every((g) => g >= 100),
      `consecutive events arrive ≥ 100 ms apart, as the upstream sent them ${DELAY} ms apart: ${gaps.map((g) => g.toFixed(0))}`
    );
  });

  test('SDK streaming through the upstream, with include_usage passed through', async () => {
    const { client } = sdk();
    const content = 'stream me please';
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, chatAnswer([{ role: 'user', content }]));
    assert.ok(usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens, JSON.stringify(usage));
  });

  test('keep-alive: 20 sequential requests reuse a few upstream connections', async () => {
    // One client connection (the SDK's keep-alive pool).
    const { client } = sdk();
    up.reset();
    const before1 = up.connections;
    for (let i = 0; i < 20; i++) {
      const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `n${i}` }] });
      assert.equal(c.choices[0].message.content, `echo: n${i}`);
    }
    const ports1 = new Set(up.received.map((r) => r.remotePort));
    assert.equal(up.received.length, 20);
    assert.ok(up.connections - before1 <= 2, `≤ 2 new upstream connections for 20 requests, got ${up.connections - before1}`);
    assert.ok(ports1.size <= 2, `≤ 2 distinct upstream connections used, got ${ports1.size}`);

    // A new client connection per request (spread over the workers by SO_REUSEPORT).
    up.reset();
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    for (let i = 0; i < 20; i++) {
      const r = await rawExchange(gw.port, [
        `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key.key}\r\n` +
          `Content-Type: application/json\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ]);
      assert.equal(r.status, 200, r.raw.slice(0, 200));
    }
    const ports2 = new Set(up.received.map((r) => r.remotePort));
    assert.ok(ports2.size <= 4, `≤ 4 upstream connections (2 workers) for 20 client connections, got ${ports2.size}`);
  });
});

describe('upstream connections the upstream closes while idle', () => {
  let up;
  let gw;
  let sb;
  let key;

  before(async () => {
    // Node closes an idle keep-alive connection after this long; the gateway keeps its own idle
    // connections for 2 s, so between these requests the upstream closes them first.
    up = await startUpstream({ keepAliveTimeoutMs: 40 });
    ({ sb, gw } = await startWithUpstream('dp-idle-close', up, { workers: 1 }));
    key = await createAccessKey(gw, readRootKey(sb), 'idle-close');
  });
  after(async () => {
    await stopAll();
    await up.close();
  });

  test('each request is answered, and reaches the upstream exactly once', async () => {
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    up.reset();
    for (let i = 0; i < 8; i++) {
      const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] });
      assert.equal(c.choices[0].message.content, `echo: q${i}`, `request ${i} answered`);
      await new Promise((r) => setTimeout(r, i % 2 === 0 ? 80 : 5)); // past the upstream's idle close, or not
    }
    const seen = up.received.map((r) => r.json.messages[0].content);
    assert.deepEqual(seen, [...Array(8).keys()].map((i) => `q${i}`), 'no request lost, none sent twice');
  });
});

describe('upstream answers framed every way HTTP/1 allows', () => {
  // A raw upstream: each request is answered as its user message asks, so one gateway meets an
  // HTTP/1.0 server (the body ends at the close), a 1xx before the answer, `Connection: close`,
  // and bodies split into small chunked pieces.
  const completion = (text) =>
    JSON.stringify({
      id: 'chatcmpl-raw',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
  const answers = {
    'http10-close': (body) => ({ head: 'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n', body, close: true }),
    'continue-first': (body) => ({
      head: `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
      body,
    }),
    'connection-close': (body) => ({
      head: `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      body,
      close: true,
    }),
    'small-chunks': (body) => {
      const pieces = body.match(/[\s\S]{1,7}/g).map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`);
      return { head: 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', body: `${pieces.join('')}0\r\n\r\n` };
    },
  };
  let server;
  let gw;
  let key;
  let connections = 0;
  const received = [];

  before(async () => {
    const net = await import('node:net');
    server = net.createServer((sock) => {
      connections++;
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const len = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0);
          if (buf.length < end + 4 + len) return;
          const req = JSON.parse(buf.subarray(end + 4, end + 4 + len).toString());
          buf = buf.subarray(end + 4 + len);
          const kind = req.messages[0].content;
          received.push(kind);
          if (kind === 'read-then-close') {
            sock.destroy(); // took the request, never answers
            return;
          }
          const a = answers[kind](completion(`answered ${kind}`));
          sock.write(a.head);
          setTimeout(() => (a.close ? sock.end(a.body) : sock.write(a.body)), 5); // the head and body apart
        }
      });
      sock.on('error', () => {});
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    let sb;
    const upstream = { baseURL: `http://127.0.0.1:${server.address().port}/v1`, apiKey: 'sk-raw' };
    ({ sb, gw } = await startWithUpstream('dp-framing', upstream, { workers: 1 }));
    key = await createAccessKey(gw, readRootKey(sb), 'framing');
  });
  after(async () => {
    await stopAll();
    server.close();
  });

  test('each framing is relayed whole, and a connection is kept only when the answer allows it', async () => {
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const kinds = ['small-chunks', 'small-chunks', 'continue-first', 'http10-close', 'connection-close', 'small-chunks'];
    for (const kind of kinds) {
      const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: kind }] });
      assert.equal(c.choices[0].message.content, `answered ${kind}`, kind);
      assert.equal(c.usage.total_tokens, 5, `${kind}: the usage object came through whole`);
    }
    assert.deepEqual(received, kinds, 'each request reached the upstream once');
    // Kept after the two chunked answers and the 100-continue one; closed after the HTTP/1.0
    // and the `Connection: close` answers: three connections in all.
    assert.equal(connections, 3);
  });

  test('a reused connection closed after the request went out: resent only with an Idempotency-Key', async () => {
    const post = (kind, headers = {}) =>
      fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: kind }] }),
        signal: AbortSignal.timeout(10000),
      });
    for (const [headers, copies] of [
      [{}, 1],
      [{ 'idempotency-key': 'retry-test-1' }, 2],
    ]) {
      received.length = 0;
      assert.equal((await post('small-chunks')).status, 200, 'a connection to reuse');
      const r = await post('read-then-close', headers);
      assert.equal(r.status, 502, 'the upstream never answered');
      assert.equal((await r.json()).error.code, 'upstream_error');
      assert.deepEqual(
        received,
        ['small-chunks', ...Array(copies).fill('read-then-close')],
        copies === 1 ? 'without a key the upstream sees the POST once' : 'with a key it may see it again'
      );
    }
  });
});
