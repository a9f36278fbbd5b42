// SPDX-License-Identifier: Apache-2.0
//
// The catalog admin API (SPEC §1, §4, §6, §7a): /v1/admin/{providers,models,agents,prompt-modules}.
//
//  - config objects are listed with source "config" and are read-only;
//  - create / read / list / edit / delete of each kind, strict validation, conflicts, objects in
//    use, audit events for every change;
//  - provider safety: only credentials the config grants to the caller's org; no loopback,
//    private, link-local, CGNAT, multicast or unspecified upstream addresses (refused at
//    creation, before any connection) unless the config says `allow_private_upstreams: true`;
//  - live effect: a change is served on the very next request (no restart), prompt modules
//    become the policy system message, seen at a real (fake) upstream;
//  - org isolation: nothing of one org's catalog is visible, editable or reachable from another.
//
// Two gateways: `ga` (the default: private upstreams refused) and `gp` (allow_private_upstreams:
// true, in front of tests/upstream/server.mjs on 127.0.0.1).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import OpenAI from 'openai';

import {
  ID_RE,
  api,
  assertError,
  createAccessKey,
  ok,
  readRootKey,
  redact,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
} from './lib/harness.mjs';
import { chatAnswer, startUpstream } from '../upstream/server.mjs';

// ==== Fixtures ====

const SECRETS = {
  CAT_OPENAI_KEY: 'sk-cat-openai-secret-0001',
  CAT_SHARED_KEY: 'sk-cat-shared-secret-0002',
  CAT_ACME_KEY: 'sk-cat-acme-secret-0003',
};
const PUBLIC_URL = 'https://8.8.8.8/v1'; // a literal public address: nothing resolves or connects

/** Gateway `ga`: the sample's kind of config, private upstreams refused (the default). */
const CONFIG_A = `listen: 127.0.0.1:0
workers: 2
environments: [{name: production, live: true}, {name: staging}]
limits: {upstream_timeout_ms: 1500, request_timeout_ms: 2000}
credentials:
  openai: "env:CAT_OPENAI_KEY"
  shared: {ref: "env:CAT_SHARED_KEY", orgs: [default, acme]}
  acmeonly: {ref: "env:CAT_ACME_KEY", orgs: [acme]}
  unset: "env:CAT_UNSET_KEY_NEVER_SET"
providers:
  - {name: demo, type: mock}
  - {name: cfg-openai, base_url: "https://api.openai.com/v1", credential: openai}
models:
  - {name: demo-chat, provider: demo}
  - {name: cfg-guarded, provider: demo, upstream_model: demo-chat, input: 0.5, output: 1.5, prompt_modules: [cfg-mod]}
prompt_modules:
  - {name: cfg-mod, text: "Config guardrail."}
agents:
  - {name: cfg-agent, model: demo-chat, prompt_modules: [cfg-mod], environments: [production]}
`;

/** Gateway `gp`: allow_private_upstreams, credentials for the fake upstream. */
const CONFIG_P = `listen: 127.0.0.1:0
workers: 2
allow_private_upstreams: true
environments: [{name: production, live: true}, {name: staging}]
limits: {upstream_timeout_ms: 2000, request_timeout_ms: 2000}
credentials:
  up: "env:CAT_UP_KEY"
  upshared: {ref: "env:CAT_UP_KEY", orgs: [default, beta]}
providers:
  - {name: demo, type: mock}
models:
  - {name: demo-chat, provider: demo}
`;

const KINDS = {
  provider: 'providers',
  model: 'models',
  agent: 'agents',
  prompt_module: 'prompt-modules',
};

let up; // the fake upstream
let ga; // gateway A (strict)
let ra; // its root admin key
let gp; // gateway P (allow_private_upstreams)
let rp; // its root admin key
let acmeKey; // org `acme` on ga (granted `shared` and `acmeonly`)
let otherKey; // org `other` on ga (granted nothing)
let betaKey; // org `beta` on gp (granted `upshared`)

// ==== Helpers ====

