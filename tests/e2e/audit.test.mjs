// SPDX-License-Identifier: Apache-2.0
//
// The audit log (SPEC §1, §6): every change to a key or a policy object writes one event with
// the actor (the admin key's pk id over HTTP, "cli:local" on the local store), the action, the
// object, the changed fields (never secrets), the time and the remote address.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  SECRET_RE_G,
  api,
  cliJson,
  createToken,
  listAll,
  nowSec,
  ok,
  readRootKey,
  sandbox,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

describe('audit log', () => {
  let sb;
  let gw;
  let root;
  let rootId;
  let t0;
  const secrets = [];
  const http = {}; // ids of objects changed over HTTP
  const local = {}; // ids of objects changed by the local CLI

  const allEvents = () => listAll(gw, root, '/v1/audit-events');
  const eventsOf = async (id) => (await allEvents()).filter((e) => e.object_id === id);

  before(async () => {
    sb = sandbox('audit');
    gw = await startGateway(sb);
    root = readRootKey(sb);
    secrets.push(root);
    rootId = ok(await api(gw, 'GET', '/v1/tokens?type=admin', { key: root })).data[0].id;
    t0 = nowSec() - 1; // coarse-clock skew

    // Changes over HTTP.
    const t = await createToken(gw, root, { name: 'aud', rate_limits: { rpm: 5 } });
    secrets.push(t.key);
    http.token = t.id;
    ok(await api(gw, 'PATCH', `/v1/tokens/${t.id}`, {
      key: root,
      body: { name: 'aud-2', rate_limits: { rpm: 10 }, metadata: { team: 'x' } },
    }));
    secrets.push(ok(await api(gw, 'POST', `/v1/tokens/${t.id}/rotate`, { key: root, body: { grace_seconds: 30 } })).key);
    ok(await api(gw, 'POST', `/v1/tokens/${t.id}/disable`, { key: root }));
    ok(await api(gw, 'POST', `/v1/tokens/${t.id}/enable`, { key: root }));
    ok(await api(gw, 'DELETE', `/v1/tokens/${t.id}`, { key: root }));
    ok(await api(gw, 'POST', '/v1/admin/environments', { key: root, body: { name: 'qa', live: false } }), 201);
    http.env = 'qa';
    const org = ok(await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'aud-org' } }), 201);
    secrets.push(org.admin_key.key);
    http.org = org.id;
    const gk = ok(await api(gw, 'POST', '/v1/gateway-keys', { key: root, body: { name: 'aud-gk' } }), 201);
    secrets.push(gk.key);
    secrets.push(ok(await api(gw, 'POST', `/v1/gateway-keys/${gk.id}/rotate`, { key: root })).key);
    http.gk = gk.id;

    // Changes by the local CLI, on the same store.
    const c = cliJson(await sb.cli(['access-key', 'create', '--name', 'aud-cli', '--json']));
    secrets.push(c.key);
    local.token = c.id;
    cliJson(await sb.cli(['access-key', 'update', '--id', c.id, '--name', 'aud-cli-2', '--rpm', '7', '--json']));
    secrets.push(cliJson(await sb.cli(['access-key', 'rotate', '--id', c.id, '--grace', '1h', '--json'])).key);
    assert.equal((await sb.cli(['access-key', 'disable', '--id', c.id])).code, 0);
    assert.equal((await sb.cli(['access-key', 'enable', '--id', c.id])).code, 0);
    assert.equal((await sb.cli(['access-key', 'delete', '--id', c.id])).code, 0);
    assert.equal((await sb.cli(['environment', 'create', '--name', 'qa-local'])).code, 0);
    local.env = 'qa-local';
    const o = await sb.cli(['org', 'create', '--name', 'aud-cli-org', '--json']);
    const oj = cliJson(o);
    secrets.push(oj.admin_key.key);
    local.org = oj.id;
  });
  after(stopAll);

  function assertEventShape(e) {
    for (const f of ['id', 'object', 'org_id', 'actor', 'action', 'object_type', 'object_id', 'changes', 'remote_addr', 'created_at'])
      assert.ok(Object.hasOwn(e, f), `event has "${f}"`);
    assert.equal(e.object, 'audit_event');
    assert.equal(typeof e.changes, 'object');
    assert.ok(e.created_at >= t0 && e.created_at <= nowSec(), `created_at ${e.created_at} is now`);
  }

  test('token changes over HTTP: actor = admin pk id, remote_addr 127.0.0.1, one event each', async () => {
    const ev = await eventsOf(http.token);
    assert.deepEqual(
      ev.map((e) => e.action),
      ['token.revoked', 'token.enabled', 'token.disabled', 'token.rotated', 'token.updated', 'token.created'],
      'newest first'
    );
    for (const e of ev) {
      assertEventShape(e);
      assert.equal(e.actor, rootId, `${e.action} actor`);
      assert.equal(e.remote_addr, '127.0.0.1', `${e.action} remote_addr`);
      assert.equal(e.org_id, 'org_default');
      assert.equal(e.object_type, 'token');
      assert.equal(e.object_id, http.token);
    }
    const by = Object.fromEntries(ev.map((e) => [e.action, e.changes]));
    assert.equal(by['token.created'].name, 'aud', 'create records the fields');
    assert.deepEqual(by['token.created'].rate_limits, { rpm: 5 });
    assert.equal(by['token.created'].key, undefined, 'never the secret');
    assert.deepEqual(by['token.updated'], {
      name: { from: 'aud', to: 'aud-2' },
      rate_limits: { from: { rpm: 5 }, to: { rpm: 10 } },
      metadata: { from: {}, to: { team: 'x' } },
    });
    assert.deepEqual(by['token.disabled'], { enabled: { from: true, to: false } });
    assert.deepEqual(by['token.enabled'], { enabled: { from: false, to: true } });
    assert.ok(Object.hasOwn(by['token.revoked'], 'revoked_at'), 'revoke records revoked_at');
    assert.equal(typeof by['token.revoked'].revoked_at.to, 'number');
  });

  test('environment and org creation over HTTP are audited', async () => {
    const [env] = await eventsOf(http.env);
    assert.ok(env, 'an event for the environment');
    assertEventShape(env);
    assert.deepEqual([env.action, env.object_type, env.actor, env.remote_addr], ['environment.created', 'environment', rootId, '127.0.0.1']);
    assert.equal(env.changes.name, 'qa');
    assert.equal(env.changes.live, false);

    const org = (await eventsOf(http.org)).find((e) => e.action === 'org.created');
    assert.ok(org, 'org.created is in the creating org\'s log');
    assertEventShape(org);
    assert.deepEqual([org.object_type, org.actor, org.remote_addr], ['org', rootId, '127.0.0.1']);
    assert.equal(org.changes.name, 'aud-org');

    const gk = await eventsOf(http.gk);
    assert.deepEqual(gk.map((e) => e.action), ['token.rotated', 'token.created'], 'the legacy surface is audited too');
  });

  test('local CLI changes: actor cli:local, remote_addr null', async () => {
    const ev = await eventsOf(local.token);
    assert.deepEqual(ev.map((e) => e.action), [
      'token.revoked', 'token.enabled', 'token.disabled', 'token.rotated', 'token.updated', 'token.created',
    ]);
    for (const e of ev) {
      assertEventShape(e);
      assert.equal(e.actor, 'cli:local');
      assert.equal(e.remote_addr, null);
    }
    assert.deepEqual(ev.find((e) => e.action === 'token.updated').changes, {
      name: { from: 'aud-cli', to: 'aud-cli-2' },
      rate_limits: { from: null, to: { rpm: 7 } },
    });
    const [env] = await eventsOf(local.env);
    assert.deepEqual([env.action, env.actor, env.remote_addr], ['environment.created', 'cli:local', null]);
    const org = (await eventsOf(local.org)).find((e) => e.action === 'org.created');
    assert.ok(org, 'keygate org create is audited');
    assert.deepEqual([org.actor, org.remote_addr], ['cli:local', null]);
  });

  test('`keygate audit --key ID --json` shows the same events as the API', async () => {
    for (const id of [http.token, local.token, http.gk]) {
      const viaCli = cliJson(await sb.cli(['audit', '--key', id, '--json']));
      assert.equal(viaCli.object, 'list');
      assert.deepEqual(viaCli.data, await eventsOf(id), `events of ${id}`);
    }
  });

  test('`keygate audit --key ID` prints a table', async () => {
    const r = await sb.cli(['audit', '--key', http.token]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^TIME\s+ACTOR\s+ACTION\s+OBJECT\s+FROM\s+CHANGES\s*$/);
    assert.equal(lines.length, 7, 'a header and six events');
    assert.match(lines[1], new RegExp(`\\s${rootId}\\s+token\\.revoked\\s+${http.token}\\s+127\\.0\\.0\\.1\\s`));
  });

  test('GET /v1/audit-events?key=<id> filters by object', async () => {
    for (const id of [http.token, local.token]) {
      const r = ok(await api(gw, 'GET', `/v1/audit-events?key=${id}&limit=100`, { key: root }), 200, `?key=${id}`);
      assert.deepEqual(r.data, await eventsOf(id));
    }
  });

  test('a refused change writes no event', async () => {
    const t = await createToken(gw, root, { name: 'quiet' });
    const before = (await allEvents()).length;
    for (const [method, route, body] of [
      ['PATCH', `/v1/tokens/${t.id}`, { name: '' }],
      ['PATCH', `/v1/tokens/${t.id}`, { environment: 'staging' }],
      ['POST', `/v1/tokens/${t.id}/rotate`, { grace_seconds: -1 }],
      ['POST', '/v1/tokens', { name: 'x', scopes: ['bogus'] }],
      ['POST', '/v1/admin/environments', { name: 'production' }],
    ]) {
      const r = await api(gw, method, route, { key: root, body });
      assert.ok(r.status >= 400, `${method} ${route} refused`);
    }
    assert.equal((await allEvents()).length, before, 'no event for refused changes');
  });

  test('reads are not audited; from / limit / after page the log', async () => {
    const before = (await allEvents()).length;
    ok(await api(gw, 'GET', `/v1/tokens/${http.token}`, { key: root }));
    ok(await api(gw, 'GET', '/v1/tokens', { key: root }));
    assert.equal((await allEvents()).length, before, 'GETs write nothing');

    const p1 = ok(await api(gw, 'GET', '/v1/audit-events?limit=2', { key: root }));
    assert.equal(p1.data.length, 2);
    assert.equal(p1.has_more, true);
    const p2 = ok(await api(gw, 'GET', `/v1/audit-events?limit=2&after=${p1.last_id}`, { key: root }));
    assert.equal(p2.data.length, 2);
    assert.ok(p2.data[0].id < p1.data[1].id, 'the next page continues, newest first');
    const future = ok(await api(gw, 'GET', `/v1/audit-events?from=${nowSec() + 3600}`, { key: root }));
    assert.deepEqual(future.data, []);
    const all = await allEvents();
    const ids = all.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((x, y) => y - x), 'newest first');
    assert.equal(new Set(ids).size, ids.length, 'no event listed twice');
  });

  test('no event contains a secret', async () => {
    const text = JSON.stringify(await allEvents());
    assert.equal(text.match(SECRET_RE_G), null, 'no secret-shaped string in the audit log');
    for (const s of secrets) {
      assert.equal(text.includes(s), false, 'a secret of this run is in the audit log');
      assert.equal(text.includes(s.slice(12, -4)), false, 'the hidden middle of a secret is in the audit log');
    }
  });
});
