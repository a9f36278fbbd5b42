// SPDX-License-Identifier: Apache-2.0
//
// The admin API's token routes (SPEC §6): create, read, list (filters, cursor pagination),
// edit, rotate, disable/enable, revoke; the legacy /v1/gateway-keys surface; and how admin
// routes authenticate (SPEC §2 "Accepted credentials", §5 error codes).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ID_RE,
  SECRET_RE_G,
  api,
  assertError,
  assertSecret,
  breakChecksum,
  createToken,
  forgeSecret,
  listAll,
  nowSec,
  ok,
  rawRequest,
  readRootKey,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

const TOKEN_FIELDS = [
  'id', 'object', 'name', 'description', 'org_id', 'team_id', 'environment', 'token_type', 'purpose', 'scopes',
  'allow', 'allowed_domains', 'prompt_modules', 'prompt_text', 'rate_limits', 'budget', 'metadata', 'enabled',
  'status', 'expires_at', 'created_at', 'created_by', 'last_used_at', 'last_rotated_at', 'revoked_at', 'revoked_by',
  'prefix', 'last4', 'usage',
];
const INFERENCE_SCOPES = ['inference:chat', 'inference:embed', 'inference:transcribe', 'inference:speech', 'inference:image'];

function assertTokenShape(t, what = 'token') {
  for (const f of TOKEN_FIELDS) assert.ok(Object.hasOwn(t, f), `${what} has "${f}"`);
  assert.match(t.id, ID_RE, `${what} id`);
  assert.equal(t.object, 'token');
  assert.ok(['active', 'disabled', 'expired', 'revoked'].includes(t.status), `${what} status ${t.status}`);
  assert.equal(typeof t.enabled, 'boolean');
  assert.equal(typeof t.created_at, 'number');
  assert.equal(t.prefix.length, 12, `${what} prefix is 12 chars`);
  assert.equal(t.last4.length, 4);
  assert.equal(typeof t.usage, 'object');
}

/** The token without the members that legitimately change between two reads. */
const stable = ({ key, last_used_at, ...rest }) => rest;