/** An admin call; resolves the harness's {status, headers, text, json}. */
const adm = (gw, key, method, path, body) => api(gw, method, path, { key, body });
const route = (kind, name) => `/v1/admin/${KINDS[kind]}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

/** POST /v1/admin/<kind> → 201, returns the object. */
async function create(gw, key, kind, body) {
  return ok(await adm(gw, key, 'POST', route(kind), body), 201, `POST ${route(kind)} ${JSON.stringify(body)}`);
}
async function get(gw, key, kind, name) {
  return adm(gw, key, 'GET', route(kind, name));
}
async function list(gw, key, kind) {
  const l = ok(await adm(gw, key, 'GET', route(kind)), 200, `GET ${route(kind)}`);
  assert.equal(l.object, 'list');
  assert.ok(Array.isArray(l.data));
  assert.equal(typeof l.has_more, 'boolean');
  return l.data;
}
async function del(gw, key, kind, name) {
  return ok(await adm(gw, key, 'DELETE', route(kind, name)), 200, `DELETE ${route(kind, name)}`);
}

/** The audit events of one object name (newest first). */
async function events(gw, key, name) {
  const r = ok(await api(gw, 'GET', `/v1/audit-events?key=${encodeURIComponent(name)}&limit=100`, { key }));
  return r.data;
}

/** The ids GET /v1/models lists for an access key. */
async function modelIds(gw, key) {
  const r = ok(await api(gw, 'GET', '/v1/models', { key }), 200, 'GET /v1/models');
  return r.data.map((m) => m.id).sort();
}

/** The openai SDK on a gateway. */
const sdk = (gw, key) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 5000 });

/** One chat call through the SDK; resolves the completion. */
const chat = (gw, key, model, content = 'hello') =>
  sdk(gw, key).chat.completions.create({ model, messages: [{ role: 'user', content }] });

/** Asserts a promise rejects with an SDK APIError of this status and code. */
async function rejectsWith(promise, status, code, what) {
  await assert.rejects(promise, (e) => {
    assert.equal(e?.status, status, `${what}: status (${e?.message})`);
    assert.equal(e?.code, code, `${what}: code (${e?.message})`);
    return true;
  });
}

/** Creates an org with the root key; returns its admin secret once the index knows it. */
async function createOrg(gw, root, name) {
  const o = ok(await adm(gw, root, 'POST', '/v1/admin/orgs', { name }), 201, `POST /v1/admin/orgs ${name}`);
  await settleKey(gw, o.admin_key.key, 200);
  return o.admin_key.key;
}

// ==== Setup ====

before(async () => {
  up = await startUpstream({ delayMs: 5 });
  const sa = sandbox('catalog-a');
  fs.writeFileSync(sa.config, CONFIG_A);
  const sp = sandbox('catalog-p');
  fs.writeFileSync(sp.config, CONFIG_P);
  [ga, gp] = await Promise.all([
    startGateway(sa, { env: { ...SECRETS } }),
    startGateway(sp, { env: { CAT_UP_KEY: up.apiKey } }),
  ]);
  ra = readRootKey(sa);
  rp = readRootKey(sp);
  [acmeKey, otherKey, betaKey] = await Promise.all([
    createOrg(ga, ra, 'acme'),
    createOrg(ga, ra, 'other'),
    createOrg(gp, rp, 'beta'),
  ]);
});

after(async () => {
  await stopAll();
  await up?.close();
});

// ==== Config objects ====

describe('config objects (SPEC §7a)', () => {
  test('are listed in every kind with source "config" and their spec', async () => {
    const [providers, models, agents, modules] = await Promise.all(
      Object.keys(KINDS).map((k) => list(ga, ra, k))
    );
    const by = (arr, name) => arr.find((o) => o.name === name);

    const demo = by(providers, 'demo');
    assert.ok(demo, 'provider demo listed');
    assert.equal(demo.id, 'demo');
    assert.equal(demo.object, 'provider');
    assert.equal(demo.type, 'mock');
    assert.equal(demo.source, 'config');
    const cfgOpenai = by(providers, 'cfg-openai');
    assert.equal(cfgOpenai.base_url, 'https://api.openai.com/v1');
    assert.equal(cfgOpenai.credential, 'openai', 'the credential NAME, never its value');
    assert.equal(cfgOpenai.source, 'config');

    const guarded = by(models, 'cfg-guarded');
    assert.equal(guarded.object, 'model');
    assert.equal(guarded.provider, 'demo');
    assert.equal(guarded.upstream_model, 'demo-chat');
    assert.equal(guarded.input, 0.5);
    assert.equal(guarded.output, 1.5);
    assert.deepEqual(guarded.prompt_modules, ['cfg-mod']);
    assert.equal(guarded.source, 'config');
    assert.equal(by(models, 'demo-chat')?.source, 'config');

    const agent = by(agents, 'cfg-agent');
    assert.equal(agent.object, 'agent');
    assert.equal(agent.model, 'demo-chat');
    assert.deepEqual(agent.prompt_modules, ['cfg-mod']);
    assert.deepEqual(agent.environments, ['production']);
    assert.equal(agent.source, 'config');

    const mod = by(modules, 'cfg-mod');
    assert.equal(mod.object, 'prompt_module');
    assert.equal(mod.text, 'Config guardrail.');
    assert.equal(mod.source, 'config');

    for (const o of [demo, cfgOpenai, guarded, agent, mod]) {
      assert.equal(o.id, o.name, `${o.object} ${o.name}: id is the name`);
      assert.equal(typeof o.created_at, 'number');
      assert.equal(typeof o.updated_at, 'number');
      const one = ok(await get(ga, ra, o.object, o.name), 200, `GET ${o.object} ${o.name}`);
      assert.deepEqual(one, o, `GET /${KINDS[o.object]}/${o.name} is the listed object`);
    }
  });

  test('no credential value appears in any catalog reply', async () => {
    const texts = await Promise.all(
      Object.keys(KINDS).map(async (k) => (await adm(ga, ra, 'GET', route(k))).text)
    );
    texts.push((await get(ga, ra, 'provider', 'cfg-openai')).text);
    for (const t of texts) for (const v of Object.values(SECRETS)) assert.ok(!t.includes(v), `secret ${v} not in ${t.slice(0, 80)}…`);
  });

  test('are read-only: PATCH and DELETE → 400 invalid_value, POST of the name → 409; nothing changes', async () => {
    const targets = [
      ['provider', 'demo', { forward_identity: true }],
      ['provider', 'cfg-openai', { base_url: PUBLIC_URL }],
      ['model', 'cfg-guarded', { input: 9 }],
      ['agent', 'cfg-agent', { environments: ['staging'] }],
      ['prompt_module', 'cfg-mod', { text: 'changed' }],
    ];
    for (const [kind, name, patch] of targets) {
      const before = ok(await get(ga, ra, kind, name));
      assertError(await adm(ga, ra, 'PATCH', route(kind, name), patch), 400, 'invalid_value', { what: `PATCH config ${kind} ${name}` });
      assertError(await adm(ga, ra, 'DELETE', route(kind, name)), 400, 'invalid_value', { what: `DELETE config ${kind} ${name}` });
      const dup = { name, ...(kind === 'prompt_module' ? { text: 'x' } : kind === 'provider' ? { base_url: PUBLIC_URL } : kind === 'model' ? { provider: 'demo' } : { model: 'demo-chat' }) };
      assertError(await adm(ga, ra, 'POST', route(kind), dup), 409, 'conflict', { param: 'name', what: `POST over config ${kind} ${name}` });
      assert.deepEqual(ok(await get(ga, ra, kind, name)), before, `config ${kind} ${name} unchanged`);
    }
  });

  test('a POST cannot claim source "config" (nothing is created)', async () => {
    const r = await adm(ga, ra, 'POST', route('prompt_module'), { name: 'fake-config', text: 'x', source: 'config' });
    assert.equal(r.status, 400, r.text);
    assertError(await get(ga, ra, 'prompt_module', 'fake-config'), 404, 'not_found');
  });
});

// ==== CRUD ====

describe('create, read, list, edit, delete', () => {
  test('prompt module life cycle, with one audit event per change', async () => {
    const m = await create(ga, ra, 'prompt_module', { name: 'life-mod', text: 'Be brief.' });
    assert.deepEqual(
      { id: m.id, object: m.object, name: m.name, text: m.text, source: m.source },
      { id: 'life-mod', object: 'prompt_module', name: 'life-mod', text: 'Be brief.', source: 'api' }
    );
    assert.equal(typeof m.created_at, 'number');
    assert.equal(m.updated_at, m.created_at);
    assert.ok(Math.abs(m.created_at - Date.now() / 1000) < 60, 'created_at is now (unix seconds)');

    assert.deepEqual(ok(await get(ga, ra, 'prompt_module', 'life-mod')), m, 'GET returns the created object');
    const l = await list(ga, ra, 'prompt_module');
    assert.deepEqual(l.find((o) => o.name === 'life-mod'), m, 'listed');

    const p = ok(await adm(ga, ra, 'PATCH', route('prompt_module', 'life-mod'), { text: 'Be very brief.' }));
    assert.equal(p.text, 'Be very brief.');
    assert.equal(p.source, 'api');
    assert.equal(p.created_at, m.created_at, 'created_at kept');
    assert.ok(p.updated_at >= m.created_at);
    assert.equal(ok(await get(ga, ra, 'prompt_module', 'life-mod')).text, 'Be very brief.');

    const d = await del(ga, ra, 'prompt_module', 'life-mod');
    assert.deepEqual(d, { id: 'life-mod', object: 'prompt_module', deleted: true });
    assertError(await get(ga, ra, 'prompt_module', 'life-mod'), 404, 'not_found', { what: 'GET after delete' });
    assertError(await adm(ga, ra, 'DELETE', route('prompt_module', 'life-mod')), 404, 'not_found', { what: 'DELETE twice' });
    assertError(await adm(ga, ra, 'PATCH', route('prompt_module', 'life-mod'), { text: 'x' }), 404, 'not_found', { what: 'PATCH after delete' });
    assert.ok(!(await list(ga, ra, 'prompt_module')).some((o) => o.name === 'life-mod'), 'no longer listed');

    const ev = await events(ga, ra, 'life-mod');
    assert.deepEqual(ev.map((e) => e.action), ['prompt_module.deleted', 'prompt_module.updated', 'prompt_module.created']);
    for (const e of ev) {
      assert.equal(e.object, 'audit_event');
      assert.equal(e.object_type, 'prompt_module');
      assert.equal(e.object_id, 'life-mod');
      assert.equal(e.org_id, 'org_default');
      assert.match(e.actor, ID_RE, 'the root admin key id');
      assert.equal(e.remote_addr, '127.0.0.1');
      assert.equal(typeof e.changes, 'object');
    }
    assert.equal(ev.at(-1).changes.text, 'Be brief.', 'the creation records the spec');
  });

  test('provider, model and agent life cycle: PATCH merges, DELETE in dependency order, audited', async () => {
    await create(ga, ra, 'prompt_module', { name: 'life-mod2', text: 'Cite sources.' });
    const p = await create(ga, ra, 'provider', { name: 'life-p', base_url: PUBLIC_URL, credential: 'openai' });
    assert.deepEqual(
      [p.id, p.object, p.base_url, p.credential, p.source],
      ['life-p', 'provider', PUBLIC_URL, 'openai', 'api']
    );
    const m = await create(ga, ra, 'model', {
      name: 'life-m', provider: 'life-p', upstream_model: 'gpt-4o-mini', input: 0.15, output: 0.6, prompt_modules: ['life-mod2'],
    });
    assert.deepEqual(
      [m.object, m.provider, m.upstream_model, m.input, m.output, m.prompt_modules, m.source],
      ['model', 'life-p', 'gpt-4o-mini', 0.15, 0.6, ['life-mod2'], 'api']
    );
    const a = await create(ga, ra, 'agent', { name: 'life-a', model: 'life-m', prompt_modules: ['life-mod2'], environments: ['production'] });
    assert.deepEqual([a.object, a.model, a.prompt_modules, a.environments, a.source], ['agent', 'life-m', ['life-mod2'], ['production'], 'api']);

    // PATCH changes only what it names.
    const p2 = ok(await adm(ga, ra, 'PATCH', route('provider', 'life-p'), { forward_identity: true }));
    assert.deepEqual([p2.base_url, p2.credential, p2.forward_identity], [PUBLIC_URL, 'openai', true]);
    const m2 = ok(await adm(ga, ra, 'PATCH', route('model', 'life-m'), { output: 0.9, prompt_modules: [] }));
    assert.deepEqual([m2.provider, m2.upstream_model, m2.input, m2.output, m2.prompt_modules], ['life-p', 'gpt-4o-mini', 0.15, 0.9, []]);
    const a2 = ok(await adm(ga, ra, 'PATCH', route('agent', 'life-a'), { environments: ['production', 'staging'] }));
    assert.deepEqual([a2.model, a2.prompt_modules, a2.environments], ['life-m', ['life-mod2'], ['production', 'staging']]);
    for (const [o, o2] of [[p, p2], [m, m2], [a, a2]]) assert.equal(o2.created_at, o.created_at, `${o.object}: created_at kept`);

    for (const [kind, name] of [['agent', 'life-a'], ['model', 'life-m'], ['provider', 'life-p'], ['prompt_module', 'life-mod2']]) {
      assert.deepEqual(await del(ga, ra, kind, name), { id: name, object: kind, deleted: true });
      assertError(await get(ga, ra, kind, name), 404, 'not_found');
      const ev = await events(ga, ra, name);
      const mine = ev.filter((e) => e.object_type === kind).map((e) => e.action);
      const expected = kind === 'prompt_module' ? [`${kind}.deleted`, `${kind}.created`] : [`${kind}.deleted`, `${kind}.updated`, `${kind}.created`];
      assert.deepEqual(mine, expected, `${kind} ${name} audit trail`);
    }
  });

  test('audit: an update records what changed, from → to (SPEC §1 "changed fields", as token.updated does)', async () => {
    await create(ga, ra, 'prompt_module', { name: 'aud-mod', text: 'old text' });
    await create(ga, ra, 'model', { name: 'aud-model', provider: 'demo', input: 1 });
    ok(await adm(ga, ra, 'PATCH', route('prompt_module', 'aud-mod'), { text: 'new text' }));
    ok(await adm(ga, ra, 'PATCH', route('model', 'aud-model'), { input: 2 }));
    const [modEv] = await events(ga, ra, 'aud-mod');
    const [modelEv] = await events(ga, ra, 'aud-model');
    assert.equal(modEv.action, 'prompt_module.updated');
    assert.equal(modelEv.action, 'model.updated');
    assert.deepEqual(modEv.changes, { text: { from: 'old text', to: 'new text' } }, 'the old guardrail text is on record');
    assert.deepEqual(modelEv.changes, { input: { from: 1, to: 2 } }, 'only the changed member');
  });

  test('PATCH: name is immutable, unknown members refused, unknown names 404, wrong methods 405', async () => {
    await create(ga, ra, 'prompt_module', { name: 'patch-mod', text: 't' });
    assertError(await adm(ga, ra, 'PATCH', route('prompt_module', 'patch-mod'), { name: 'renamed' }), 400, 'immutable_field', { param: 'name' });
    assertError(await adm(ga, ra, 'PATCH', route('prompt_module', 'patch-mod'), { name: 'patch-mod' }), 400, 'immutable_field', { param: 'name', what: 'even the same name' });
    assertError(await adm(ga, ra, 'PATCH', route('prompt_module', 'patch-mod'), { colour: 'red' }), 400, 'unknown_parameter', { param: 'colour' });
    assertError(await adm(ga, ra, 'PATCH', route('prompt_module', 'patch-mod'), { text: '' }), 400, 'invalid_value', { param: 'text' });
    assert.equal(ok(await get(ga, ra, 'prompt_module', 'patch-mod')).text, 't', 'refused PATCHes change nothing');
    assert.equal((await events(ga, ra, 'patch-mod')).length, 1, 'and write no audit event');
    for (const kind of Object.keys(KINDS)) {
      assertError(await get(ga, ra, kind, 'no-such-thing'), 404, 'not_found', { what: `GET ${kind}` });
      assertError(await adm(ga, ra, 'PATCH', route(kind, 'no-such-thing'), {}), 404, 'not_found', { what: `PATCH ${kind}` });
      assertError(await adm(ga, ra, 'DELETE', route(kind, 'no-such-thing')), 404, 'not_found', { what: `DELETE ${kind}` });
      assertError(await adm(ga, ra, 'PUT', route(kind, 'patch-mod'), {}), 405, 'method_not_allowed', { what: `PUT ${kind}` });
      assertError(await adm(ga, ra, 'POST', route(kind, 'patch-mod'), {}), 405, 'method_not_allowed', { what: `POST ${kind}/name` });
      assertError(await adm(ga, ra, 'DELETE', route(kind)), 405, 'method_not_allowed', { what: `DELETE ${kind} list` });
    }
    assertError(await adm(ga, ra, 'GET', '/v1/admin/prompt-modules/patch-mod/extra'), 404, 'not_found');
  });

  test('validation: unknown members → unknown_parameter, bad values → invalid_value naming the member', async () => {
    const long = 'x'.repeat(16385);
    const cases = [
      // [kind, body, status, code, param]
      ['provider', { name: 'v-p' }, 400, 'invalid_value', 'base_url'],
      ['provider', { name: 'v-p', base_url: 42 }, 400, 'invalid_value', 'base_url'],
      ['provider', { name: 'v-p', base_url: 'not a url' }, 400, 'invalid_value', 'base_url'],
      ['provider', { name: 'v-p', base_url: PUBLIC_URL, credential: 'nope' }, 400, 'invalid_value', 'credential'],
      ['provider', { name: 'v-p', base_url: PUBLIC_URL, credential: 7 }, 400, 'invalid_value', 'credential'],
      ['provider', { name: 'v-p', base_url: PUBLIC_URL, forward_identity: 'yes' }, 400, 'invalid_value', 'forward_identity'],
      ['provider', { name: 'v-p', base_url: PUBLIC_URL, api_key: 'sk-x' }, 400, 'unknown_parameter', 'api_key'],
      ['provider', { name: 'v-p', base_url: PUBLIC_URL, ca_file: '/etc/passwd' }, 400, 'unknown_parameter', 'ca_file'],
      ['provider', { name: 'V-P', base_url: PUBLIC_URL }, 400, 'invalid_value', 'name'],
      ['provider', { name: 'p'.repeat(32), base_url: PUBLIC_URL }, 400, 'invalid_value', 'name'],
      ['provider', { base_url: PUBLIC_URL }, 400, 'invalid_value', 'name'],
      ['provider', { name: 5, base_url: PUBLIC_URL }, 400, 'invalid_value', 'name'],
      ['model', { name: 'v-m' }, 400, 'invalid_value', 'provider'],
      ['model', { name: 'v-m', provider: 'nope' }, 400, 'invalid_value', 'provider'],
      ['model', { name: 'v-m', provider: 'demo', input: -1 }, 400, 'invalid_value', 'input'],
      ['model', { name: 'v-m', provider: 'demo', output: 'cheap' }, 400, 'invalid_value', 'output'],
      ['model', { name: 'v-m', provider: 'demo', upstream_model: 'has space' }, 400, 'invalid_value', 'upstream_model'],
      ['model', { name: 'v-m', provider: 'demo', prompt_modules: ['nope'] }, 400, 'invalid_value', 'prompt_modules'],
      ['model', { name: 'v-m', provider: 'demo', prompt_modules: 'cfg-mod' }, 400, 'invalid_value', 'prompt_modules'],
      ['model', { name: 'v-m', provider: 'demo', temperature: 0.2 }, 400, 'unknown_parameter', 'temperature'],
      ['model', { name: 'has space', provider: 'demo' }, 400, 'invalid_value', 'name'],
      ['model', { name: 'm'.repeat(129), provider: 'demo' }, 400, 'invalid_value', 'name'],
      ['agent', { name: 'v-a' }, 400, 'invalid_value', 'model'],
      ['agent', { name: 'v-a', model: 'cfg-agent' }, 400, 'invalid_value', 'model'],
      ['agent', { name: 'v-a', model: 'nope' }, 400, 'invalid_value', 'model'],
      ['agent', { name: 'v-a', model: 'demo-chat', environments: ['nope'] }, 400, 'invalid_value', 'environments'],
      ['agent', { name: 'v-a', model: 'demo-chat', environments: 'production' }, 400, 'invalid_value', 'environments'],
      ['agent', { name: 'v-a', model: 'demo-chat', prompt_modules: ['nope'] }, 400, 'invalid_value', 'prompt_modules'],
      ['agent', { name: 'v-a', model: 'demo-chat', provider: 'demo' }, 400, 'unknown_parameter', 'provider'],
      ['prompt_module', { name: 'v-pm' }, 400, 'invalid_value', 'text'],
      ['prompt_module', { name: 'v-pm', text: '' }, 400, 'invalid_value', 'text'],
      ['prompt_module', { name: 'v-pm', text: long }, 400, 'invalid_value', 'text'],
      ['prompt_module', { name: 'v-pm', text: ['a'] }, 400, 'invalid_value', 'text'],
      ['prompt_module', { name: 'V-PM', text: 'x' }, 400, 'invalid_value', 'name'],
      ['prompt_module', { name: 'v-pm', text: 'x', role: 'system' }, 400, 'unknown_parameter', 'role'],
    ];
    for (const [kind, body, status, code, param] of cases) {
      const r = await adm(ga, ra, 'POST', route(kind), body);
      assertError(r, status, code, { param, what: `POST ${kind} ${JSON.stringify(body).slice(0, 120)}` });
    }
    for (const [kind, name] of [['provider', 'v-p'], ['model', 'v-m'], ['agent', 'v-a'], ['prompt_module', 'v-pm']]) {
      assertError(await get(ga, ra, kind, name), 404, 'not_found', { what: `${kind} ${name} was never created` });
      assert.deepEqual(await events(ga, ra, name), [], `no audit event for refused ${kind} ${name}`);
    }
  });

  test('bodies that are not one JSON object → 400 invalid_json', async () => {
    for (const raw of ['', '{', '[]', '"x"', '{"name":"j-mod","text":"a","text":"b"}']) {
      const r = await api(ga, 'POST', route('prompt_module'), { key: ra, raw });
      assert.equal(r.status, 400, `${JSON.stringify(raw)} → 400: ${r.text}`);
      assert.ok(['invalid_json', 'invalid_value'].includes(r.json?.error?.code), `${JSON.stringify(raw)}: ${r.text}`);
    }
    assertError(await api(ga, 'POST', route('prompt_module'), { key: ra, raw: '{"name":"j-mod","text":"a","text":"b"}' }), 400, 'invalid_json', { what: 'duplicate member' });
    assertError(await get(ga, ra, 'prompt_module', 'j-mod'), 404, 'not_found');
  });

  test('a model and an agent cannot share a name (config or API objects) → 409 conflict', async () => {
    assertError(await adm(ga, ra, 'POST', route('agent'), { name: 'demo-chat', model: 'demo-chat' }), 409, 'conflict', { param: 'name', what: 'agent named like a config model' });
    assertError(await adm(ga, ra, 'POST', route('model'), { name: 'cfg-agent', provider: 'demo' }), 409, 'conflict', { param: 'name', what: 'model named like a config agent' });
    await create(ga, ra, 'model', { name: 'clash-m', provider: 'demo' });
    await create(ga, ra, 'agent', { name: 'clash-a', model: 'clash-m' });
    assertError(await adm(ga, ra, 'POST', route('agent'), { name: 'clash-m', model: 'clash-m' }), 409, 'conflict', { param: 'name' });
    assertError(await adm(ga, ra, 'POST', route('model'), { name: 'clash-a', provider: 'demo' }), 409, 'conflict', { param: 'name' });
    assertError(await adm(ga, ra, 'POST', route('model'), { name: 'clash-m', provider: 'demo' }), 409, 'conflict', { param: 'name', what: 'duplicate model' });
    // Other kinds have their own namespaces.
    await create(ga, ra, 'prompt_module', { name: 'clash-m', text: 'a module may share a model name' });
    await del(ga, ra, 'prompt_module', 'clash-m');
    await del(ga, ra, 'agent', 'clash-a');
    await del(ga, ra, 'model', 'clash-m');
  });

  test('deleting an object in use → 400 invalid_value naming its user; allowed once unused', async () => {
    await create(ga, ra, 'prompt_module', { name: 'use-mod', text: 'x' });
    await create(ga, ra, 'prompt_module', { name: 'use-mod2', text: 'y' });
    await create(ga, ra, 'provider', { name: 'use-p', base_url: PUBLIC_URL });
    await create(ga, ra, 'model', { name: 'use-m', provider: 'use-p', prompt_modules: ['use-mod'] });
    await create(ga, ra, 'agent', { name: 'use-a', model: 'use-m', prompt_modules: ['use-mod2'] });

    const inUse = async (kind, name, user) => {
      const e = assertError(await adm(ga, ra, 'DELETE', route(kind, name)), 400, 'invalid_value', { what: `DELETE ${kind} ${name}` });
      assert.ok(e.message.includes(user), `the message names ${user}: ${e.message}`);
      ok(await get(ga, ra, kind, name), 200, `${kind} ${name} still there`);
    };
    await inUse('provider', 'use-p', 'use-m');
    await inUse('model', 'use-m', 'use-a');
    await inUse('prompt_module', 'use-mod', 'use-m');
    await inUse('prompt_module', 'use-mod2', 'use-a');
    assert.ok(!(await events(ga, ra, 'use-p')).some((e) => e.action.endsWith('.deleted')), 'no deletion audited');

    await del(ga, ra, 'agent', 'use-a');
    await del(ga, ra, 'prompt_module', 'use-mod2');
    ok(await adm(ga, ra, 'PATCH', route('model', 'use-m'), { prompt_modules: [] }));
    await del(ga, ra, 'prompt_module', 'use-mod');
    await del(ga, ra, 'model', 'use-m');
    await del(ga, ra, 'provider', 'use-p');
  });

  test('model names with "/" (like meta-llama/Llama-3-8B) can be read, edited and deleted, or are refused', async () => {
    const name = 'acme-labs/llama-3';
    const r = await adm(ga, ra, 'POST', route('model'), { name, provider: 'demo' });
    if (r.status === 400) {
      assertError(r, 400, 'invalid_value', { param: 'name' });
      return;
    }
    ok(r, 201, 'POST model with "/"');
    const g = await adm(ga, ra, 'GET', `/v1/admin/models/${encodeURIComponent(name)}`);
    const d = await adm(ga, ra, 'DELETE', `/v1/admin/models/${encodeURIComponent(name)}`);
    assert.equal(g.status, 200, `GET /v1/admin/models/acme-labs%2Fllama-3 finds the model it created: ${g.text}`);
    assert.equal(d.status, 200, `and DELETE can remove it: ${d.text}`);
  });

  test('lists page with ?limit=&after= like every admin list (SPEC §6)', async () => {
    for (const n of ['pg-a', 'pg-b', 'pg-c']) await create(ga, ra, 'prompt_module', { name: n, text: n });
    const all = await list(ga, ra, 'prompt_module');
    const one = ok(await adm(ga, ra, 'GET', `${route('prompt_module')}?limit=1`));
    assert.equal(one.data.length, 1, `?limit=1 returns one of ${all.length}`);
    assert.equal(one.has_more, true, 'and says there is more');
    const next = ok(await adm(ga, ra, 'GET', `${route('prompt_module')}?limit=1&after=${encodeURIComponent(one.data[0].id)}`));
    assert.equal(next.data.length, 1);
    assert.notEqual(next.data[0].id, one.data[0].id, '?after= moves on');
    assertError(await adm(ga, ra, 'GET', `${route('prompt_module')}?limit=0`), 400, 'invalid_value', { param: 'limit' });
    assertError(await adm(ga, ra, 'GET', `${route('prompt_module')}?colour=red`), 400, 'unknown_parameter', { param: 'colour' });
  });

  test('API objects show the same members as config objects, with the values the gateway uses', async () => {
    const p = await create(ga, ra, 'provider', { name: 'shape-p', base_url: PUBLIC_URL });
    const m = await create(ga, ra, 'model', { name: 'shape-m', provider: 'shape-p' });
    const a = await create(ga, ra, 'agent', { name: 'shape-a', model: 'shape-m' });
    try {
      assert.deepEqual(
        { type: p.type, credential: p.credential, forward_identity: p.forward_identity },
        { type: 'openai', credential: null, forward_identity: false },
        'provider: type, credential, forward_identity'
      );
      assert.deepEqual(
        { upstream_model: m.upstream_model, input: m.input, output: m.output, prompt_modules: m.prompt_modules },
        { upstream_model: 'shape-m', input: 0, output: 0, prompt_modules: [] },
        'model: upstream_model (defaults to the name), prices, prompt_modules'
      );
      assert.deepEqual({ prompt_modules: a.prompt_modules, environments: a.environments }, { prompt_modules: [], environments: [] }, 'agent');
    } finally {
      await del(ga, ra, 'agent', 'shape-a');
      await del(ga, ra, 'model', 'shape-m');
      await del(ga, ra, 'provider', 'shape-p');
    }
  });

  test('a provider may state its type ("openai"), as config providers report it', async () => {
    const r = await adm(ga, ra, 'POST', route('provider'), { name: 'typed-p', base_url: PUBLIC_URL, type: 'openai' });
    assert.equal(r.status, 201, `type: "openai" is accepted: ${r.text}`);
    assert.equal(r.json.type, 'openai');
    await del(ga, ra, 'provider', 'typed-p');
    assertError(await adm(ga, ra, 'POST', route('provider'), { name: 'typed-p', base_url: PUBLIC_URL, type: 'carrier-pigeon' }), 400, 'invalid_value', { param: 'type' });
  });

  test('catalog routes need an admin key', async () => {
    const access = await createAccessKey(ga, ra, 'cat-access');
    for (const kind of Object.keys(KINDS)) {
      assertError(await api(ga, 'GET', route(kind)), 401, 'missing_api_key', { what: `GET ${kind} without a key` });
      assertError(await api(ga, 'GET', route(kind), { key: access.key }), 403, 'admin_required', { what: `GET ${kind} with an access key` });
      assertError(await api(ga, 'POST', route(kind), { key: access.key, body: { name: 'x' } }), 403, 'admin_required');
    }
  });
});

// ==== Provider safety ====

describe('provider safety (SPEC §6): credentials granted per org, no private upstreams', () => {
  test('org default may use the credentials the config grants it, and no other', async () => {
    for (const credential of ['openai', 'shared', 'unset']) {
      const p = await create(ga, ra, 'provider', { name: `grant-${credential}`, base_url: PUBLIC_URL, credential });
      assert.equal(p.credential, credential);
      await del(ga, ra, 'provider', `grant-${credential}`);
    }
    for (const credential of ['acmeonly', 'nope']) {
      assertError(await adm(ga, ra, 'POST', route('provider'), { name: 'grant-bad', base_url: PUBLIC_URL, credential }), 400, 'invalid_value', { param: 'credential', what: credential });
    }
    // PATCH is checked too.
    await create(ga, ra, 'provider', { name: 'grant-patch', base_url: PUBLIC_URL, credential: 'openai' });
    assertError(await adm(ga, ra, 'PATCH', route('provider', 'grant-patch'), { credential: 'acmeonly' }), 400, 'invalid_value', { param: 'credential' });
    assert.equal(ok(await get(ga, ra, 'provider', 'grant-patch')).credential, 'openai', 'unchanged');
    await del(ga, ra, 'provider', 'grant-patch');
  });

  test('another org may use only what `orgs:` grants it by name', async () => {
    for (const credential of ['shared', 'acmeonly']) {
      const p = await create(ga, acmeKey, 'provider', { name: `acme-${credential}`, base_url: PUBLIC_URL, credential });
      assert.equal(p.credential, credential, `acme may use ${credential}`);
    }
    assertError(await adm(ga, acmeKey, 'POST', route('provider'), { name: 'acme-openai', base_url: PUBLIC_URL, credential: 'openai' }), 400, 'invalid_value', { param: 'credential', what: 'openai is granted to default only' });
    assertError(await adm(ga, acmeKey, 'PATCH', route('provider', 'acme-shared'), { credential: 'openai' }), 400, 'invalid_value', { param: 'credential', what: 'PATCH to default\'s credential' });
    for (const credential of ['openai', 'shared', 'acmeonly', 'unset']) {
      assertError(await adm(ga, otherKey, 'POST', route('provider'), { name: 'other-p', base_url: PUBLIC_URL, credential }), 400, 'invalid_value', { param: 'credential', what: `org other, ${credential}` });
    }
    const noCred = await create(ga, otherKey, 'provider', { name: 'other-p', base_url: PUBLIC_URL });
    assert.equal(noCred.credential ?? null, null, 'a provider without a credential is fine');
  });

  test('loopback, private, link-local, CGNAT, multicast and unspecified base_urls are refused at creation, before any connection', async () => {
    const port = up.port;
    const urls = [
      up.baseURL,
      `http://localhost:${port}/v1`,
      `http://LOCALHOST:${port}/v1`,
      `http://127.1:${port}/v1`,
      `http://127.255.255.254:${port}/v1`,
      `http://2130706433:${port}/v1`,
      `http://0x7f000001:${port}/v1`,
      `http://0177.0.0.1:${port}/v1`,
      `https://127.0.0.1/v1`,
      `http://[::1]:${port}/v1`,
      `http://[::ffff:127.0.0.1]:${port}/v1`,
      `http://[::ffff:7f00:1]:${port}/v1`,
      `http://0.0.0.0:${port}/v1`,
      `http://0:${port}/v1`,
      `http://[::]:${port}/v1`,
      'http://169.254.169.254/latest/meta-data',
      'http://[::ffff:169.254.169.254]/latest',
      'http://[fe80::1]/v1',
      'http://10.0.0.1/v1',
      'http://10.255.255.254/v1',
      'http://172.16.0.1/v1',
      'http://172.31.255.254/v1',
      'http://192.168.0.1/v1',
      'http://[::ffff:192.168.0.1]/v1',
      'http://100.64.0.1/v1',
      'http://100.127.255.254/v1',
      'http://[fc00::1]/v1',
      'http://[fd12:3456::1]/v1',
      'http://224.0.0.1/v1',
      'http://239.255.255.250/v1',
      'http://[ff02::1]/v1',
      'http://255.255.255.255/v1',
    ];
    const connections = up.connections;
    up.reset();
    for (const [i, base_url] of urls.entries()) {
      const name = `priv-${i}`;
      assertError(await adm(ga, ra, 'POST', route('provider'), { name, base_url }), 400, 'invalid_value', { param: 'base_url', what: base_url });
      assertError(await get(ga, ra, 'provider', name), 404, 'not_found', { what: `${base_url} not created` });
    }
    // An existing provider cannot be moved there either.
    await create(ga, ra, 'provider', { name: 'priv-move', base_url: PUBLIC_URL });
    assertError(await adm(ga, ra, 'PATCH', route('provider', 'priv-move'), { base_url: up.baseURL }), 400, 'invalid_value', { param: 'base_url', what: 'PATCH to loopback' });
    assert.equal(ok(await get(ga, ra, 'provider', 'priv-move')).base_url, PUBLIC_URL);
    // Another org is held to the same rule.
    assertError(await adm(ga, acmeKey, 'POST', route('provider'), { name: 'priv-acme', base_url: up.baseURL }), 400, 'invalid_value', { param: 'base_url' });
    await del(ga, ra, 'provider', 'priv-move');

    assert.equal(up.connections, connections, 'the upstream on 127.0.0.1 saw no connection');
    assert.equal(up.received.length, 0, 'and no request');
    assert.deepEqual(await events(ga, ra, 'priv-0'), [], 'a refused creation is not audited');
  });

  test('public neighbours of the private ranges are accepted (the masks are exact)', async () => {
    const urls = ['11.0.0.1', '172.15.255.254', '172.32.0.1', '192.169.0.1', '100.63.255.254', '100.128.0.1', '169.253.0.1', '223.255.255.254', '[2001:4860:4860::8888]'];
    for (const [i, host] of urls.entries()) {
      await create(ga, ra, 'provider', { name: `pub-${i}`, base_url: `http://${host}/v1` });
      await del(ga, ra, 'provider', `pub-${i}`);
    }
  });

  test('userinfo, other schemes and malformed URLs are refused', async () => {
    const urls = [
      'https://user:pass@8.8.8.8/v1',
      'https://user@8.8.8.8/v1',
      'http://8.8.8.8@127.0.0.1/v1',
      'ftp://8.8.8.8/v1',
      'file:///etc/passwd',
      'gopher://8.8.8.8:70/_x',
      '//8.8.8.8/v1',
      'http://',
      'https:///v1',
      'http://[::1/v1',
      '',
    ];
    for (const base_url of urls)
      assertError(await adm(ga, ra, 'POST', route('provider'), { name: 'bad-url', base_url }), 400, 'invalid_value', { param: 'base_url', what: JSON.stringify(base_url) });
    assertError(await get(ga, ra, 'provider', 'bad-url'), 404, 'not_found');
  });

  test('base_url with spaces or control characters is refused (they would be written into the upstream request)', async () => {
    const tails = [' HTTP/1.1\r\nX-Injected: yes\r\nX-Pad: x', '\r\nX-Injected: yes', '\nX-Injected: yes', '/v 1', '\tx', '\u007f'];
    for (const [gw, key, base] of [[ga, ra, PUBLIC_URL], [gp, rp, up.baseURL]]) {
      for (const tail of tails) {
        const base_url = base + tail;
        const r = await adm(gw, key, 'POST', route('provider'), { name: 'inject-p', base_url });
        if (r.status === 201) await del(gw, key, 'provider', 'inject-p');
        assertError(r, 400, 'invalid_value', { param: 'base_url', what: `${gw === gp ? 'gp' : 'ga'} ${JSON.stringify(base_url)}` });
      }
    }
  });

  test('a base_url the gateway cannot use is refused at creation, not accepted and then silently left out', async () => {
    const access = await createAccessKey(ga, ra, 'unusable-check');
    const urls = ['http://8.8.8.8:0/v1', 'http://8.8.8.8:99999/v1', 'http://8.8.8.8:/v1', 'http://8.8.8.8?x@127.0.0.1/v1'];
    for (const [i, base_url] of urls.entries()) {
      const r = await adm(ga, ra, 'POST', route('provider'), { name: `unusable-${i}`, base_url });
      if (r.status === 400) {
        assertError(r, 400, 'invalid_value', { param: 'base_url', what: base_url });
        continue;
      }
      ok(r, 201, base_url);
      await create(ga, ra, 'model', { name: `unusable-m${i}`, provider: `unusable-${i}` });
      const ids = await modelIds(ga, access.key);
      await del(ga, ra, 'model', `unusable-m${i}`);
      await del(ga, ra, 'provider', `unusable-${i}`);
      assert.ok(ids.includes(`unusable-m${i}`), `${base_url} was accepted, but a model on it is missing from /v1/models (the catalog left the provider out)`);
    }
  });

  test('IPv6 forms that embed private IPv4 addresses (NAT64, 6to4, IPv4-compatible) are refused too', async () => {
    for (const base_url of ['http://[64:ff9b::7f00:1]/v1', 'http://[2002:7f00:1::]/v1', 'http://[::127.0.0.1]/v1', 'http://[64:ff9b::a9fe:a9fe]/v1']) {
      const r = await adm(ga, ra, 'POST', route('provider'), { name: 'embed-p', base_url });
      if (r.status === 201) await del(ga, ra, 'provider', 'embed-p');
      assertError(r, 400, 'invalid_value', { param: 'base_url', what: base_url });
    }
  });

  test('a provider whose granted credential does not resolve is unavailable: 503 provider_unavailable', async () => {
    await create(ga, ra, 'provider', { name: 'unset-p', base_url: PUBLIC_URL, credential: 'unset' });
    await create(ga, ra, 'model', { name: 'unset-m', provider: 'unset-p' });
    const access = await createAccessKey(ga, ra, 'unset-check');
    const l = ok(await api(ga, 'GET', '/v1/models', { key: access.key }));
    const m = l.data.find((x) => x.id === 'unset-m');
    assert.ok(m, 'listed');
    assert.equal(m.keygate?.available, false, 'marked unavailable');
    await rejectsWith(chat(ga, access.key, 'unset-m'), 503, 'provider_unavailable', 'chat on an unresolved credential');
    await del(ga, ra, 'model', 'unset-m');
    await del(ga, ra, 'provider', 'unset-p');
  });
});

