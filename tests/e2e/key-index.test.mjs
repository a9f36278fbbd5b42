// SPDX-License-Identifier: Apache-2.0
//
// The gateway's in-memory key index, observed through admin keys (the only keys that
// authenticate anything so far): a change made through the admin API is effective on the next
// request (SPEC §6), rotation grace (SPEC §3), expiry, revocation.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  api,
  assertError,
  assertStopsAt,
  createToken,
  listAll,
  nowSec,
  ok,
  probeKey,
  readRootKey,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

// The index is refreshed asynchronously; one lucky round proves nothing, so each check repeats.
const ROUNDS = 20;

describe('key index', () => {
  let sb;
  let gw;
  let root;

  before(async () => {
    sb = sandbox('key-index');
    gw = await startGateway(sb);
    root = readRootKey(sb);
  });
  after(stopAll);

  const newAdmin = (name, extra = {}) => createToken(gw, root, { token_type: 'admin', name, ...extra });

  describe('effective on the next request (SPEC §6: "toggle; effective on the next request")', () => {
    test('a key created through the API authenticates on the very next request', async () => {
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        const a = await newAdmin(`next-create-${i}`);
        const p = await probeKey(gw, a.key);
        if (p.status !== 200) failures.push(`#${i}: ${p.status} ${p.code}`);
      }
      assert.deepEqual(failures, [], 'the secret returned by POST /v1/tokens works at once');
    });

    test('disable is effective on the next request (401 key_disabled), enable likewise', async () => {
      const a = await newAdmin('next-toggle');
      await settleKey(gw, a.key, 200);
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        ok(await api(gw, 'POST', `/v1/tokens/${a.id}/disable`, { key: root }));
        const d = await probeKey(gw, a.key);
        if (d.code !== 'key_disabled') failures.push(`disable #${i}: ${d.status} ${d.code}`);
        await settleKey(gw, a.key, 401, 'key_disabled');
        ok(await api(gw, 'POST', `/v1/tokens/${a.id}/enable`, { key: root }));
        const e = await probeKey(gw, a.key);
        if (e.status !== 200) failures.push(`enable #${i}: ${e.status} ${e.code}`);
        await settleKey(gw, a.key, 200);
      }
      assert.deepEqual(failures, []);
    });

    test('revoke (DELETE) is effective on the next request (401 key_revoked)', async () => {
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        const a = await newAdmin(`next-revoke-${i}`);
        await settleKey(gw, a.key, 200);
        ok(await api(gw, 'DELETE', `/v1/tokens/${a.id}`, { key: root }));
        const p = await probeKey(gw, a.key);
        if (p.code !== 'key_revoked') failures.push(`#${i}: ${p.status} ${p.code}`);
      }
      assert.deepEqual(failures, []);
    });

    test('rotation without grace: the old secret dies and the new one works on the next request', async () => {
      const a = await newAdmin('next-rotate');
      await settleKey(gw, a.key, 200);
      let current = a.key;
      const failures = [];
      for (let i = 0; i < ROUNDS; i++) {
        const r = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root }));
        const oldP = await probeKey(gw, current);
        const newP = await probeKey(gw, r.key);
        if (oldP.code !== 'invalid_api_key') failures.push(`old #${i}: ${oldP.status} ${oldP.code}`);
        if (newP.status !== 200) failures.push(`new #${i}: ${newP.status} ${newP.code}`);
        await settleKey(gw, r.key, 200);
        current = r.key;
      }
      assert.deepEqual(failures, []);
    });
  });

  test('revoked, disabled and rotated-away keys answer with the right 401 code', async () => {
    const a = await newAdmin('codes');
    await settleKey(gw, a.key, 200);
    ok(await api(gw, 'POST', `/v1/tokens/${a.id}/disable`, { key: root }));
    await settleKey(gw, a.key, 401, 'key_disabled');
    assertError(await api(gw, 'GET', '/v1/tokens', { key: a.key }), 401, 'key_disabled');
    ok(await api(gw, 'DELETE', `/v1/tokens/${a.id}`, { key: root }));
    await settleKey(gw, a.key, 401, 'key_revoked');
    assertError(await api(gw, 'GET', '/v1/tokens', { key: a.key }), 401, 'key_revoked', { what: 'revoked beats disabled' });

    const b = await newAdmin('codes-rot');
    await settleKey(gw, b.key, 200);
    const r = ok(await api(gw, 'POST', `/v1/tokens/${b.id}/rotate`, { key: root }));
    await settleKey(gw, b.key, 401, 'invalid_api_key');
    assertError(await api(gw, 'GET', '/v1/tokens', { key: b.key }), 401, 'invalid_api_key', { what: 'a rotated-away secret' });
    await settleKey(gw, r.key, 200);
  });

  test('rotation grace: both secrets work until grace_until, then the old one is unknown', async () => {
    const a = await newAdmin('grace');
    await settleKey(gw, a.key, 200);
    const r = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root, body: { grace_seconds: 2 } }));
    assert.ok(r.grace_until >= nowSec(), `grace_until ${r.grace_until} is ~2 s ahead`);
    await settleKey(gw, r.key, 200);
    assert.equal((await probeKey(gw, a.key)).status, 200, 'the old secret works during the grace');

    // An old secret past its grace is simply unknown, from the second grace_until names.
    await assertStopsAt(gw, a.key, r.grace_until, 'invalid_api_key', { what: 'the old secret' });
    assert.equal((await probeKey(gw, r.key)).status, 200, 'the new secret keeps working');
  });

  test('a second rotation ends the first grace at once', async () => {
    const a = await newAdmin('double');
    await settleKey(gw, a.key, 200);
    const r1 = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root, body: { grace_seconds: 600 } }));
    await settleKey(gw, r1.key, 200);
    assert.equal((await probeKey(gw, a.key)).status, 200, 'first secret in its grace');

    const r2 = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root, body: { grace_seconds: 600 } }));
    await settleKey(gw, r2.key, 200);
    await settleKey(gw, a.key, 401, 'invalid_api_key');
    assert.equal((await probeKey(gw, r1.key)).status, 200, 'the second secret is now the one in grace');
    assert.equal((await probeKey(gw, r2.key)).status, 200, 'the newest secret works');

    // Without grace, a third rotation ends every older secret.
    const r3 = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root }));
    await settleKey(gw, r3.key, 200);
    await settleKey(gw, r1.key, 401, 'invalid_api_key');
    await settleKey(gw, r2.key, 401, 'invalid_api_key');
  });

  test('disable and revoke stop the secret in grace as well as the new one', async () => {
    const a = await newAdmin('grace-stop');
    await settleKey(gw, a.key, 200);
    const r = ok(await api(gw, 'POST', `/v1/tokens/${a.id}/rotate`, { key: root, body: { grace_seconds: 600 } }));
    await settleKey(gw, r.key, 200);
    assert.equal((await probeKey(gw, a.key)).status, 200, 'old secret in grace');

    ok(await api(gw, 'POST', `/v1/tokens/${a.id}/disable`, { key: root }));
    await settleKey(gw, r.key, 401, 'key_disabled');
    await settleKey(gw, a.key, 401, 'key_disabled');
    ok(await api(gw, 'POST', `/v1/tokens/${a.id}/enable`, { key: root }));
    await settleKey(gw, r.key, 200);
    await settleKey(gw, a.key, 200);

    ok(await api(gw, 'DELETE', `/v1/tokens/${a.id}`, { key: root }));
    await settleKey(gw, r.key, 401, 'key_revoked');
    await settleKey(gw, a.key, 401, 'key_revoked');
  });

  test('expiry: a key works until expires_at, then 401 key_expired and status expired', async () => {
    const exp = nowSec() + 2;
    const a = await newAdmin('expiring', { expires_at: exp });
    assert.equal(a.expires_at, exp);
    await settleKey(gw, a.key, 200);
    await assertStopsAt(gw, a.key, exp, 'key_expired', { what: 'the expiring key' });
    assertError(await api(gw, 'GET', '/v1/tokens', { key: a.key }), 401, 'key_expired');

    const t = ok(await api(gw, 'GET', `/v1/tokens/${a.id}`, { key: root }));
    assert.equal(t.status, 'expired');
    const expired = await listAll(gw, root, '/v1/tokens?status=expired');
    assert.ok(expired.some((x) => x.id === a.id), 'listed with ?status=expired');
    const active = await listAll(gw, root, '/v1/tokens?status=active');
    assert.ok(!active.some((x) => x.id === a.id), 'not listed as active');

    // Moving the expiry into the future revives it.
    ok(await api(gw, 'PATCH', `/v1/tokens/${a.id}`, { key: root, body: { expires_at: nowSec() + 3600 } }));
    await settleKey(gw, a.key, 200);
  });

  test('every key loaded at start-up authenticates (the index is complete after a restart)', async () => {
    // More keys than one page of any list: the index must not stop at a page size.
    const made = [];
    for (let i = 0; i < 25; i++) made.push(await newAdmin(`bulk-${i}`));
    const code = await gw.stop('SIGTERM');
    assert.equal(code.code, 0);
    gw = await startGateway(sb);
    const failures = [];
    for (const a of made) {
      const p = await probeKey(gw, a.key);
      if (p.status !== 200) failures.push(`${a.name}: ${p.status} ${p.code}`);
    }
    assert.deepEqual(failures, []);
    assert.equal((await probeKey(gw, root)).status, 200);
  });
});
