// SPDX-License-Identifier: Apache-2.0
//
// Request validation of the admin API (SPEC §3, §5, §6): unknown fields, immutable fields, bad
// types and ranges, invalid JSON — each a 400 with SPEC §5's four error members and `param`
// naming the offending field. A refused request changes nothing.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  api,
  assertError,
  createToken,
  listAll,
  nowSec,
  ok,
  readRootKey,
  sandbox,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

describe('admin API validation', () => {
  let sb;
  let gw;
  let root;
  let access; // an inference access key
  let admin; // an admin key

  before(async () => {
    sb = sandbox('validation');
    gw = await startGateway(sb);
    root = readRootKey(sb);
    access = await createToken(gw, root, { name: 'target', rate_limits: { rpm: 3 } });
    admin = await createToken(gw, root, { name: 'target-admin', token_type: 'admin' });
  });
  after(stopAll);

  // [what, body, code, param]
  const createCases = () => [
    ['an unknown field', { name: 'x', colour: 'red' }, 'unknown_parameter', 'colour'],
    ['an unknown member of rate_limits', { name: 'x', rate_limits: { rps: 1 } }, 'unknown_parameter', 'rate_limits.rps'],
    ['no name', {}, 'invalid_value', 'name'],
    ['an empty name', { name: '' }, 'invalid_value', 'name'],
    ['a name that is not a string', { name: 5 }, 'invalid_value', 'name'],
    ['a name of 129 characters', { name: 'n'.repeat(129) }, 'invalid_value', 'name'],
    ['rate_limits.rpm -1', { name: 'x', rate_limits: { rpm: -1 } }, 'invalid_value', 'rate_limits.rpm'],
    ['rate_limits.rpm 0', { name: 'x', rate_limits: { rpm: 0 } }, 'invalid_value', 'rate_limits.rpm'],
    ['rate_limits.rpm "x"', { name: 'x', rate_limits: { rpm: 'x' } }, 'invalid_value', 'rate_limits.rpm'],
    ['rate_limits.tpm 1.5', { name: 'x', rate_limits: { tpm: 1.5 } }, 'invalid_value', 'rate_limits.tpm'],
    ['rate_limits not an object', { name: 'x', rate_limits: 5 }, 'invalid_value', 'rate_limits'],
    ['expires_at in the past', { name: 'x', expires_at: nowSec() - 60 }, 'invalid_value', 'expires_at'],
    ['expires_at a string', { name: 'x', expires_at: 'tomorrow' }, 'invalid_value', 'expires_at'],
    ['an unknown scope', { name: 'x', scopes: ['bogus'] }, 'invalid_value', 'scopes'],
    ['scopes not a list', { name: 'x', scopes: 'inference:chat' }, 'invalid_value', 'scopes'],
    ['a scope outside the purpose', { name: 'x', purpose: 'upload', scopes: ['inference:chat'] }, 'invalid_value', 'scopes'],
    ['an inference key with datasets:write', { name: 'x', scopes: ['datasets:write'] }, 'invalid_value', 'scopes'],
    ['an unknown purpose', { name: 'x', purpose: 'mining' }, 'invalid_value', 'purpose'],
    ['an unknown preset', { name: 'x', preset: 'nope' }, 'invalid_value', 'preset'],
    ['budget.period "year"', { name: 'x', budget: { limit_credits: 10, period: 'year' } }, 'invalid_value', 'budget.period'],
    ['budget.limit_credits -1', { name: 'x', budget: { limit_credits: -1, period: 'day' } }, 'invalid_value', 'budget.limit_credits'],
    ['allow.models 5', { name: 'x', allow: { models: 5 } }, 'invalid_value', 'allow.models'],
    ['allow.models with a * inside', { name: 'x', allow: { models: ['gpt-*-mini'] } }, 'invalid_value', 'allow.models'],
    ['an unknown allow kind', { name: 'x', allow: { tools: '*' } }, 'unknown_parameter', 'allow.tools'],
    ['metadata "x"', { name: 'x', metadata: 'x' }, 'invalid_value', 'metadata'],
    ['metadata a list', { name: 'x', metadata: [1] }, 'invalid_value', 'metadata'],
    ['enabled "yes"', { name: 'x', enabled: 'yes' }, 'invalid_value', 'enabled'],
    ['an unknown environment', { name: 'x', environment: 'moon' }, 'invalid_value', 'environment'],
    ['an unknown token_type', { name: 'x', token_type: 'root' }, 'invalid_value', 'token_type'],
    ['a bad domain', { name: 'x', allowed_domains: ['not a domain'] }, 'invalid_value', 'allowed_domains'],
    ['an unknown prompt module', { name: 'x', prompt_modules: ['nope'] }, 'invalid_value', 'prompt_modules'],
    ['scopes on an admin key', { name: 'x', token_type: 'admin', scopes: ['inference:chat'] }, 'invalid_value', 'scopes'],
  ];

  test('POST /v1/tokens refuses bad fields with 400 and the field in param', async () => {
    const before = (await listAll(gw, root, '/v1/tokens')).length;
    const failures = [];
    for (const [what, body, code, param] of createCases()) {
      const r = await api(gw, 'POST', '/v1/tokens', { key: root, body });
      try {
        assertError(r, 400, code, { param, what });
      } catch (e) {
        failures.push(`${what}: ${e.message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
    assert.equal((await listAll(gw, root, '/v1/tokens')).length, before, 'no refused create made a token');
  });

  test('PATCH refuses immutable fields with 400 immutable_field', async () => {
    const failures = [];
    for (const [field, value] of [
      ['environment', 'staging'],
      ['org_id', 'org_other'],
      ['token_type', 'admin'],
      ['purpose', 'upload'],
      ['id', 'pk_000000000000000000000000'],
      ['prefix', 'kg_live_AAAA'],
      ['created_at', 1],
      ['created_by', 'me'],
      ['last4', 'AAAA'],
      ['status', 'active'],
      ['revoked_at', null],
    ]) {
      const r = await api(gw, 'PATCH', `/v1/tokens/${access.id}`, { key: root, body: { [field]: value } });
      try {
        assertError(r, 400, 'immutable_field', { param: field, what: `PATCH ${field}` });
      } catch (e) {
        failures.push(`${field}: ${e.message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
  });

  test('PATCH refuses unknown fields and bad values; nothing changes', async () => {
    const before = ok(await api(gw, 'GET', `/v1/tokens/${access.id}`, { key: root }));
    const failures = [];
    for (const [what, id, body, code, param] of [
      ['an unknown field', access.id, { colour: 'red' }, 'unknown_parameter', 'colour'],
      ['an empty name', access.id, { name: '' }, 'invalid_value', 'name'],
      ['rpm -1', access.id, { rate_limits: { rpm: -1 } }, 'invalid_value', 'rate_limits.rpm'],
      ['rpm "x"', access.id, { rate_limits: { rpm: 'x' } }, 'invalid_value', 'rate_limits.rpm'],
      ['a past expiry', access.id, { expires_at: nowSec() - 1 }, 'invalid_value', 'expires_at'],
      ['a scope outside the purpose', access.id, { scopes: ['conversations:write'] }, 'invalid_value', 'scopes'],
      ['budget.period "year"', access.id, { budget: { limit_credits: 1, period: 'year' } }, 'invalid_value', 'budget.period'],
      ['allow.models 5', access.id, { allow: { models: 5 } }, 'invalid_value', 'allow.models'],
      ['metadata "x"', access.id, { metadata: 'x' }, 'invalid_value', 'metadata'],
      ['a good field with a bad one', access.id, { name: 'renamed', metadata: 'x' }, 'invalid_value', 'metadata'],
      ['scopes on an admin key', admin.id, { scopes: ['inference:chat'] }, 'invalid_value', 'scopes'],
    ]) {
      const r = await api(gw, 'PATCH', `/v1/tokens/${id}`, { key: root, body });
      try {
        assertError(r, 400, code, { param, what });
      } catch (e) {
        failures.push(`${what}: ${e.message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
    const afterwards = ok(await api(gw, 'GET', `/v1/tokens/${access.id}`, { key: root }));
    assert.deepEqual(afterwards, before, 'a refused PATCH changes nothing (not even partly)');
  });

  test('rotate refuses grace_seconds -1 / "x" and unknown fields', async () => {
    assertError(await api(gw, 'POST', `/v1/tokens/${access.id}/rotate`, { key: root, body: { grace_seconds: -1 } }), 400, 'invalid_value', {
      param: 'grace_seconds',
    });
    assertError(await api(gw, 'POST', `/v1/tokens/${access.id}/rotate`, { key: root, body: { grace_seconds: 'x' } }), 400, 'invalid_value', {
      param: 'grace_seconds',
    });
    assertError(await api(gw, 'POST', `/v1/tokens/${access.id}/rotate`, { key: root, body: { grace: 5 } }), 400, 'unknown_parameter', {
      param: 'grace',
    });
    assertError(await api(gw, 'POST', `/v1/tokens/${access.id}/disable`, { key: root, body: { now: true } }), 400, 'unknown_parameter', {
      param: 'now',
    });
    const t = ok(await api(gw, 'GET', `/v1/tokens/${access.id}`, { key: root }));
    assert.equal(t.prefix, access.prefix, 'not rotated');
    assert.equal(t.status, 'active', 'not disabled');
  });

  test('list limits: limit=0, 101 and "ten" → 400 invalid_value limit', async () => {
    for (const route of ['/v1/tokens', '/v1/gateway-keys', '/v1/audit-events', '/v1/admin/orgs']) {
      for (const v of ['0', '101', 'ten', '-1']) {
        assertError(await api(gw, 'GET', `${route}?limit=${v}`, { key: root }), 400, 'invalid_value', {
          param: 'limit',
          what: `${route}?limit=${v}`,
        });
      }
      ok(await api(gw, 'GET', `${route}?limit=1`, { key: root }));
      ok(await api(gw, 'GET', `${route}?limit=100`, { key: root }));
    }
  });

  test('invalid JSON, duplicate members, non-object and empty bodies → 400 invalid_json', async () => {
    const failures = [];
    for (const [what, method, route, raw] of [
      ['truncated JSON', 'POST', '/v1/tokens', '{"name": "x"'],
      ['not JSON', 'POST', '/v1/tokens', 'name=x'],
      ['a duplicate member', 'POST', '/v1/tokens', '{"name":"a","name":"b"}'],
      ['a duplicate member in PATCH', 'PATCH', `/v1/tokens/${access.id}`, '{"name":"a","name":"b"}'],
      ['a duplicate member in rotate', 'POST', `/v1/tokens/${access.id}/rotate`, '{"grace_seconds":1,"grace_seconds":2}'],
      ['a JSON array', 'POST', '/v1/tokens', '[{"name":"x"}]'],
      ['a JSON string', 'POST', '/v1/tokens', '"x"'],
      ['an empty body', 'POST', '/v1/tokens', ''],
      ['invalid UTF-8', 'POST', '/v1/tokens', Buffer.from([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
      ['trailing garbage', 'POST', '/v1/tokens', '{"name":"x"} {"name":"y"}'],
      ['invalid JSON to orgs', 'POST', '/v1/admin/orgs', '{'],
      ['invalid JSON to environments', 'POST', '/v1/admin/environments', '{'],
    ]) {
      const r = await api(gw, method, route, { key: root, raw });
      try {
        assertError(r, 400, 'invalid_json', { what });
      } catch (e) {
        failures.push(`${what}: ${e.message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, []);
    const t = ok(await api(gw, 'GET', `/v1/tokens/${access.id}`, { key: root }));
    assert.equal(t.name, 'target');
  });

  test('environments: config-declared ones are read-only; bad names refused', async () => {
    assertError(await api(gw, 'PATCH', '/v1/admin/environments/production', { key: root, body: { live: false } }), 400, 'invalid_value');
    assertError(await api(gw, 'DELETE', '/v1/admin/environments/staging', { key: root }), 400, 'invalid_value');
    assertError(await api(gw, 'POST', '/v1/admin/environments', { key: root, body: { name: 'Bad Name' } }), 400, 'invalid_value', { param: 'name' });
    assertError(await api(gw, 'POST', '/v1/admin/environments', { key: root, body: { name: 'ok-env', region: 'eu' } }), 400, 'unknown_parameter', {
      param: 'region',
    });
    const envs = ok(await api(gw, 'GET', '/v1/admin/environments', { key: root }));
    const prod = envs.data.find((e) => e.name === 'production');
    assert.equal(prod.live, true, 'production is still live');
    assert.equal(prod.source, 'config');

    const made = ok(await api(gw, 'POST', '/v1/admin/environments', { key: root, body: { name: 'preview' } }), 201);
    assert.equal(made.live, false);
    assert.equal(made.source, 'api');
    assertError(await api(gw, 'PATCH', '/v1/admin/environments/preview', { key: root, body: { name: 'other' } }), 400, 'immutable_field', {
      param: 'name',
    });
    assert.equal(ok(await api(gw, 'PATCH', '/v1/admin/environments/preview', { key: root, body: { live: true } })).live, true);
    const k = await createToken(gw, root, { name: 'in-preview', environment: 'preview' });
    assert.match(k.key, /^kg_live_/, 'a key of a live API-made environment is a live key');
    assertError(await api(gw, 'DELETE', '/v1/admin/environments/preview', { key: root }), 400, 'invalid_value');
    ok(await api(gw, 'POST', '/v1/admin/environments', { key: root, body: { name: 'scratch' } }), 201);
    assert.equal(ok(await api(gw, 'DELETE', '/v1/admin/environments/scratch', { key: root })).deleted, true);
    assertError(await api(gw, 'GET', '/v1/admin/environments/scratch', { key: root }), 404, 'not_found');
  });
});