// ==== Live effect (mock provider) ====

describe('catalog changes are live on the next request (no restart)', () => {
  let early; // an access key created before the catalog objects

  before(async () => {
    early = await createAccessKey(ga, ra, 'live-early');
  });

  test('new module + model + agent: listed at once, chat works, environments respected, delete → 404', async () => {
    assert.ok(!(await modelIds(ga, early.key)).includes('live-a'));
    await create(ga, ra, 'prompt_module', { name: 'live-mod', text: 'Answer in French.' });
    await create(ga, ra, 'model', { name: 'live-m', provider: 'demo', prompt_modules: ['live-mod'] });
    await create(ga, ra, 'agent', { name: 'live-a', model: 'live-m', prompt_modules: ['live-mod'], environments: ['production'] });

    // No wait: the admin reply leaves after the change is live.
    const l = ok(await api(ga, 'GET', '/v1/models', { key: early.key }));
    const byId = Object.fromEntries(l.data.map((m) => [m.id, m]));
    assert.equal(byId['live-m']?.keygate?.kind, 'model', 'the model is listed for a key made before it');
    assert.equal(byId['live-m']?.owned_by, 'demo');
    assert.equal(byId['live-a']?.keygate?.kind, 'agent', 'the agent too');
    assert.equal(byId['live-a']?.object, 'model');
    const fresh = await createAccessKey(ga, ra, 'live-fresh');
    assert.ok((await modelIds(ga, fresh.key)).includes('live-a'), 'and for a fresh key');
    assert.equal(ok(await api(ga, 'GET', '/v1/models/live-a', { key: fresh.key })).keygate.kind, 'agent');

    const c = await chat(ga, fresh.key, 'live-a');
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, 'live-m', 'the agent is served by its model');
    assert.equal(typeof c.choices[0].message.content, 'string');
    assert.equal((await chat(ga, early.key, 'live-m')).object, 'chat.completion', 'the raw model too');

    // Published to production only.
    const staging = await createAccessKey(ga, ra, 'live-staging', { environment: 'staging' });
    assert.ok(!(await modelIds(ga, staging.key)).includes('live-a'), 'not listed for a staging key');
    assert.ok((await modelIds(ga, staging.key)).includes('live-m'), 'raw models have no environments');
    await rejectsWith(chat(ga, staging.key, 'live-a'), 403, 'environment_mismatch', 'staging key on a production agent');
    ok(await adm(ga, ra, 'PATCH', route('agent', 'live-a'), { environments: ['production', 'staging'] }));
    assert.equal((await chat(ga, staging.key, 'live-a')).object, 'chat.completion', 'published to staging: works at once');
    ok(await adm(ga, ra, 'PATCH', route('agent', 'live-a'), { environments: [] }));
    await rejectsWith(chat(ga, early.key, 'live-a'), 403, 'environment_mismatch', 'unpublished everywhere');

    await del(ga, ra, 'agent', 'live-a');
    await rejectsWith(chat(ga, early.key, 'live-a'), 404, 'model_not_found', 'deleted agent');
    assert.ok(!(await modelIds(ga, early.key)).includes('live-a'), 'no longer listed');
    await del(ga, ra, 'model', 'live-m');
    await rejectsWith(chat(ga, early.key, 'live-m'), 404, 'model_not_found', 'deleted model');
    await del(ga, ra, 'prompt_module', 'live-mod');
  });

  test('a key limited to a model name follows it: not_allowed for others, not_found once deleted', async () => {
    await create(ga, ra, 'model', { name: 'allow-m', provider: 'demo' });
    await create(ga, ra, 'model', { name: 'allow-other', provider: 'demo' });
    const k = await createAccessKey(ga, ra, 'allow-key', { allow: { models: ['allow-m'], agents: [] } });
    assert.deepEqual(await modelIds(ga, k.key), ['allow-m']);
    await rejectsWith(chat(ga, k.key, 'allow-other'), 403, 'model_not_allowed', 'a model outside allow');
    await del(ga, ra, 'model', 'allow-m');
    await rejectsWith(chat(ga, k.key, 'allow-m'), 404, 'model_not_found', 'the allowed model, deleted');
    await del(ga, ra, 'model', 'allow-other');
  });

  test('deleting an environment an agent is published to is refused while the agent uses it', async () => {
    ok(await adm(ga, ra, 'POST', '/v1/admin/environments', { name: 'qa' }), 201);
    await create(ga, ra, 'agent', { name: 'qa-agent', model: 'demo-chat', environments: ['qa'] });
    const r = await adm(ga, ra, 'DELETE', '/v1/admin/environments/qa');
    const still = ok(await get(ga, ra, 'agent', 'qa-agent'));
    await del(ga, ra, 'agent', 'qa-agent');
    if (r.status === 200) await adm(ga, ra, 'DELETE', '/v1/admin/environments/qa');
    assert.equal(r.status, 400, `DELETE environment qa while agent qa-agent is published to it (agent still lists ${JSON.stringify(still.environments)}): ${r.text}`);
    assert.ok(r.json.error.message.includes('qa-agent'), r.json.error.message);
  });
});