describe('admin API: token routes', () => {
  let sb;
  let gw;
  let root;
  let rootId;

  before(async () => {
    sb = sandbox('admin-api');
    gw = await startGateway(sb);
    root = readRootKey(sb);
    const me = ok(await api(gw, 'GET', '/v1/tokens?type=admin', { key: root }));
    rootId = me.data[0].id;
    // A key's team_id must name a team of its org (teams: /v1/admin/teams).
    for (const name of ['team-a', 'pager']) ok(await api(gw, 'POST', '/v1/admin/teams', { key: root, body: { name } }), 201);
  });
  after(stopAll);

  describe('POST /v1/tokens', () => {
    test('an access key with the defaults of SPEC §3; the secret is returned once', async () => {
      const before = nowSec() - 1; // the gateway reads the coarse clock: allow a second of skew
      const r = await api(gw, 'POST', '/v1/tokens', { key: root, body: { name: 'defaults' } });
      const t = ok(r, 201);
      assertTokenShape(t);
      assertSecret(t.key, 'live', 'production access key');
      assert.equal(t.prefix, t.key.slice(0, 12));
      assert.equal(t.last4, t.key.slice(-4));
      assert.equal(t.name, 'defaults');
      assert.equal(t.token_type, 'access');
      assert.equal(t.environment, 'production');
      assert.equal(t.purpose, 'inference');
      assert.deepEqual([...t.scopes].sort(), [...INFERENCE_SCOPES].sort(), 'every scope of the purpose');
      for (const kind of ['agents', 'models', 'datasets', 'prompts']) assert.equal(t.allow[kind], '*', `allow.${kind}`);
      assert.equal(t.org_id, 'org_default');
      assert.equal(t.created_by, rootId);
      assert.ok(t.created_at >= before && t.created_at <= nowSec());
      assert.equal(t.status, 'active');
      assert.equal(t.enabled, true);
      assert.equal(t.expires_at, null);
      assert.equal(t.revoked_at, null);
      assert.equal(t.last_used_at, null);
      assert.deepEqual(t.metadata, {});
      assert.match(r.headers.get('content-type'), /^application\/json/);

      const again = ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root }));
      assert.equal(again.key, undefined, 'GET never returns the secret');
      assert.deepEqual(stable(again), stable(t));
      assert.equal(JSON.stringify(again).match(SECRET_RE_G), null);
    });

    test('every field of SPEC §3 round-trips', async () => {
      const exp = nowSec() + 86400;
      const body = {
        name: 'full',
        description: 'all the fields',
        environment: 'staging',
        purpose: 'inference',
        scopes: ['inference:chat'],
        allow: { models: ['demo-chat', 'gpt-4o*'], agents: ['support-bot'] },
        allowed_domains: ['example.com', '*.example.org'],
        prompt_modules: ['no-pii'],
        prompt_text: 'Be brief.',
        rate_limits: { rpm: 10, tpm: 1000, rpd: 100, max_concurrency: 2 },
        budget: { limit_credits: 5, period: 'month' },
        metadata: { owner: 'team-a', n: 1 },
        team_id: 'team-a',
        expires_at: exp,
      };
      const t = await createToken(gw, root, body);
      assertSecret(t.key, 'test', 'staging access key');
      for (const [k, v] of Object.entries(body)) assert.deepEqual(t[k], v, k);
      const back = ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root }));
      for (const [k, v] of Object.entries(body)) assert.deepEqual(back[k], v, `GET ${k}`);
    });

    test('presets fill the scopes; development is not live', async () => {
      const t = await createToken(gw, root, { name: 'p', preset: 'chat-embeddings', environment: 'development' });
      assert.deepEqual([...t.scopes].sort(), ['inference:chat', 'inference:embed']);
      assertSecret(t.key, 'test');
      const c = await createToken(gw, root, { name: 'conv', preset: 'conversation-app' });
      assert.equal(c.purpose, 'conversation');
      assert.deepEqual(c.scopes, ['conversations:write']);
    });

    test('admin and gateway keys', async () => {
      const a = await createToken(gw, root, { token_type: 'admin', name: 'ops' });
      assertSecret(a.key, 'admin');
      assert.equal(a.token_type, 'admin');
      assert.equal(a.environment, null, 'admin keys have no environment');
      const g = await createToken(gw, root, { token_type: 'gateway', name: 'edge' });
      assertSecret(g.key, 'live', '/v1/tokens gateway key in production');
      assert.equal(g.token_type, 'gateway');
      assert.equal(g.environment, 'production');
    });
  });

  describe('GET / PATCH / rotate / disable / enable / DELETE /v1/tokens/{id}', () => {
    let t;
    before(async () => {
      t = await createToken(gw, root, { name: 'life', preset: 'openai-chat', rate_limits: { rpm: 5 } });
    });

    test('PATCH edits the editable fields and returns the token', async () => {
      const exp = nowSec() + 3600;
      const patch = {
        name: 'life-2',
        description: 'edited',
        rate_limits: { rpm: 50, tpm: 5000 },
        metadata: { k: 'v' },
        expires_at: exp,
        scopes: ['inference:chat', 'inference:embed'],
        allow: { models: ['demo-*'], agents: [] }, // a publishable key (allowed_domains) needs explicit lists
        allowed_domains: ['app.example.com'],
        budget: { limit_credits: 1.5, period: 'day' },
      };
      const r = ok(await api(gw, 'PATCH', `/v1/tokens/${t.id}`, { key: root, body: patch }));
      for (const [k, v] of Object.entries(patch)) assert.deepEqual(r[k], v, k);
      assert.equal(r.key, undefined);
      assert.equal(r.prefix, t.prefix, 'an edit keeps the secret');
      const back = ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root }));
      for (const [k, v] of Object.entries(patch)) assert.deepEqual(back[k], v, `GET ${k}`);

      const cleared = ok(await api(gw, 'PATCH', `/v1/tokens/${t.id}`, { key: root, body: { expires_at: null, description: null } }));
      assert.equal(cleared.expires_at, null);
      assert.equal(cleared.description, null);
      assert.equal(cleared.name, 'life-2', 'fields not named keep their values');
    });

    test('PATCH enabled:false disables, enabled:true enables', async () => {
      assert.equal(ok(await api(gw, 'PATCH', `/v1/tokens/${t.id}`, { key: root, body: { enabled: false } })).status, 'disabled');
      assert.equal(ok(await api(gw, 'PATCH', `/v1/tokens/${t.id}`, { key: root, body: { enabled: true } })).status, 'active');
    });

    test('POST /disable and /enable toggle the key', async () => {
      const d = ok(await api(gw, 'POST', `/v1/tokens/${t.id}/disable`, { key: root }));
      assert.equal(d.status, 'disabled');
      assert.equal(d.enabled, false);
      assert.equal(ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root })).status, 'disabled');
      const e = ok(await api(gw, 'POST', `/v1/tokens/${t.id}/enable`, { key: root }));
      assert.equal(e.status, 'active');
      assert.equal(e.enabled, true);
    });

    test('POST /rotate returns a new secret once, keeps id and limits', async () => {
      const r = ok(await api(gw, 'POST', `/v1/tokens/${t.id}/rotate`, { key: root }));
      assert.equal(r.id, t.id);
      assertSecret(r.key, 'live');
      assert.notEqual(r.key, t.key);
      assert.equal(r.prefix, r.key.slice(0, 12));
      assert.equal(r.last4, r.key.slice(-4));
      assert.equal(r.grace_until, null, 'no grace asked: none given');
      assert.equal(typeof r.last_rotated_at, 'number');
      assert.deepEqual(r.rate_limits, { rpm: 50, tpm: 5000 });
      assert.equal(r.created_at, t.created_at);

      const before = nowSec() - 1; // the gateway reads the coarse clock: allow a second of skew
      const g = ok(await api(gw, 'POST', `/v1/tokens/${t.id}/rotate`, { key: root, body: { grace_seconds: 60 } }));
      assertSecret(g.key, 'live');
      assert.ok(g.grace_until >= before + 60 && g.grace_until <= nowSec() + 60, `grace_until ${g.grace_until}`);
      const back = ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root }));
      assert.equal(back.prefix, g.key.slice(0, 12));
      assert.equal(back.key, undefined);
    });

    test('DELETE revokes: status revoked, deleted:true, kept for audit', async () => {
      const r = ok(await api(gw, 'DELETE', `/v1/tokens/${t.id}`, { key: root }));
      assert.equal(r.id, t.id);
      assert.equal(r.deleted, true);
      assert.equal(r.status, 'revoked');
      assert.equal(r.revoked_by, rootId);
      assert.equal(typeof r.revoked_at, 'number');
      const back = ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root }));
      assert.equal(back.status, 'revoked');
      const revoked = await listAll(gw, root, '/v1/tokens?status=revoked');
      assert.ok(revoked.some((x) => x.id === t.id), 'listed with ?status=revoked');
      const active = await listAll(gw, root, '/v1/tokens?status=active');
      assert.ok(!active.some((x) => x.id === t.id), 'not listed as active');
    });

    test('a revoked key cannot be rotated, enabled or edited back to life', async () => {
      for (const [method, route, body] of [
        ['POST', `/v1/tokens/${t.id}/rotate`, undefined],
        ['POST', `/v1/tokens/${t.id}/enable`, undefined],
        ['PATCH', `/v1/tokens/${t.id}`, { enabled: true }],
      ]) {
        const r = await api(gw, method, route, { key: root, body });
        assert.ok(r.status >= 400 && r.status < 500, `${method} ${route}: refused (${r.status})`);
        assert.equal(r.text.match(SECRET_RE_G), null, 'no secret minted for a revoked key');
      }
      assert.equal(ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: root })).status, 'revoked');
    });

    test('unknown and malformed ids answer 404 not_found on every route', async () => {
      for (const id of ['pk_000000000000000000000000', 'pk_short', 'nope']) {
        for (const [method, suffix, body] of [
          ['GET', '', undefined],
          ['PATCH', '', { name: 'x' }],
          ['DELETE', '', undefined],
          ['POST', '/rotate', undefined],
          ['POST', '/disable', undefined],
          ['POST', '/enable', undefined],
        ]) {
          assertError(await api(gw, method, `/v1/tokens/${id}${suffix}`, { key: root, body }), 404, 'not_found', {
            what: `${method} /v1/tokens/${id}${suffix}`,
          });
        }
      }
    });

    test('a wrong method answers 405 method_not_allowed', async () => {
      assertError(await api(gw, 'PUT', '/v1/tokens', { key: root, body: {} }), 405, 'method_not_allowed');
      assertError(await api(gw, 'DELETE', '/v1/tokens', { key: root }), 405, 'method_not_allowed');
      assertError(await api(gw, 'PUT', `/v1/tokens/${t.id}`, { key: root, body: {} }), 405, 'method_not_allowed');
      assertError(await api(gw, 'GET', `/v1/tokens/${t.id}/rotate`, { key: root }), 405, 'method_not_allowed');
    });
  });

  describe('legacy /v1/gateway-keys', () => {
    let gk;
    let access;
    before(async () => {
      const r = await api(gw, 'POST', '/v1/gateway-keys', { key: root, body: { name: 'legacy-edge' } });
      gk = ok(r, 201, 'POST /v1/gateway-keys');
      access = await createToken(gw, root, { name: 'not-a-gateway-key' });
    });

    test('POST mints a kg_gk_ gateway key', () => {
      assertTokenShape(gk);
      assertSecret(gk.key, 'gk');
      assert.equal(gk.token_type, 'gateway');
      assert.equal(gk.environment, 'production');
    });

    test('GET list and GET one are the same objects as /v1/tokens?type=gateway', async () => {
      const legacy = ok(await api(gw, 'GET', '/v1/gateway-keys?limit=100', { key: root }));
      const typed = ok(await api(gw, 'GET', '/v1/tokens?type=gateway&limit=100', { key: root }));
      assert.equal(legacy.object, 'list');
      assert.deepEqual(legacy.data.map(stable), typed.data.map(stable));
      assert.ok(legacy.data.some((x) => x.id === gk.id));
      for (const x of legacy.data) assert.equal(x.token_type, 'gateway');
      const one = ok(await api(gw, 'GET', `/v1/gateway-keys/${gk.id}`, { key: root }));
      assert.deepEqual(stable(one), stable(ok(await api(gw, 'GET', `/v1/tokens/${gk.id}`, { key: root }))));
    });

    test('POST /rotate gives a new kg_gk_ secret', async () => {
      const r = ok(await api(gw, 'POST', `/v1/gateway-keys/${gk.id}/rotate`, { key: root }));
      assert.equal(r.id, gk.id);
      assertSecret(r.key, 'gk');
      assert.notEqual(r.key, gk.key);
    });

    test('an access key id is not found on the legacy surface (and is left untouched)', async () => {
      assertError(await api(gw, 'GET', `/v1/gateway-keys/${access.id}`, { key: root }), 404, 'not_found');
      assertError(await api(gw, 'DELETE', `/v1/gateway-keys/${access.id}`, { key: root }), 404, 'not_found');
      assertError(await api(gw, 'POST', `/v1/gateway-keys/${access.id}/rotate`, { key: root }), 404, 'not_found');
      const t = ok(await api(gw, 'GET', `/v1/tokens/${access.id}`, { key: root }));
      assert.equal(t.status, 'active');
      assert.equal(t.prefix, access.prefix);
    });

    test('the legacy surface makes gateway keys only', async () => {
      const r = await api(gw, 'POST', '/v1/gateway-keys', { key: root, body: { name: 'x', token_type: 'access' } });
      assertError(r, 400, 'invalid_value', { param: 'token_type' });
    });

    test('DELETE revokes the gateway key', async () => {
      const r = ok(await api(gw, 'DELETE', `/v1/gateway-keys/${gk.id}`, { key: root }));
      assert.equal(r.status, 'revoked');
      assert.equal(r.deleted, true);
      const revoked = ok(await api(gw, 'GET', '/v1/gateway-keys?status=revoked', { key: root }));
      assert.ok(revoked.data.some((x) => x.id === gk.id));
    });
  });

  describe('GET /v1/tokens: pagination and filters', () => {
    const made = []; // oldest first
    before(async () => {
      for (let i = 0; i < 7; i++) made.push(await createToken(gw, root, { name: `page-${i}`, team_id: 'pager' }));
    });

    test('limit / after / has_more walk the list newest first, without gaps or repeats', async () => {
      const seen = [];
      let after = null;
      const sizes = [];
      for (let page = 0; page < 5; page++) {
        const q = `/v1/tokens?team=pager&limit=3${after ? `&after=${after}` : ''}`;
        const r = ok(await api(gw, 'GET', q, { key: root }));
        assert.equal(r.object, 'list');
        sizes.push(r.data.length);
        if (r.data.length) {
          assert.equal(r.first_id, r.data[0].id, 'first_id');
          assert.equal(r.last_id, r.data.at(-1).id, 'last_id');
        }
        seen.push(...r.data.map((x) => x.id));
        if (!r.has_more) break;
        after = r.last_id;
      }
      assert.deepEqual(sizes, [3, 3, 1]);
      assert.deepEqual(seen, made.map((x) => x.id).reverse(), 'newest first, each once');
    });

    test('an exact last page says has_more:false', async () => {
      const r = ok(await api(gw, 'GET', `/v1/tokens?team=pager&limit=7`, { key: root }));
      assert.equal(r.data.length, 7);
      assert.equal(r.has_more, false);
      const r6 = ok(await api(gw, 'GET', `/v1/tokens?team=pager&limit=6`, { key: root }));
      assert.equal(r6.has_more, true);
    });

    test('the default page has at most 20 entries', async () => {
      const r = ok(await api(gw, 'GET', '/v1/tokens', { key: root }));
      assert.ok(r.data.length <= 20 && r.data.length > 0);
    });

    test('teams: a key may name only a team of its org; a team in use cannot be deleted', async () => {
      assertError(await api(gw, 'POST', '/v1/tokens', { key: root, body: { name: 'x', team_id: 'no-such-team' } }), 400, 'invalid_value', { param: 'team_id' });
      const team = ok(await api(gw, 'POST', '/v1/admin/teams', { key: root, body: { name: 'gamma', tier: 'pro' } }), 201);
      assert.equal(team.tier, 'pro');
      assertError(await api(gw, 'POST', '/v1/admin/teams', { key: root, body: { name: 'delta', tier: 'gold' } }), 400, 'invalid_value', { param: 'tier' });
      const k = await createToken(gw, root, { name: 'in-gamma', team_id: 'gamma' });
      assert.equal(k.team_id, 'gamma');
      assertError(await api(gw, 'DELETE', '/v1/admin/teams/gamma', { key: root }), 400, 'invalid_value');
      ok(await api(gw, 'PATCH', `/v1/tokens/${k.id}`, { key: root, body: { team_id: null } }));
      ok(await api(gw, 'DELETE', '/v1/admin/teams/gamma', { key: root }));
    });

    test('type, status, environment and team filter', async () => {
      const all = await listAll(gw, root, '/v1/tokens');
      assert.ok(all.length > 10);
      for (const type of ['access', 'gateway', 'admin']) {
        const l = await listAll(gw, root, `/v1/tokens?type=${type}`);
        assert.ok(l.length > 0, `some ${type} keys`);
        assert.deepEqual(l.map((x) => x.id), all.filter((x) => x.token_type === type).map((x) => x.id), `type=${type}`);
      }
      for (const env of ['staging', 'production', 'development']) {
        const l = await listAll(gw, root, `/v1/tokens?environment=${env}`);
        assert.deepEqual(l.map((x) => x.id), all.filter((x) => x.environment === env).map((x) => x.id), `environment=${env}`);
      }
      const team = await listAll(gw, root, '/v1/tokens?team=pager');
      assert.equal(team.length, 7);
      for (const x of team) assert.equal(x.team_id, 'pager');

      await api(gw, 'POST', `/v1/tokens/${made[2].id}/disable`, { key: root });
      await api(gw, 'DELETE', `/v1/tokens/${made[3].id}`, { key: root });
      const disabled = await listAll(gw, root, '/v1/tokens?team=pager&status=disabled');
      assert.deepEqual(disabled.map((x) => x.id), [made[2].id]);
      const revoked = await listAll(gw, root, '/v1/tokens?team=pager&status=revoked');
      assert.deepEqual(revoked.map((x) => x.id), [made[3].id]);
      const active = await listAll(gw, root, '/v1/tokens?team=pager&status=active');
      assert.equal(active.length, 5);
      for (const x of active) assert.equal(x.status, 'active');
      const combo = await listAll(gw, root, '/v1/tokens?type=access&environment=staging&status=active');
      for (const x of combo) assert.deepEqual([x.token_type, x.environment, x.status], ['access', 'staging', 'active']);
    });

    test('bad filters are refused', async () => {
      assertError(await api(gw, 'GET', '/v1/tokens?type=bogus', { key: root }), 400, 'invalid_value', { param: 'type' });
      assertError(await api(gw, 'GET', '/v1/tokens?status=bogus', { key: root }), 400, 'invalid_value', { param: 'status' });
      assertError(await api(gw, 'GET', '/v1/tokens?colour=red', { key: root }), 400, 'unknown_parameter', { param: 'colour' });
    });

    test('lists never contain secrets', async () => {
      const r = await api(gw, 'GET', '/v1/tokens?limit=100', { key: root });
      assert.equal(r.text.match(SECRET_RE_G), null);
      for (const x of r.json.data) assert.equal(x.key, undefined);
    });
  });

  describe('authenticating admin routes', () => {
    let access;
    let gateway;
    let admin;
    before(async () => {
      access = await createToken(gw, root, { name: 'auth-access' });
      gateway = await createToken(gw, root, { name: 'auth-gateway', token_type: 'gateway' });
      admin = await createToken(gw, root, { name: 'auth-admin', token_type: 'admin' });
      await settleKey(gw, admin.key, 200);
      await settleKey(gw, access.key, 403);
      await settleKey(gw, gateway.key, 403);
    });

    test('no credential → 401 missing_api_key with WWW-Authenticate', async () => {
      assertError(await api(gw, 'GET', '/v1/tokens'), 401, 'missing_api_key');
      assertError(await api(gw, 'POST', '/v1/tokens', { body: { name: 'x' } }), 401, 'missing_api_key');
    });

    test('a key in the query string is never accepted', async () => {
      const r = await api(gw, 'GET', `/v1/tokens?api_key=${root}`);
      assert.equal(r.status, 401);
      assert.equal(r.text.includes(root), false, 'the error does not echo the key');
    });

    test('malformed, bad-checksum and unknown secrets get the same 401 invalid_api_key', async () => {
      const bodies = [];
      for (const bad of ['garbage', 'kg_admin_short', breakChecksum(root), forgeSecret('admin'), forgeSecret('live')]) {
        const r = await api(gw, 'GET', '/v1/tokens', { key: bad });
        assertError(r, 401, 'invalid_api_key', { what: bad.slice(0, 12) });
        if (bad.length > 16)
          assert.equal(r.text.includes(bad.slice(12, -4)), false, 'the message never echoes the middle of a key');
        bodies.push(r.text);
      }
      assert.equal(new Set(bodies.slice(2)).size, 1, 'a bad checksum and an unknown key are indistinguishable');
    });

    test('Bearer is case-insensitive, x-api-key is an alias, a pk:secret pair must match', async () => {
      ok(await api(gw, 'GET', '/v1/tokens?limit=1', { headers: { authorization: `bearer   ${admin.key}` } }));
      ok(await api(gw, 'GET', '/v1/tokens?limit=1', { headers: { authorization: `BEARER ${admin.key}` } }));
      ok(await api(gw, 'GET', '/v1/tokens?limit=1', { headers: { 'x-api-key': admin.key } }));
      ok(await api(gw, 'GET', '/v1/tokens?limit=1', { headers: { authorization: `Bearer ${admin.key}`, 'x-api-key': admin.key } }));
      ok(await api(gw, 'GET', '/v1/tokens?limit=1', { key: `${admin.id}:${admin.key}` }));
      assertError(await api(gw, 'GET', '/v1/tokens', { key: `${access.id}:${admin.key}` }), 401, 'invalid_api_key', {
        what: 'a pair whose secret is another key\'s',
      });
      assertError(await api(gw, 'GET', '/v1/tokens', { key: admin.id }), 401, 'invalid_api_key', {
        what: 'a bare pk (publishable mode) on an admin route',
      });
      assertError(await api(gw, 'GET', '/v1/tokens', { headers: { authorization: `Basic ${admin.key}` } }), 401, 'invalid_api_key');
    });

    test('Authorization and x-api-key that disagree → 400 conflicting_credentials', async () => {
      const r = await api(gw, 'GET', '/v1/tokens', { headers: { authorization: `Bearer ${admin.key}`, 'x-api-key': root } });
      assertError(r, 400, 'conflicting_credentials');
    });

    test('a repeated Authorization header → 400 conflicting_credentials, even with the same key twice', async () => {
      for (const second of [root, admin.key]) {
        const r = await rawRequest(gw, ['GET /v1/tokens HTTP/1.1', `Authorization: Bearer ${admin.key}`, `Authorization: Bearer ${second}`]);
        assertError(r, 400, 'conflicting_credentials', { what: 'two Authorization headers' });
      }
      const ok1 = await rawRequest(gw, ['GET /v1/tokens?limit=1 HTTP/1.1', `Authorization: Bearer ${admin.key}`]);
      assert.equal(ok1.status, 200, 'the raw client itself works');
    });

    test('an access or gateway key on an admin route → 403 admin_required', async () => {
      for (const k of [access, gateway]) {
        for (const [method, route] of [
          ['GET', '/v1/tokens'],
          ['POST', '/v1/tokens'],
          ['GET', `/v1/tokens/${k.id}`],
          ['GET', '/v1/audit-events'],
          ['GET', '/v1/admin/environments'],
          ['GET', '/v1/gateway-keys'],
        ]) {
          const r = await api(gw, method, route, { key: k.key, body: method === 'POST' ? { name: 'x' } : undefined });
          assertError(r, 403, 'admin_required', { what: `${k.token_type} key on ${method} ${route}` });
          assert.equal(r.json.error.type, 'permission_error');
        }
      }
    });

    test('a non-root admin key manages its org\'s tokens', async () => {
      const t = await createToken(gw, admin.key, { name: 'made-by-ops' });
      assert.equal(t.created_by, admin.id);
      assert.equal(t.org_id, 'org_default');
      ok(await api(gw, 'GET', `/v1/tokens/${t.id}`, { key: admin.key }));
    });
  });
});
