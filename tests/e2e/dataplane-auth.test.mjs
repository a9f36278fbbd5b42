// SPDX-License-Identifier: Apache-2.0
//
// Authentication on the data plane (SPEC §2 "Accepted credentials", §5 codes): every accepted
// credential form, every refusal with its status, code and WWW-Authenticate, and that a refused
// request never reaches the provider. Key changes made through the admin API (disable, enable,
// revoke, rotation with and without grace) are in force on the very next request (SPEC §6).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';

import {
  api,
  assertError,
  breakChecksum,
  createAccessKey,
  createToken,
  forgeSecret,
  nowSec,
  ok,
  rawExchange,
  readRootKey,
  redact,
  sleep,
  startWithUpstream,
  stopAll,
  waitFor,
} from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'auth' }] });
const ROUNDS = 10;

describe('data-plane authentication', () => {
  let up;
  let sb;
  let gw;
  let root;
  let admin; // an admin key made through the API (not the root key)
  const k = {}; // access keys and friends, by role

  /** POST /v1/chat/completions (through the upstream) with exactly these headers. */
  const chat = (headers, { path = '/v1/chat/completions', query = '' } = {}) =>
    api(gw, 'POST', `${path}${query}`, { raw: CHAT, headers });
  const bearer = (secret) => ({ authorization: `Bearer ${secret}` });

  /** Runs `fn` and asserts the upstream received `n` requests meanwhile. */
  const upstreamCount = async (n, what, fn) => {
    const before = up.received.length;
    const r = await fn();
    assert.equal(up.received.length - before, n, `${what}: expected ${n} upstream request(s), got ${up.received.length - before}`);
    return r;
  };

  before(async () => {
    up = await startUpstream();
    ({ sb, gw } = await startWithUpstream('dp-auth', up));
    root = readRootKey(sb);
    admin = await createToken(gw, root, { token_type: 'admin', name: 'dp-admin' });

    k.a = await createAccessKey(gw, admin.key, 'a');
    k.b = await createAccessKey(gw, admin.key, 'b');
    k.staging = await createAccessKey(gw, admin.key, 'staging', { environment: 'staging' });
    k.disabled = await createAccessKey(gw, admin.key, 'disabled');
    ok(await api(gw, 'POST', `/v1/tokens/${k.disabled.id}/disable`, { key: admin.key }));
    k.revoked = await createAccessKey(gw, admin.key, 'revoked');
    ok(await api(gw, 'DELETE', `/v1/tokens/${k.revoked.id}`, { key: admin.key }));
    k.rotated = await createAccessKey(gw, admin.key, 'rotated');
    k.rotatedNew = ok(await api(gw, 'POST', `/v1/tokens/${k.rotated.id}/rotate`, { key: admin.key }));
    k.gateway = await createToken(gw, admin.key, { token_type: 'gateway', name: 'gw' });
    k.legacyGateway = ok(await api(gw, 'POST', '/v1/gateway-keys', { key: admin.key, body: { name: 'gk' } }), 201);
    // Expires in 2 s: checked by the last test, after the others have used up the wait.
    k.expiring = await createAccessKey(gw, admin.key, 'expiring', { expires_at: nowSec() + 2 });
    assert.equal((await chat(bearer(k.expiring.key))).status, 200, 'the expiring key works before its expiry');
  });
  after(async () => {
    await stopAll();
    await up?.close();
  });

  test('accepted credential forms (SPEC §2 forms 1, 2 and 4) reach the upstream', async () => {
    const a = k.a.key;
    const cases = [
      ['Authorization: Bearer <secret>', { authorization: `Bearer ${a}` }],
      ['scheme in lower case', { authorization: `bearer ${a}` }],
      ['scheme in upper case, several spaces', { authorization: `BEARER    ${a}` }],
      ['Bearer <pk>:<secret>', { authorization: `Bearer ${k.a.id}:${a}` }],
      ['x-api-key: <secret>', { 'x-api-key': a }],
      ['Authorization and x-api-key carrying the same secret', { authorization: `Bearer ${a}`, 'x-api-key': a }],
      ['a test-environment key (kg_test_)', { authorization: `Bearer ${k.staging.key}` }],
      ['the new secret of a rotated key', { authorization: `Bearer ${k.rotatedNew.key}` }],
    ];
    for (const [what, headers] of cases) {
      const r = await upstreamCount(1, what, () => chat(headers));
      assert.equal(r.status, 200, `${what}: ${redact(r.text)}`);
      assert.equal(r.json.choices[0].message.content, 'echo: auth', what);
      assert.equal(up.last().headers.authorization, `Bearer ${up.apiKey}`, `${what}: the provider key upstream`);
    }
    // The same on the read routes, and under /api/v1/.
    for (const p of ['/v1/models', '/api/v1/models', '/v1/models/gpt-4o-mini', '/v1/agents'])
      ok(await api(gw, 'GET', p, { headers: { 'x-api-key': a } }), 200, p);
  });

  test('refusals: status, code, WWW-Authenticate, no echo of the key, nothing upstream', async () => {
    const a = k.a.key;
    const cases = [
      // [what, headers, status, code, query]
      ['no credential', {}, 401, 'missing_api_key'],
      ['an empty x-api-key', { 'x-api-key': '' }, 401, 'missing_api_key'],
      ['Bearer without a token', { authorization: 'Bearer' }, 401, 'invalid_api_key'],
      ['Bearer with garbage', { authorization: 'Bearer not-a-key' }, 401, 'invalid_api_key'],
      ['another scheme (Basic)', { authorization: `Basic ${Buffer.from(`${a}:`).toString('base64')}` }, 401, 'invalid_api_key'],
      ['another scheme (Token)', { authorization: `Token ${a}` }, 401, 'invalid_api_key'],
      ['no space after Bearer', { authorization: `Bearer${a}` }, 401, 'invalid_api_key'],
      ['a truncated secret', bearer(a.slice(0, -1)), 401, 'invalid_api_key'],
      ['a secret with a bad checksum', bearer(breakChecksum(a)), 401, 'invalid_api_key'],
      ['an unknown well-formed secret', bearer(forgeSecret('live')), 401, 'invalid_api_key'],
      ['an unknown well-formed secret in x-api-key', { 'x-api-key': forgeSecret('test') }, 401, 'invalid_api_key'],
      ['a rotated-away secret (no grace)', bearer(k.rotated.key), 401, 'invalid_api_key'],
      ["<pk>:<secret> with another key's secret", bearer(`${k.a.id}:${k.b.key}`), 401, 'invalid_api_key'],
      ['<pk>: with no secret', bearer(`${k.a.id}:`), 401, 'invalid_api_key'],
      [':<secret> with no pk', bearer(`:${a}`), 401, 'invalid_api_key'],
      ['a bare pk of a key that is not publishable', bearer(k.a.id), 401, 'invalid_api_key'],
      ['the secret with trailing junk', bearer(`${a}x`), 401, 'invalid_api_key'],
      ['a disabled key', bearer(k.disabled.key), 401, 'key_disabled'],
      ['a revoked key', bearer(k.revoked.key), 401, 'key_revoked'],
      ['a key in ?api_key= (with a valid header too)', bearer(a), 401, 'invalid_api_key', `?api_key=${a}`],
      ['?api_key= with any value', bearer(a), 401, 'invalid_api_key', '?api_key=whatever'],
      ['?access_token=', bearer(a), 401, 'invalid_api_key', '?x=1&access_token=zzz'],
      ['a well-formed secret as any query value', bearer(a), 401, 'invalid_api_key', `?k=${k.b.key}`],
      ['a key in the query only', {}, 401, 'invalid_api_key', `?api_key=${a}`],
      ['Authorization and x-api-key disagree', { authorization: `Bearer ${a}`, 'x-api-key': k.b.key }, 400, 'conflicting_credentials'],
      ['the root admin key', bearer(root), 403, 'insufficient_scope'],
      ['an admin key', bearer(admin.key), 403, 'insufficient_scope'],
      ['an admin key in x-api-key', { 'x-api-key': admin.key }, 403, 'insufficient_scope'],
      ['a gateway key (token_type gateway)', bearer(k.gateway.key), 403, 'insufficient_scope'],
      ['a legacy gateway key (kg_gk_)', bearer(k.legacyGateway.key), 403, 'insufficient_scope'],
    ];
    const failures = [];
    for (const [what, headers, status, code, query = ''] of cases) {
      for (const path of ['/v1/chat/completions', '/api/v1/chat/completions']) {
        const label = `${what} on ${path}`;
        try {
          const r = await upstreamCount(0, label, () => chat(headers, { path, query }));
          const e = assertError(r, status, code, { what: label });
          if (status === 403) assert.equal(e.type, 'permission_error', label);
          for (const v of [...Object.values(headers), query])
            for (const s of v.match(/kg_[a-z]+_[0-9A-Za-z]{30,}/g) ?? [])
              assert.ok(!r.text.includes(s), `${label}: the message does not echo the key`);
          assert.ok(r.headers.get('x-request-id'), `${label}: x-request-id`);
        } catch (err) {
          failures.push(redact(err.message));
        }
      }
      // The read routes refuse the same way.
      const m = await api(gw, 'GET', `/v1/models${query}`, { headers });
      try {
        assertError(m, status, code, { what: `${what} on GET /v1/models` });
      } catch (err) {
        failures.push(redact(err.message));
      }
    }
    assert.deepEqual(failures, []);
    // A harmless query string is not mistaken for a key.
    ok(await api(gw, 'GET', '/v1/models?limit=10&after=x', { key: a }), 200, 'ordinary query');
    assert.equal((await chat(bearer(a), { query: '?foo=bar' })).status, 200, 'ordinary query on chat');
  });

  test('two Authorization headers, or two x-api-key headers → 400 conflicting_credentials', async () => {
    const a = k.a.key;
    const body = CHAT;
    const heads = {
      'two Authorization headers, same secret': [`Authorization: Bearer ${a}`, `Authorization: Bearer ${a}`],
      'two Authorization headers, different secrets': [`Authorization: Bearer ${a}`, `Authorization: Bearer ${k.b.key}`],
      'two x-api-key headers': [`x-api-key: ${a}`, `X-Api-Key: ${k.b.key}`],
    };
    for (const [what, lines] of Object.entries(heads)) {
      const r = await upstreamCount(0, what, () =>
        rawExchange(gw.port, [
          [
            'POST /v1/chat/completions HTTP/1.1',
            'Host: 127.0.0.1',
            ...lines,
            'Content-Type: application/json',
            'Connection: close',
            `Content-Length: ${body.length}`,
            '',
            body,
          ].join('\r\n'),
        ])
      );
      assertError(r, 400, 'conflicting_credentials', { what });
    }
  });

  test('the openai SDK raises AuthenticationError (401) and PermissionDeniedError (403)', async () => {
    const client = (apiKey) =>
      new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 10000, fetch: globalThis.fetch });
    const call = (c) => c.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    const before = up.received.length;
    for (const [secret, code] of [
      [forgeSecret('live'), 'invalid_api_key'],
      [breakChecksum(k.a.key), 'invalid_api_key'],
      [k.disabled.key, 'key_disabled'],
      [k.revoked.key, 'key_revoked'],
    ]) {
      await assert.rejects(call(client(secret)), (e) => {
        assert.ok(e instanceof OpenAI.AuthenticationError, `AuthenticationError, got ${e?.constructor?.name}`);
        assert.equal(e.status, 401);
        assert.equal(e.code, code);
        assert.match(e.headers['www-authenticate'], /^Bearer/);
        return true;
      });
      await assert.rejects(client(secret).models.list(), OpenAI.AuthenticationError);
    }
    for (const secret of [root, admin.key, k.gateway.key]) {
      await assert.rejects(call(client(secret)), (e) => {
        assert.ok(e instanceof OpenAI.PermissionDeniedError, `PermissionDeniedError, got ${e?.constructor?.name}`);
        assert.equal(e.status, 403);
        assert.equal(e.code, 'insufficient_scope');
        return true;
      });
    }
    assert.equal(up.received.length, before, 'nothing reached the upstream');
    const c = await call(client(k.a.key));
    assert.equal(c.choices[0].message.content, 'echo: x');
  });

  describe('admin API changes are in force on the very next request', () => {
    test(`disable / enable, ${ROUNDS} rounds`, async () => {
      const key = await createAccessKey(gw, admin.key, 'toggle');
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        ok(await api(gw, 'POST', `/v1/tokens/${key.id}/disable`, { key: admin.key }));
        const before = up.received.length;
        const d = await chat(bearer(key.key));
        if (d.status !== 401 || d.json?.error?.code !== 'key_disabled') failures.push(`disable #${i}: ${d.status} ${d.text}`);
        if (up.received.length !== before) failures.push(`disable #${i}: reached the upstream`);
        ok(await api(gw, 'POST', `/v1/tokens/${key.id}/enable`, { key: admin.key }));
        const e = await chat(bearer(key.key));
        if (e.status !== 200) failures.push(`enable #${i}: ${e.status} ${e.text}`);
      }
      assert.deepEqual(failures, []);
    });

    test(`revoke, ${ROUNDS} keys`, async () => {
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        const key = await createAccessKey(gw, admin.key, `revoke-${i}`);
        const first = await chat(bearer(key.key));
        if (first.status !== 200) failures.push(`new #${i}: ${first.status} ${first.text}`);
        ok(await api(gw, 'DELETE', `/v1/tokens/${key.id}`, { key: admin.key }));
        const r = await chat(bearer(key.key));
        if (r.status !== 401 || r.json?.error?.code !== 'key_revoked') failures.push(`revoked #${i}: ${r.status} ${r.text}`);
      }
      assert.deepEqual(failures, []);
    });

    test('on one keep-alive connection every request is judged anew: other keys, wrong secrets, revocation, rotation', async () => {
      // The gateway remembers the secret a connection presented last (its hash is computed once
      // per connection): nothing about the previous request may carry over to the next.
      const a = await createAccessKey(gw, admin.key, 'one-conn-a');
      const b = await createAccessKey(gw, admin.key, 'one-conn-b');
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const ports = new Set();
      const send = (secret) =>
        new Promise((resolve, reject) => {
          const req = http.request(
            {
              host: '127.0.0.1',
              port: gw.port,
              method: 'POST',
              path: '/v1/chat/completions',
              agent,
              headers: {
                authorization: `Bearer ${secret}`,
                'content-type': 'application/json',
                'content-length': Buffer.byteLength(CHAT),
              },
            },
            (res) => {
              ports.add(res.socket.localPort);
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c) => (text += c));
              res.on('end', () => resolve({ status: res.statusCode, code: res.statusCode === 200 ? null : JSON.parse(text).error?.code }));
            }
          );
          req.on('error', reject);
          req.end(CHAT);
        });
      const expect = async (secret, status, code, what) => {
        const r = await send(secret);
        assert.deepEqual(r, { status, code }, what);
      };
      try {
        await expect(a.key, 200, null, 'a');
        await expect(a.key, 200, null, 'a again');
        await expect(forgeSecret('live'), 401, 'invalid_api_key', 'a well-formed secret nobody holds');
        await expect(breakChecksum(a.key), 401, 'invalid_api_key', "a's secret with one character changed");
        await expect(b.key, 200, null, 'b after a');
        await expect(a.key, 200, null, 'a after b');
        ok(await api(gw, 'DELETE', `/v1/tokens/${a.id}`, { key: admin.key }));
        await expect(a.key, 401, 'key_revoked', 'a, revoked meanwhile');
        await expect(b.key, 200, null, 'b');
        const rotated = ok(await api(gw, 'POST', `/v1/tokens/${b.id}/rotate`, { key: admin.key }));
        await expect(b.key, 401, 'invalid_api_key', "b's secret, rotated away meanwhile");
        await expect(rotated.key, 200, null, "b's new secret");
        await expect(a.key, 401, 'key_revoked', 'a, still revoked');
        assert.equal(ports.size, 1, 'every request went over the one connection');
      } finally {
        agent.destroy();
      }
    });

    test(`rotation without grace, ${ROUNDS} rounds: the old secret dies, the new one works`, async () => {
      const key = await createAccessKey(gw, admin.key, 'rotate');
      let current = key.key;
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        const r = ok(await api(gw, 'POST', `/v1/tokens/${key.id}/rotate`, { key: admin.key }));
        const oldR = await chat(bearer(current));
        const newR = await chat(bearer(r.key));
        if (oldR.status !== 401 || oldR.json?.error?.code !== 'invalid_api_key')
          failures.push(`old #${i}: ${oldR.status} ${oldR.text}`);
        if (newR.status !== 200) failures.push(`new #${i}: ${newR.status} ${newR.text}`);
        const pair = await chat(bearer(`${key.id}:${r.key}`));
        if (pair.status !== 200) failures.push(`pair #${i}: ${pair.status}`);
        current = r.key;
      }
      assert.deepEqual(failures.map(redact), []);
    });

    test('rotation with grace: the old secret works until grace_until, then invalid_api_key', async () => {
      const key = await createAccessKey(gw, admin.key, 'grace');
      const r = ok(await api(gw, 'POST', `/v1/tokens/${key.id}/rotate`, { key: admin.key, body: { grace_seconds: 1 } }));
      assert.equal(typeof r.grace_until, 'number', 'grace_until in the reply');
      const deadline = r.grace_until * 1000;
      assert.equal((await chat(bearer(r.key))).status, 200, 'the new secret works at once');
      assert.equal((await chat(bearer(key.key))).status, 200, 'the old secret works during the grace');

      // Probe the old secret on the data plane until it stops; judge each probe by wall-clock.
      let lastOkStart = 0;
      let okCount = 0;
      const seen = await waitFor(
        async () => {
          const start = Date.now();
          const p = await api(gw, 'GET', '/v1/models', { key: key.key });
          const end = Date.now();
          if (p.status === 200) {
            lastOkStart = start;
            okCount++;
            return false;
          }
          return { end, status: p.status, code: p.json?.error?.code };
        },
        { timeoutMs: 4000, intervalMs: 20, what: 'the old secret to stop after its grace' }
      );
      assert.equal(seen.value.status, 401);
      assert.equal(seen.value.code, 'invalid_api_key');
      assert.ok(okCount >= 1, 'the old secret kept working for a while');
      const TICK_MS = 20; // time(2) is the coarse clock
      assert.ok(lastOkStart < deadline + TICK_MS, `worked ${lastOkStart - deadline} ms after grace_until`);
      assert.ok(seen.value.end >= deadline, `refused ${deadline - seen.value.end} ms before grace_until`);
      const after = await chat(bearer(r.key));
      assert.equal(after.status, 200, 'the new secret keeps working');
    });
  });

  test('an expired key: 401 key_expired from expires_at on, and nothing upstream', async () => {
    const deadline = k.expiring.expires_at * 1000;
    const wait = deadline - Date.now();
    if (wait > 0) await sleep(wait);
    const seen = await waitFor(
      async () => {
        const r = await chat(bearer(k.expiring.key));
        return r.status === 200 ? false : r;
      },
      { timeoutMs: 2000, intervalMs: 20, what: 'the key to expire' }
    );
    assert.ok(Date.now() >= deadline, 'not refused before expires_at');
    const r = await upstreamCount(0, 'expired', () => chat(bearer(k.expiring.key)));
    assertError(seen.value, 401, 'key_expired');
    assertError(r, 401, 'key_expired');
  });
});