// ==== Keys and the catalog's prompt modules ====

describe("access keys' prompt modules live in the catalog of the key's org", () => {
  test("a key may name an API-made prompt module of its org (and is never served without it)", async () => {
    await create(gp, rp, 'prompt_module', { name: 'key-mod', text: 'Key guardrail.' });
    await create(gp, rp, 'provider', { name: 'key-up', base_url: up.baseURL, credential: 'up' });
    await create(gp, rp, 'model', { name: 'key-m', provider: 'key-up', upstream_model: 'gpt-4o-mini' });
    const r = await api(gp, 'POST', '/v1/tokens', { key: rp, body: { name: 'key-with-mod', prompt_modules: ['key-mod'] } });
    assert.equal(r.status, 201, `POST /v1/tokens {prompt_modules: ["key-mod"]} (an API-made module of the org): ${r.text}`);
    up.reset();
    await chat(gp, r.json.key, 'key-m', 'hi');
    assert.deepEqual(up.last().json.messages[0], { role: 'system', content: 'Key guardrail.' });
    // Delete the module: the key must not be served without its guardrail.
    const d = await adm(gp, rp, 'DELETE', route('prompt_module', 'key-mod'));
    if (d.status === 200) {
      up.reset();
      const res = await api(gp, 'POST', '/v1/chat/completions', { key: r.json.key, body: { model: 'key-m', messages: [{ role: 'user', content: 'x' }] } });
      assert.ok(res.status >= 400, `refused once its module is gone: ${res.status}`);
      assert.equal(up.received.length, 0, 'never forwarded without the guardrail');
    } else {
      assertError(d, 400, 'invalid_value', { what: 'module in use by a key' });
    }
  });

  test("a key of another org cannot name org default's prompt modules", async () => {
    const r = await api(ga, 'POST', '/v1/tokens', { key: acmeKey, body: { name: 'acme-borrow', prompt_modules: ['cfg-mod'] } });
    assertError(r, 400, 'invalid_value', { param: 'prompt_modules', what: "org acme naming default's config module cfg-mod" });
  });
});

