// SPDX-License-Identifier: Apache-2.0
//
// Organizations (SPEC §1, §6): only the root admin key manages them; a new org comes with its
// own admin key; nothing of org A is visible or usable with org B's keys — a foreign id answers
// 404, never 403, and leaves the object untouched.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  SECRET_RE_G,
  api,
  assertError,
  assertSecret,
  cliJson,
  createToken,
  listAll,
  ok,
  readRootKey,
  redact,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

/** The members of a token that any change through one of the routes below would move. */
const fingerprint = ({ name, status, enabled, prefix, last4, revoked_at, last_rotated_at }) => ({
  name, status, enabled, prefix, last4, revoked_at, last_rotated_at,
});

describe('organizations', () => {
  let sb;
  let gw;
  let root;
  let orgB; // POST /v1/admin/orgs reply
  let bKey; // org B's admin secret
  const a = {}; // org A (default) tokens: access, gateway (legacy), admin

  before(async () => {
    sb = sandbox('orgs');
    gw = await startGateway(sb);
    root = readRootKey(sb);
    a.access = await createToken(gw, root, { name: 'a-access' });
    a.gateway = ok(await api(gw, 'POST', '/v1/gateway-keys', { key: root, body: { name: 'a-gateway' } }), 201);
    a.admin = await createToken(gw, root, { token_type: 'admin', name: 'a-admin' });
    ok(await api(gw, 'PATCH', `/v1/tokens/${a.access.id}`, { key: root, body: { name: 'a-access-edited' } }));
    await settleKey(gw, a.admin.key, 200);
  });
  after(stopAll);

  test('POST /v1/admin/orgs with the root key → 201 with the new org\'s admin key', async () => {
    const r = await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'org-b' } });
    orgB = ok(r, 201);
    assert.match(orgB.id, /^org_[0-9A-Za-z]+$/);
    assert.equal(orgB.name, 'org-b');
    assert.equal(typeof orgB.created_at, 'number');
    const k = orgB.admin_key;
    assert.equal(k.object, 'token');
    assert.equal(k.token_type, 'admin');
    assert.equal(k.org_id, orgB.id);
    assertSecret(k.key, 'admin', 'the new org\'s admin key');
    bKey = k.key;
    await settleKey(gw, bKey, 200);

    const me = ok(await api(gw, 'GET', `/v1/tokens/${k.id}`, { key: bKey }));
    assert.equal(me.org_id, orgB.id);
    assert.equal(me.key, undefined);
    const envs = ok(await api(gw, 'GET', '/v1/admin/environments', { key: bKey }));
    assert.deepEqual(envs.data.map((e) => e.name).sort(), ['development', 'production', 'staging'], 'the configured environments');
  });

  test('GET /v1/admin/orgs and /v1/admin/orgs/{id} (root)', async () => {
    const l = ok(await api(gw, 'GET', '/v1/admin/orgs', { key: root }));
    assert.equal(l.object, 'list');
    const names = l.data.map((o) => o.name);
    assert.ok(names.includes('default') && names.includes('org-b'), names.join(','));
    assert.equal(JSON.stringify(l).match(SECRET_RE_G), null, 'no secret in the org list');
    const one = ok(await api(gw, 'GET', `/v1/admin/orgs/${orgB.id}`, { key: root }));
    assert.equal(one.id, orgB.id);
    assert.equal(one.name, 'org-b');
    assert.equal(one.admin_key, undefined, 'the admin key is shown only at creation');
    assertError(await api(gw, 'GET', '/v1/admin/orgs/org_doesnotexist', { key: root }), 404, 'not_found');
  });

  test('org creation is refused for bad names and duplicates', async () => {
    assertError(await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: '' } }), 400, 'invalid_value', { param: 'name' });
    assertError(await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'x', colour: 1 } }), 400, 'unknown_parameter', {
      param: 'colour',
    });
    const dup = await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'org-b' } });
    assert.ok(dup.status >= 400 && dup.status < 500, `duplicate name refused: ${dup.status}`);
    assert.equal(dup.text.match(SECRET_RE_G), null);
  });

  test('a non-root admin key (of either org) → 403 admin_required on /v1/admin/orgs', async () => {
    for (const [who, key] of [['org A admin', a.admin.key], ['org B admin', bKey]]) {
      assertError(await api(gw, 'POST', '/v1/admin/orgs', { key, body: { name: 'org-c' } }), 403, 'admin_required', { what: who });
      assertError(await api(gw, 'GET', '/v1/admin/orgs', { key }), 403, 'admin_required', { what: who });
      assertError(await api(gw, 'GET', `/v1/admin/orgs/${orgB.id}`, { key }), 403, 'admin_required', { what: who });
    }
    const l = ok(await api(gw, 'GET', '/v1/admin/orgs', { key: root }));
    assert.ok(!l.data.some((o) => o.name === 'org-c'), 'nothing was created');
  });

  test('a non-root admin key cannot take over the root admin key (rotate it and read its new secret)', async () => {
    const ops = await createToken(gw, root, { token_type: 'admin', name: 'ops-escalation' });
    await settleKey(gw, ops.key, 200);
    const rootTok = (await listAll(gw, root, '/v1/tokens?type=admin')).find((t) => t.prefix === root.slice(0, 12));
    assert.ok(rootTok, 'the root key is listed');
    const r = await api(gw, 'POST', `/v1/tokens/${rootTok.id}/rotate`, { key: ops.key, body: { grace_seconds: 600 } });
    const stolen = r.json?.key;
    if (stolen) {
      // Show what the leak buys before failing: the rotated root secret manages orgs.
      await settleKey(gw, stolen, 200).catch(() => {});
      const o = await api(gw, 'POST', '/v1/admin/orgs', { key: stolen, body: { name: 'stolen-org' } });
      assert.fail(`a non-root admin key rotated the root key and got its secret (POST /v1/admin/orgs with it: ${o.status})`);
    }
    assert.ok(r.status === 403 || r.status === 404, `refused with 403/404, got ${r.status}`);
    const after = ok(await api(gw, 'GET', `/v1/tokens/${rootTok.id}`, { key: root }));
    assert.equal(after.prefix, rootTok.prefix, 'the root key was not rotated');
  });

  test('an access key → 403 admin_required on /v1/admin/orgs', async () => {
    await settleKey(gw, a.access.key, 403);
    assertError(await api(gw, 'POST', '/v1/admin/orgs', { key: a.access.key, body: { name: 'org-d' } }), 403, 'admin_required');
  });

  describe('cross-org isolation', () => {
    let bToken; // a token org B made itself
    before(async () => {
      bToken = await createToken(gw, bKey, { name: 'b-access' });
    });

    // Table of every token route; each answers 404 not_found to org B for org A's ids.
    const routes = [
      ['GET', (id) => `/v1/tokens/${id}`],
      ['PATCH', (id) => `/v1/tokens/${id}`, { name: 'pwned' }],
      ['PATCH', (id) => `/v1/tokens/${id}`, { enabled: false }],
      ['POST', (id) => `/v1/tokens/${id}/rotate`],
      ['POST', (id) => `/v1/tokens/${id}/rotate`, { grace_seconds: 60 }],
      ['POST', (id) => `/v1/tokens/${id}/disable`],
      ['POST', (id) => `/v1/tokens/${id}/enable`],
      ['DELETE', (id) => `/v1/tokens/${id}`],
      ['GET', (id) => `/api/v1/tokens/${id}`],
      ['DELETE', (id) => `/api/v1/tokens/${id}`],
    ];
    const legacyRoutes = [
      ['GET', (id) => `/v1/gateway-keys/${id}`],
      ['POST', (id) => `/v1/gateway-keys/${id}/rotate`],
      ['DELETE', (id) => `/v1/gateway-keys/${id}`],
    ];

    test('every token route answers 404 not_found for org A\'s ids, and changes nothing', async () => {
      const before = {};
      for (const [k, t] of Object.entries(a)) before[k] = fingerprint(ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root })));
      const failures = [];
      const cases = [];
      for (const t of [a.access, a.gateway, a.admin]) for (const r of routes) cases.push([t, ...r]);
      for (const r of legacyRoutes) cases.push([a.gateway, ...r]);
      for (const [t, method, path, body] of cases) {
        const res = await api(gw, method, path(t.id), { key: bKey, body });
        const what = `${method} ${path(t.id)} (${t.name})`;
        if (res.status !== 404 || res.json?.error?.code !== 'not_found') failures.push(`${what}: ${res.status} ${redact(res.text)}`);
        else assertError(res, 404, 'not_found', { what });
        if (res.text.match(SECRET_RE_G)) failures.push(`${what}: a secret in the reply`);
        if (res.text.includes(t.prefix)) failures.push(`${what}: the reply reveals the token's prefix`);
      }
      assert.deepEqual(failures, []);
      for (const [k, t] of Object.entries(a)) {
        const now = fingerprint(ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root })));
        assert.deepEqual(now, before[k], `org A's ${k} key is untouched`);
      }
      await settleKey(gw, a.admin.key, 200);
    });

    test('org A\'s ids are not found for org B the same way unknown ids are not', async () => {
      const foreign = await api(gw, 'GET', `/v1/tokens/${a.access.id}`, { key: bKey });
      const unknown = await api(gw, 'GET', '/v1/tokens/pk_000000000000000000000000', { key: bKey });
      assert.equal(foreign.status, unknown.status);
      assert.equal(foreign.json.error.code, unknown.json.error.code);
      assert.equal(foreign.json.error.type, unknown.json.error.type);
    });

    test('org B\'s lists contain none of org A\'s tokens', async () => {
      const aIds = new Set(Object.values(a).map((t) => t.id));
      for (const route of [
        '/v1/tokens',
        '/v1/tokens?type=access',
        '/v1/tokens?type=gateway',
        '/v1/tokens?type=admin',
        '/v1/tokens?status=active',
        '/v1/tokens?environment=production',
        '/v1/gateway-keys',
        '/api/v1/tokens',
      ]) {
        const l = await listAll(gw, bKey, route);
        for (const t of l) {
          assert.ok(!aIds.has(t.id), `${route} lists org A's ${t.id}`);
          assert.equal(t.org_id, orgB.id, `${route}: every token is org B's`);
        }
      }
      const all = await listAll(gw, bKey, '/v1/tokens');
      assert.deepEqual(all.map((t) => t.id).sort(), [orgB.admin_key.id, bToken.id].sort(), 'exactly org B\'s tokens');
      // And the other way round.
      const rootList = await listAll(gw, root, '/v1/tokens');
      assert.ok(!rootList.some((t) => t.org_id === orgB.id), 'org A\'s list has none of org B\'s tokens');
    });

    test('org A cannot reach org B\'s tokens either', async () => {
      assertError(await api(gw, 'GET', `/v1/tokens/${bToken.id}`, { key: a.admin.key }), 404, 'not_found');
      assertError(await api(gw, 'POST', `/v1/tokens/${bToken.id}/disable`, { key: a.admin.key }), 404, 'not_found');
      assert.equal(ok(await api(gw, 'GET', `/v1/tokens/${bToken.id}`, { key: bKey })).status, 'active');
    });

    test('org B\'s audit log shows none of org A\'s events', async () => {
      const aIds = new Set(Object.values(a).map((t) => t.id));
      const events = await listAll(gw, bKey, '/v1/audit-events');
      assert.ok(events.length > 0, 'org B has events of its own');
      for (const e of events) {
        assert.equal(e.org_id, orgB.id, `event ${e.id} (${e.action}) belongs to org B`);
        assert.ok(!aIds.has(e.object_id), `event ${e.id} is about org A's ${e.object_id}`);
      }
      assert.ok(events.some((e) => e.action === 'token.created' && e.object_id === bToken.id));
      const aEvents = await listAll(gw, root, '/v1/audit-events');
      assert.ok(!aEvents.some((e) => e.object_id === bToken.id), 'org A\'s log has none of org B\'s token events');
    });

    test('org B\'s audit-events?key=<org A id> is empty (not an error, not A\'s events)', async () => {
      for (const t of Object.values(a)) {
        const mine = ok(await api(gw, 'GET', `/v1/audit-events?key=${t.id}`, { key: root }), 200, `org A ?key=${t.id}`);
        assert.ok(mine.data.length > 0, 'org A sees its own events for the key');
        const l = ok(await api(gw, 'GET', `/v1/audit-events?key=${t.id}`, { key: bKey }), 200, `org B ?key=${t.id}`);
        assert.deepEqual(l.data, [], `?key=${t.id} (org A) is empty for org B`);
      }
    });

    test('environments are per org', async () => {
      ok(await api(gw, 'POST', '/v1/admin/environments', { key: bKey, body: { name: 'b-only' } }), 201);
      const bEnvs = ok(await api(gw, 'GET', '/v1/admin/environments', { key: bKey }));
      assert.ok(bEnvs.data.some((e) => e.name === 'b-only'));
      const aEnvs = ok(await api(gw, 'GET', '/v1/admin/environments', { key: root }));
      assert.ok(!aEnvs.data.some((e) => e.name === 'b-only'), 'org A does not see org B\'s environment');
      assertError(await api(gw, 'GET', '/v1/admin/environments/b-only', { key: root }), 404, 'not_found');
      const r = await api(gw, 'POST', '/v1/tokens', { key: root, body: { name: 'x', environment: 'b-only' } });
      assertError(r, 400, 'invalid_value', { param: 'environment' });
    });
  });

  test('keygate org create / list / show on the local store', async () => {
    const r = await sb.cli(['org', 'create', '--name', 'acme']);
    assert.equal(r.code, 0, r.stderr);
    const head = r.stdout.match(/^Created organization acme \((org_[0-9A-Za-z]+)\)$/m);
    assert.ok(head, redact(r.stdout));
    assert.match(r.stdout, /^admin key: pk_[0-9A-Za-z]{24}$/m);
    const secret = r.stdout.match(/^secret: (\S+)$/m)?.[1];
    assertSecret(secret, 'admin', 'the new org\'s admin key');

    const list = await sb.cli(['org', 'list']);
    assert.equal(list.code, 0);
    assert.match(list.stdout, /^ID\s+NAME\s+CREATED\s*$/m);
    assert.match(list.stdout, new RegExp(`^${head[1]}\\s+acme\\s`, 'm'));
    const show = cliJson(await sb.cli(['org', 'show', '--id', head[1], '--json']));
    assert.equal(show.name, 'acme');

    // The running gateway picks the new org's key up from the store.
    await settleKey(gw, secret, 200);
    const mine = await listAll(gw, secret, '/v1/tokens');
    assert.equal(mine.length, 1);
    assert.equal(mine[0].org_id, head[1]);
    assertError(await api(gw, 'GET', `/v1/tokens/${a.access.id}`, { key: secret }), 404, 'not_found');
  });
});
