// SPDX-License-Identifier: Apache-2.0
//
// Route table basics: open health checks, the /api/v1/ alias of every route (SPEC §4), and
// unknown routes answering 404 not_found in SPEC §5's JSON error shape.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  api,
  assertError,
  createToken,
  ok,
  readRootKey,
  sandbox,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

const stable = ({ key, last_used_at, ...rest }) => rest;

describe('routes', () => {
  let sb;
  let gw;
  let root;

  before(async () => {
    sb = sandbox('routes');
    gw = await startGateway(sb);
    root = readRootKey(sb);
  });
  after(stopAll);

  test('/healthz and /readyz answer 200 {"status":"ok"} without a key', async () => {
    for (const p of ['/healthz', '/readyz']) {
      const r = await api(gw, 'GET', p);
      assert.equal(r.status, 200, p);
      assert.deepEqual(r.json, { status: 'ok' }, p);
      assert.match(r.headers.get('content-type'), /^application\/json/);
      const withJunk = await api(gw, 'GET', p, { key: 'not-a-key' });
      assert.equal(withJunk.status, 200, `${p} ignores credentials`);
    }
  });

  test('/api/v1/tokens is an alias of /v1/tokens', async () => {
    const made = ok(await api(gw, 'POST', '/api/v1/tokens', { key: root, body: { name: 'via-alias' } }), 201);
    assert.match(made.key, /^kg_live_/);
    const one = ok(await api(gw, 'GET', `/api/v1/tokens/${made.id}`, { key: root }));
    assert.deepEqual(stable(one), stable(ok(await api(gw, 'GET', `/v1/tokens/${made.id}`, { key: root }))));
    const list = ok(await api(gw, 'GET', '/api/v1/tokens?limit=100', { key: root }));
    assert.ok(list.data.some((t) => t.id === made.id));
    assert.deepEqual(list.data.map(stable), ok(await api(gw, 'GET', '/v1/tokens?limit=100', { key: root })).data.map(stable));
    assert.equal(ok(await api(gw, 'PATCH', `/api/v1/tokens/${made.id}`, { key: root, body: { name: 'renamed' } })).name, 'renamed');
    assert.equal(ok(await api(gw, 'POST', `/api/v1/tokens/${made.id}/disable`, { key: root })).status, 'disabled');
    assert.equal(ok(await api(gw, 'POST', `/api/v1/tokens/${made.id}/enable`, { key: root })).status, 'active');
    assert.match(ok(await api(gw, 'POST', `/api/v1/tokens/${made.id}/rotate`, { key: root })).key, /^kg_live_/);
    assert.equal(ok(await api(gw, 'DELETE', `/api/v1/tokens/${made.id}`, { key: root })).status, 'revoked');
  });

  test('the other admin routes are aliased too', async () => {
    const gk = ok(await api(gw, 'POST', '/api/v1/gateway-keys', { key: root, body: { name: 'alias-gk' } }), 201);
    assert.match(gk.key, /^kg_gk_/);
    ok(await api(gw, 'GET', '/api/v1/gateway-keys', { key: root }));
    const envs = ok(await api(gw, 'GET', '/api/v1/admin/environments', { key: root }));
    assert.ok(envs.data.some((e) => e.name === 'production'));
    ok(await api(gw, 'GET', '/api/v1/admin/orgs', { key: root }));
    const ev = ok(await api(gw, 'GET', '/api/v1/audit-events?limit=5', { key: root }));
    assert.equal(ev.object, 'list');
    assertError(await api(gw, 'GET', '/api/v1/tokens'), 401, 'missing_api_key', { what: 'the alias is authenticated too' });
  });

  test('unknown routes answer 404 not_found as JSON', async () => {
    const t = await createToken(gw, root, { name: 'route-probe' });
    for (const [method, p, key] of [
      ['GET', '/'],
      ['GET', '/nope'],
      ['POST', '/nope'],
      ['GET', '/v1'],
      ['GET', '/v1/nope'],
      ['GET', '/v2/tokens'],
      ['GET', '/api/v2/tokens'],
      ['GET', '/api/v1'],
      ['GET', '/v1/tokensx', root],
      ['GET', `/v1/tokens/${t.id}/nope`, root],
      ['GET', `/v1/tokens/${t.id}/rotate/again`, root],
      ['GET', '/v1/admin', root],
      ['GET', '/v1/admin/nope', root],
      ['GET', '/v1/audit-events/1', root],
      ['POST', `/v1/gateway-keys/${t.id}/disable`, root],
    ]) {
      const r = await api(gw, method, p, { key });
      assertError(r, 404, 'not_found', { what: `${method} ${p}` });
    }
  });
});