// ==== allow_private_upstreams, through the fake upstream ====

describe('allow_private_upstreams: API providers on 127.0.0.1, prompt policy seen upstream', () => {
  let key; // default org access key on gp

  before(async () => {
    key = (await createAccessKey(gp, rp, 'gp-default')).key;
  });

  test('the same loopback provider is accepted and serves chat with the granted credential', async () => {
    const connections = up.connections;
    const p = await create(gp, rp, 'provider', { name: 'up-api', base_url: up.baseURL, credential: 'up' });
    assert.equal(p.base_url, up.baseURL);
    assert.equal(up.connections, connections, 'creating a provider opens no connection');
    await create(gp, rp, 'model', { name: 'api-gpt', provider: 'up-api', upstream_model: 'gpt-4o-mini' });
    up.reset();
    const c = await chat(gp, key, 'api-gpt', 'What is 2+2?');
    assert.equal(c.choices[0].message.content, chatAnswer([{ role: 'user', content: 'What is 2+2?' }]));
    const rec = up.last();
    assert.equal(rec.path, '/v1/chat/completions');
    assert.equal(rec.headers.authorization, `Bearer ${up.apiKey}`, 'the granted credential');
    assert.equal(rec.json.model, 'gpt-4o-mini', 'the catalog name became the upstream model');
    assert.deepEqual(rec.json.messages, [{ role: 'user', content: 'What is 2+2?' }], 'no policy: messages untouched');
    assert.equal(rec.headers['x-keygate-org'], undefined, 'no identity forwarded by default');
  });

  test("an agent's prompt modules become one system message before the caller's messages", async () => {
    await create(gp, rp, 'prompt_module', { name: 'bot-rules', text: 'You are the support bot.\nBe "polite".' });
    await create(gp, rp, 'agent', { name: 'api-bot', model: 'api-gpt', prompt_modules: ['bot-rules'], environments: ['production'] });
    up.reset();
    const c = await chat(gp, key, 'api-bot', 'Hi there');
    assert.equal(c.choices[0].message.content, 'echo: Hi there');
    const rec = up.last();
    assert.equal(rec.json.model, 'gpt-4o-mini', 'the agent alias became the raw model\'s upstream name');
    assert.deepEqual(rec.json.messages, [
      { role: 'system', content: 'You are the support bot.\nBe "polite".' },
      { role: 'user', content: 'Hi there' },
    ]);
    assert.equal(rec.headers.authorization, `Bearer ${up.apiKey}`);
  });

  test('PATCHes of modules, models, agents and providers change the very next call', async () => {
    await create(gp, rp, 'prompt_module', { name: 'raw-rules', text: 'Raw model rules.' });
    const sys = async (model) => {
      up.reset();
      await chat(gp, key, model, 'q');
      const m = up.last().json.messages;
      return m[0].role === 'system' ? m[0].content : null;
    };
    assert.equal(await sys('api-gpt'), null);
    ok(await adm(gp, rp, 'PATCH', route('model', 'api-gpt'), { prompt_modules: ['raw-rules'] }));
    assert.equal(await sys('api-gpt'), 'Raw model rules.', "the model's new module applies at once");
    ok(await adm(gp, rp, 'PATCH', route('prompt_module', 'bot-rules'), { text: 'Updated bot rules.' }));
    // Through an agent the raw model's modules apply first, then the agent's, each once (docs/decisions.md).
    assert.equal(await sys('api-bot'), 'Raw model rules.\n\nUpdated bot rules.', "a module's new text applies at once");
    ok(await adm(gp, rp, 'PATCH', route('agent', 'api-bot'), { prompt_modules: ['bot-rules', 'raw-rules'] }));
    assert.equal(await sys('api-bot'), 'Raw model rules.\n\nUpdated bot rules.', 'modules joined in order, each once, one message');
    ok(await adm(gp, rp, 'PATCH', route('model', 'api-gpt'), { prompt_modules: [] }));
    assert.equal(await sys('api-gpt'), null, 'and removed at once');
    ok(await adm(gp, rp, 'PATCH', route('model', 'api-gpt'), { upstream_model: 'gpt-4o' }));
    up.reset();
    await chat(gp, key, 'api-bot', 'q');
    assert.equal(up.last().json.model, 'gpt-4o', 'the agent follows its model\'s new upstream name');

    ok(await adm(gp, rp, 'PATCH', route('provider', 'up-api'), { forward_identity: true }));
    up.reset();
    await chat(gp, key, 'api-gpt', 'q');
    assert.equal(up.last().headers['x-keygate-org'], 'org_default', 'forward_identity applies at once');
    assert.equal(up.last().headers['x-keygate-environment'], 'production');
    ok(await adm(gp, rp, 'PATCH', route('provider', 'up-api'), { forward_identity: false }));
    ok(await adm(gp, rp, 'PATCH', route('model', 'api-gpt'), { upstream_model: 'gpt-4o-mini' }));
  });

  test('deleting the agent: the next call answers 404 model_not_found and nothing reaches the upstream', async () => {
    const tmpKey = (await createAccessKey(gp, rp, 'gp-del')).key;
    await create(gp, rp, 'agent', { name: 'api-bot-tmp', model: 'api-gpt', environments: ['production'] });
    assert.equal((await chat(gp, tmpKey, 'api-bot-tmp')).object, 'chat.completion');
    await del(gp, rp, 'agent', 'api-bot-tmp');
    up.reset();
    await rejectsWith(chat(gp, tmpKey, 'api-bot-tmp'), 404, 'model_not_found', 'deleted agent');
    assert.equal(up.received.length, 0);
  });
});

