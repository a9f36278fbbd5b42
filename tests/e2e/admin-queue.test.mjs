// SPDX-License-Identifier: Apache-2.0
//
// Admin calls are authenticated on arrival but run later, one at a time, on the store worker.
// A revoke, disable or rotation queued ahead of a call must stop that call too: the caller's
// secret is checked again when the call runs. Each test races many in-flight calls against
// the change and then looks at what was done after it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { api, createToken, listAll, ok, readRootKey, sandbox, sleep, startGateway, stopAll } from './lib/harness.mjs';

const LOOPS = 16; // concurrent callers holding the key
const MAX_CALLS = 400; // per caller: a bound, never reached when the change lands

/** Runs `call` in LOOPS parallel loops until one returns a non-2xx status; returns every reply. */
async function hammer(call, change) {
  const replies = [];
  let stop = false;
  const loop = async () => {
    for (let i = 0; i < MAX_CALLS && !stop; i++) {
      const r = await call();
      replies.push(r);
      if (r.status >= 300) return;
    }
  };
  const loops = Array.from({ length: LOOPS }, loop);
  await sleep(100); // let the queue fill
  await change();
  const guard = setTimeout(() => (stop = true), 20000);
  await Promise.all(loops);
  clearTimeout(guard);
  return replies;
}

describe('admin calls queued behind a change to their own key', () => {
  let sb;
  let gw;
  let root;

  before(async () => {
    sb = sandbox('admin-queue');
    gw = await startGateway(sb, { workers: 4 });
    root = readRootKey(sb);
  });
  after(stopAll);

  test('nothing is done with an admin key after its revoke (queued calls get 401)', async () => {
    const k = await createToken(gw, root, { token_type: 'admin', name: 'doomed' });
    let n = 0;
    const replies = await hammer(
      () => api(gw, 'POST', '/v1/tokens', { key: k.key, body: { token_type: 'admin', name: `made-${n++}` } }),
      async () => ok(await api(gw, 'DELETE', `/v1/tokens/${k.id}`, { key: root })),
    );
    const created = replies.filter((r) => r.status === 201).length;
    assert.ok(created > 0, 'the key worked before its revoke');
    for (const r of replies.filter((r) => r.status !== 201))
      assert.equal(r.status, 401, `a refused call: ${r.status} ${r.json?.error?.code}`);

    const events = await listAll(gw, root, '/v1/audit-events');
    const revoked = events.find((e) => e.action === 'token.revoked' && e.object_id === k.id);
    assert.ok(revoked, 'the revoke is audited');
    const byKey = events.filter((e) => e.action === 'token.created' && e.actor === k.id);
    assert.equal(byKey.length, created, 'one audit event per 201');
    const late = byKey.filter((e) => e.id > revoked.id);
    assert.deepEqual(late.map((e) => e.object_id), [], 'no key created by the revoked key after its revoke');
  });

  test('a rotation without grace ends every ephemeral token minted with the old secret, queued mints included', async () => {
    const parent = await createToken(gw, root, { name: 'eph-race' });
    const replies = await hammer(
      () => api(gw, 'POST', '/v1/ephemeral-tokens', { key: parent.key, body: { ttl_seconds: 3600 } }),
      async () => ok(await api(gw, 'POST', `/v1/tokens/${parent.id}/rotate`, { key: root, body: {} })),
    );
    const tokens = replies.filter((r) => r.status === 201).map((r) => r.json.token);
    assert.ok(tokens.length > 0, 'mints succeeded before the rotation');
    for (const r of replies.filter((r) => r.status !== 201))
      assert.equal(r.status, 401, `a refused mint: ${r.status} ${r.json?.error?.code}`);

    const alive = [];
    for (const t of tokens) {
      const r = await api(gw, 'GET', '/v1/models', { key: t });
      if (r.status !== 401) alive.push(r.status);
    }
    assert.deepEqual(alive, [], `all ${tokens.length} tokens minted with the rotated-away secret are dead`);
  });
});
