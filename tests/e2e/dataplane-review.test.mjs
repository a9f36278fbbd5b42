// SPDX-License-Identifier: Apache-2.0
//
// Regression tests for what a security review of the data plane found: methods other than POST
// on inference routes, an upstream refusing the provider credential, the demo provider's limits,
// prompt policy without a messages array, null allowlists, cleartext HTTP/2, and an upstream
// whose stream declares a Content-Length it never delivers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';

import { api, assertError, dataplaneYaml, ok, readRootKey, rawExchange, sandbox, startGateway, stopAll } from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

describe('data-plane review regressions', () => {
  let sb, gw, up, liar, admin, key, guarded;

  before(async () => {
    up = await startUpstream();
    // An upstream that declares more SSE bytes than it sends, then closes.
    liar = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'content-length': '1000' });
        res.write('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
        setTimeout(() => res.socket.destroy(), 50);
      });
    });
    await new Promise((r) => liar.listen(0, '127.0.0.1', r));
    sb = sandbox('dp-review');
    fs.writeFileSync(
      sb.config,
      dataplaneYaml({
        credentials: { wrong: 'env:TEST_WRONG_KEY' },
        providers: [
          { name: 'wrongkey', base_url: up.baseURL, credential: 'wrong' },
          { name: 'liar', base_url: `http://127.0.0.1:${liar.address().port}/v1` },
        ],
        models: [
          { name: 'gpt-4o-mini', provider: 'wrongkey' },
          { name: 'liar-chat', provider: 'liar' },
        ],
      }) + 'prompt_modules: [{name: rules, text: "Follow the rules."}]\n'
    );
    gw = await startGateway(sb, { env: { TEST_WRONG_KEY: 'sk-not-the-upstream-key-1234567890' } });
    admin = readRootKey(sb);
    const mk = async (body) => {
      const r = await api(gw, 'POST', '/v1/tokens', { key: admin, body: { name: 'k', ...body } });
      ok(r, 201);
      return r.json.key;
    };
    key = await mk({});
    guarded = await mk({ prompt_text: 'Never swear.' });
  });

  after(async () => {
    await stopAll();
    await up?.close();
    await new Promise((r) => liar?.close(r));
    sb?.remove();
  });

  const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

  test('inference routes take POST only: PUT, PATCH, DELETE → 405, nothing answered', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      assertError(await api(gw, method, '/v1/chat/completions', { key, body: chat('demo-chat') }), 405, 'method_not_allowed');
    }
    assertError(await api(gw, 'POST', '/v1/models', { key }), 405, 'method_not_allowed');
  });

  test('an upstream refusing the provider credential is a 502, and its message is not relayed', async () => {
    up.reset();
    const r = await api(gw, 'POST', '/v1/chat/completions', { key, body: chat('gpt-4o-mini') });
    assertError(r, 502, 'upstream_error');
    assert.equal(r.headers.get('www-authenticate'), null);
    assert.doesNotMatch(r.text, /sk-not|Incorrect API key/);
    assert.equal(up.received.length, 1, 'the call did reach the upstream');
  });

  test('demo embeddings: base64 for many inputs decodes; too many inputs or dimensions → 400', async () => {
    const inputs = Array.from({ length: 40 }, (_, i) => `text ${i}`);
    const r = await api(gw, 'POST', '/v1/embeddings', { key, body: { model: 'demo-embed', input: inputs, encoding_format: 'base64' } });
    ok(r, 200);
    assert.equal(r.json.data.length, 40);
    for (const item of r.json.data) assert.equal(Buffer.from(item.embedding, 'base64').length, 16 * 4);
    const wide = await api(gw, 'POST', '/v1/embeddings', { key, body: { model: 'demo-embed', input: 'x', dimensions: 3072, encoding_format: 'base64' } });
    ok(wide, 200);
    assert.equal(Buffer.from(wide.json.data[0].embedding, 'base64').length, 3072 * 4);
    assertError(await api(gw, 'POST', '/v1/embeddings', { key, body: { model: 'demo-embed', input: Array(2049).fill('a') } }), 400, 'invalid_value', { param: 'input' });
    assertError(await api(gw, 'POST', '/v1/embeddings', { key, body: { model: 'demo-embed', input: 'a', dimensions: 100000 } }), 400, 'invalid_value', { param: 'dimensions' });
  });

  test('a key with prompt policy cannot skip it by leaving out messages', async () => {
    assertError(await api(gw, 'POST', '/v1/chat/completions', { key: guarded, body: { model: 'demo-chat', prompt: 'x' } }), 400, 'invalid_value', { param: 'messages' });
    assertError(await api(gw, 'POST', '/v1/chat/completions', { key: guarded, body: { model: 'demo-chat', messages: 'x' } }), 400, 'invalid_value', { param: 'messages' });
    ok(await api(gw, 'POST', '/v1/chat/completions', { key: guarded, body: chat('demo-chat') }), 200);
  });

  test('allow and scopes cannot be set to null (null would read as unrestricted)', async () => {
    const created = await api(gw, 'POST', '/v1/tokens', { key: admin, body: { name: 'narrow', allow: { models: ['demo-chat'] } } });
    ok(created, 201);
    for (const field of ['allow', 'scopes']) {
      assertError(await api(gw, 'PATCH', `/v1/tokens/${created.json.id}`, { key: admin, body: { [field]: null } }), 400, 'invalid_value', { param: field });
    }
  });

  test('cleartext HTTP/2 (prior knowledge) is not spoken', async () => {
    const r = await rawExchange(gw.port, ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n']).catch((e) => ({ error: e }));
    assert.ok(r.error || r.status !== 200 || !/^HTTP\/2/.test(r.raw ?? ''), 'no HTTP/2 session');
    assert.doesNotMatch(r.raw ?? '', /^\x00\x00/, 'no HTTP/2 frames');
  });

  test('an SSE upstream that declares a Content-Length and is cut: relayed chunked, ends with the error event', async () => {
    const r = await api(gw, 'POST', '/v1/chat/completions', { key, body: chat('liar-chat', { stream: true }) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), null, 'no inherited content-length');
    assert.match(r.text, /"code":"upstream_error"/);
  });
});