// ==== Org isolation ====

describe('org isolation (SPEC §1): nothing of one org\'s catalog is visible or usable from another', () => {
  const DEFAULT_OBJECTS = [
    ['provider', 'up-api'],
    ['provider', 'demo'],
    ['model', 'api-gpt'],
    ['model', 'demo-chat'],
    ['agent', 'api-bot'],
    ['prompt_module', 'bot-rules'],
  ];

  test("org beta's lists hold none of org default's objects (config objects belong to default only)", async () => {
    for (const kind of Object.keys(KINDS)) assert.deepEqual(await list(gp, betaKey, kind), [], `beta's ${KINDS[kind]}`);
  });

  test("org beta gets 404 for default's names on GET, PATCH and DELETE; they stay unchanged", async () => {
    for (const [kind, name] of DEFAULT_OBJECTS) {
      const before = ok(await get(gp, rp, kind, name), 200, `default's ${kind} ${name}`);
      assertError(await get(gp, betaKey, kind, name), 404, 'not_found', { what: `beta GET ${kind} ${name}` });
      const patch = kind === 'prompt_module' ? { text: 'hijacked' } : kind === 'provider' ? { forward_identity: true } : kind === 'model' ? { input: 99 } : { environments: [] };
      assertError(await adm(gp, betaKey, 'PATCH', route(kind, name), patch), 404, 'not_found', { what: `beta PATCH ${kind} ${name}` });
      assertError(await adm(gp, betaKey, 'DELETE', route(kind, name)), 404, 'not_found', { what: `beta DELETE ${kind} ${name}` });
      assert.deepEqual(ok(await get(gp, rp, kind, name)), before, `default's ${kind} ${name} unchanged`);
    }
  });

  test("org beta cannot reference default's objects or credentials, and may reuse the same names", async () => {
    assertError(await adm(gp, betaKey, 'POST', route('model'), { name: 'beta-m', provider: 'demo' }), 400, 'invalid_value', { param: 'provider', what: "default's provider" });
    assertError(await adm(gp, betaKey, 'POST', route('agent'), { name: 'beta-a', model: 'api-gpt' }), 400, 'invalid_value', { param: 'model', what: "default's model" });
    assertError(await adm(gp, betaKey, 'POST', route('provider'), { name: 'up-api', base_url: up.baseURL, credential: 'up' }), 400, 'invalid_value', { param: 'credential', what: 'credential granted to default only' });

    const p = await create(gp, betaKey, 'provider', { name: 'up-api', base_url: up.baseURL, credential: 'upshared' });
    assert.equal(p.source, 'api');
    assertError(await adm(gp, betaKey, 'POST', route('model'), { name: 'api-gpt', provider: 'up-api', prompt_modules: ['bot-rules'] }), 400, 'invalid_value', { param: 'prompt_modules', what: "default's module" });
    await create(gp, betaKey, 'model', { name: 'api-gpt', provider: 'up-api', upstream_model: 'gpt-4o' });
    await create(gp, betaKey, 'prompt_module', { name: 'bot-rules', text: 'Beta rules.' });
    await create(gp, betaKey, 'agent', { name: 'api-bot', model: 'api-gpt', prompt_modules: ['bot-rules'], environments: ['production'] });
  });

  test("each org's keys see and reach only their own org's catalog", async () => {
    const bAccess = (await createAccessKey(gp, betaKey, 'beta-access')).key;
    const dAccess = (await createAccessKey(gp, rp, 'default-access')).key;
    assert.deepEqual(await modelIds(gp, bAccess), ['api-bot', 'api-gpt'], "beta's key lists beta's objects only");
    assert.ok((await modelIds(gp, dAccess)).includes('demo-chat'));

    up.reset();
    await chat(gp, bAccess, 'api-bot', 'from beta');
    assert.equal(up.last().json.model, 'gpt-4o', "beta's agent → beta's model");
    assert.deepEqual(up.last().json.messages[0], { role: 'system', content: 'Beta rules.' }, "beta's module");
    assert.equal(up.last().headers.authorization, `Bearer ${up.apiKey}`, 'the credential granted to beta');

    up.reset();
    await chat(gp, dAccess, 'api-bot', 'from default');
    assert.equal(up.last().json.model, 'gpt-4o-mini', "default's agent → default's model");
    assert.equal(up.last().json.messages[0].role, 'system');
    assert.ok(!up.last().json.messages[0].content.includes('Beta rules.'), "not beta's module");

    up.reset();
    await rejectsWith(chat(gp, bAccess, 'demo-chat'), 404, 'model_not_found', "beta's key on default's config model");
    assert.equal(up.received.length, 0);
    const g = await api(gp, 'GET', '/v1/models/demo-chat', { key: bAccess });
    assertError(g, 404, 'model_not_found', { what: "GET /v1/models/demo-chat with beta's key" });
  });

  test("each org's audit log has its own catalog events only", async () => {
    const b = await events(gp, betaKey, 'up-api');
    assert.deepEqual(b.map((e) => e.action), ['provider.created'], "beta's up-api");
    assert.ok(b.every((e) => e.org_id !== 'org_default'));
    const d = await events(gp, rp, 'up-api');
    assert.ok(d.length >= 2, "default's up-api events");
    assert.ok(d.every((e) => e.org_id === 'org_default'), 'no event of beta in default\'s log');
  });
});

// ==== A grant taken back in the config takes the credential back ====

describe('credential grants are checked again on every start', () => {
  test('an org whose grant the config withdraws loses the credential (503, nothing upstream)', async () => {
    const sb = sandbox('catalog-regrant');
    fs.writeFileSync(sb.config, CONFIG_P);
    let gw = await startGateway(sb, { env: { CAT_UP_KEY: up.apiKey } });
    const root = readRootKey(sb);
    const beta = await createOrg(gw, root, 'beta');
    await create(gw, beta, 'provider', { name: 'bp', base_url: up.baseURL, credential: 'upshared' });
    await create(gw, beta, 'model', { name: 'bm', provider: 'bp', upstream_model: 'gpt-4o-mini' });
    const k = (await createAccessKey(gw, beta, 'beta-app')).key;
    up.reset();
    await chat(gw, k, 'bm');
    assert.equal(up.last().headers.authorization, `Bearer ${up.apiKey}`, 'granted: the credential is used');

    // The operator takes the grant back (beta no longer listed) and restarts.
    await gw.stop('SIGTERM');
    fs.writeFileSync(sb.config, CONFIG_P.replace('orgs: [default, beta]', 'orgs: [default]'));
    gw = await startGateway(sb, { env: { CAT_UP_KEY: up.apiKey } });
    up.reset();
    await rejectsWith(chat(gw, k, 'bm'), 503, 'provider_unavailable', 'a withdrawn grant');
    assert.equal(up.received.length, 0, 'nothing reached the upstream');
    const m = ok(await api(gw, 'GET', '/v1/models', { key: k })).data.find((x) => x.id === 'bm');
    assert.equal(m?.keygate?.available, false, 'listed as unavailable');
    assert.match(gw.output, /does not grant/, 'the log says why');
    assert.ok(!gw.output.includes(up.apiKey), 'the credential is not logged');
  });
});

// ==== One org cannot exhaust what every org shares ====

describe('shared upstream resources', () => {
  test("one org churning its provider's base_url does not break new providers of other orgs", async () => {
    // The gateway keeps one upstream endpoint (host, port, TLS context) per distinct base_url
    // it has seen. A tenant admin may change its provider's base_url at will; that must not
    // use up something every org needs.
    const sb = sandbox('catalog-churn');
    fs.writeFileSync(sb.config, CONFIG_P.replace('workers: 2', 'workers: 1'));
    const gw = await startGateway(sb, { env: { CAT_UP_KEY: up.apiKey } });
    const root = readRootKey(sb);
    const tenant = await createOrg(gw, root, 'tenant');
    const N = 1040; // > 1024, the size of the gateway's endpoint table today
    const PROVIDERS = 2;
    for (let i = 0; i < PROVIDERS; i++) await create(gw, tenant, 'provider', { name: `churn-${i}`, base_url: 'http://8.8.8.8:1/v1' });
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: PROVIDERS }, async (_, i) => {
        for (let port = 2 + i; port <= N; port += PROVIDERS) {
          const r = await adm(gw, tenant, 'PATCH', route('provider', `churn-${i}`), { base_url: `http://8.8.8.8:${port}/v1` });
          assert.equal(r.status, 200, r.text);
        }
      })
    );
    const churnMs = performance.now() - t0;

    await create(gw, root, 'provider', { name: 'after-churn', base_url: up.baseURL, credential: 'up' });
    await create(gw, root, 'model', { name: 'after-churn-m', provider: 'after-churn', upstream_model: 'gpt-4o-mini' });
    const k = (await createAccessKey(gw, root, 'after-churn')).key;
    up.reset();
    const r = await api(gw, 'POST', '/v1/chat/completions', { key: k, body: { model: 'after-churn-m', messages: [{ role: 'user', content: 'hi' }] } });
    assert.equal(
      r.status,
      200,
      `org default's new provider after org tenant made ${N} base_url changes (${Math.round(churnMs)} ms): ${r.text}; ` +
        `gateway log: ${redact(gw.stderr.split('\n').filter((l) => /endpoint/.test(l)).slice(0, 1).join(''))}`
    );
    assert.equal(up.received.length, 1);
  });
});
