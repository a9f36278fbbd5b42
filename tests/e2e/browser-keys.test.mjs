// SPDX-License-Identifier: Apache-2.0
//
// Browser-facing keys against the real binary (SPEC §2, §3, §5, §6):
//  - publishable keys: low-privilege by construction (creation and PATCH refuse the rest),
//    domains stored normalised, `Bearer <pk>` alone from an allowed Origin (else Referer), the
//    origin matching rules (exact, wildcard, case, trailing dot, punycode, homographs, userinfo,
//    ports, schemes, null), `pk:sk` pairs (which skip the origin check), disable/enable;
//  - CORS: preflight for the union of active publishable keys' domains (echoing the origin and
//    the requested headers, never `*`), CORS headers on real answers, none on admin routes;
//  - ephemeral tokens: minting (own secret, or an admin on /v1/tokens/{id}/ephemeral), the
//    narrowing rules, using them (openai SDK), tampering, expiry, the parent's status and
//    rotations, one audit event per mint, and the token nowhere in the audit log, gateway log
//    or store.
// One gateway on 127.0.0.1 with the sample config; the demo provider answers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import url from 'node:url';
import OpenAI from 'openai';

import {
  api,
  assertError,
  createToken,
  forgeSecret,
  listAll,
  nowSec,
  ok,
  rawRequest,
  readRootKey,
  redact,
  sandbox,
  sleep,
  startGateway,
  stopAll,
  waitFor,
} from './lib/harness.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];
const CHAT_BODY = { model: 'demo-chat', messages: MSG };
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The base64url character that differs from c only in its lowest bit. */
const respell = (c) => B64URL[B64URL.indexOf(c) ^ 1];
const EPH_RE = /^kg_eph_([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/;
const RATELIMIT_HEADERS = [
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
];
// What makes a key publishable-capable (SPEC §2: explicit allowlist, rpm, tpm, budget).
const LOW_PRIV = {
  allow: { models: ['demo-chat'], agents: [] },
  rate_limits: { rpm: 100000, tpm: 100000000 },
  budget: { limit_credits: 100 },
};

/** The header names of a reply that start with access-control-. */
const corsHeaderNames = (res) => [...res.headers.keys()].filter((k) => k.startsWith('access-control-'));
/** The comma-separated tokens of a header, lower-cased. */
const tokens = (v) => (v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

describe('browser-facing keys: publishable keys, CORS, ephemeral tokens', () => {
  let sb;
  let gw;
  let root;
  let rootId;
  let orgBAdmin; // another org's admin key
  let pub; // the main publishable key (create reply)
  let plain; // a non-publishable access key
  let expiring; // a publishable key that expires a few seconds in
  const minted = []; // every ephemeral token minted (for the secrecy checks)
  const mints = new Map(); // parent id → [actor id, ...] of successful mints

  /** POST a mint; records a 201 for the audit checks. Returns the raw reply. */
  async function mint(credential, body, { parent, viaAdmin = false, headers = {} } = {}) {
    const route = viaAdmin ? `/v1/tokens/${parent}/ephemeral` : '/v1/ephemeral-tokens';
    const r = await api(gw, 'POST', route, { key: credential, body, headers });
    if (r.status === 201 && r.json?.token) {
      minted.push(r.json.token);
      if (!mints.has(r.json.parent_id)) mints.set(r.json.parent_id, []);
      mints.get(r.json.parent_id).push(viaAdmin ? rootId : r.json.parent_id);
    }
    return r;
  }
  /** Mints and asserts 201; returns the token reply. */
  async function mintOk(credential, body, opts = {}) {
    return ok(await mint(credential, body, opts), 201, `mint ${JSON.stringify(body)}`);
  }

  /** A chat call written by hand: `lines` are extra header lines (sent as UTF-8 bytes). */
  const rawChat = (lines) =>
    rawRequest(gw, ['POST /v1/chat/completions HTTP/1.1', 'Content-Type: application/json', ...lines], {
      body: JSON.stringify(CHAT_BODY),
    });
  const chat = (key, headers = {}, body = CHAT_BODY) => api(gw, 'POST', '/v1/chat/completions', { key, headers, body });
  const preflight = (origin, p = '/v1/chat/completions', extra = {}) =>
    api(gw, 'OPTIONS', p, {
      headers: {
        ...(origin !== undefined ? { origin } : {}),
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, x-stainless-os',
        ...extra,
      },
    });
  const isListed = async (origin) => (await preflight(origin)).status === 204;
  const sdk = (apiKey, opts = {}) =>
    new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 10000, fetch: globalThis.fetch, ...opts });

  before(async () => {
    sb = sandbox('browser-keys');
    gw = await startGateway(sb, { env: { OPENAI_API_KEY: '' } });
    root = readRootKey(sb);
    rootId = ok(await api(gw, 'GET', '/v1/tokens?type=admin', { key: root })).data[0].id;
    orgBAdmin = ok(await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'org-b' } }), 201).admin_key.key;
    pub = await createToken(gw, root, {
      name: 'widget',
      allowed_domains: ['Example.COM.', '*.Apps.Example.COM', 'bücher.example'],
      ...LOW_PRIV,
    });
    plain = await createToken(gw, root, { name: 'plain' });
    expiring = await createToken(gw, root, {
      name: 'expiring-widget',
      allowed_domains: ['expiring.test'],
      expires_at: nowSec() + 2,
      ...LOW_PRIV,
    });
  });
  after(stopAll);

  // ==== Publishable keys (SPEC §2, form 3) ====

  describe('publishable keys', () => {
    test('creation refuses a key with allowed_domains that is not low-privilege (400, param allowed_domains)', async () => {
      const count = async () => (await listAll(gw, root, '/v1/tokens?type=access')).length;
      const before = await count();
      const full = { rate_limits: LOW_PRIV.rate_limits, budget: LOW_PRIV.budget };
      const cases = [
        ['nothing but domains', {}, /allow\.models/],
        ['allow "*" (the default)', { ...full, allow: { models: '*', agents: '*' } }, /allow\.models/],
        ['models "*" as a string', { ...full, allow: { models: '*', agents: [] } }, /allow\.models/],
        ['no agents list', { ...full, allow: { models: ['demo-chat'] } }, /allow\.agents|allow\.models/],
        ['no models list', { ...full, allow: { agents: [] } }, /allow\.models/],
        ['"*" inside models', { ...full, allow: { models: ['*'], agents: [] } }, /allow\.models/],
        ['"*" inside agents', { ...full, allow: { models: ['demo-chat'], agents: ['*'] } }, /allow\.agents/],
        ['empty lists', { ...full, allow: { models: [], agents: [] } }, /allow/],
        ['no rate limits', { allow: LOW_PRIV.allow, budget: LOW_PRIV.budget }, /rate_limits\.rpm/],
        ['no rpm', { allow: LOW_PRIV.allow, budget: LOW_PRIV.budget, rate_limits: { tpm: 1000 } }, /rate_limits\.rpm/],
        ['no tpm', { allow: LOW_PRIV.allow, budget: LOW_PRIV.budget, rate_limits: { rpm: 10 } }, /rate_limits\.tpm/],
        ['no budget', { allow: LOW_PRIV.allow, rate_limits: LOW_PRIV.rate_limits }, /budget/],
      ];
      for (const [what, extra, missing] of cases) {
        const r = await api(gw, 'POST', '/v1/tokens', {
          key: root,
          body: { name: 'bad-pub', allowed_domains: ['example.com'], ...extra },
        });
        const e = assertError(r, 400, 'invalid_value', { param: 'allowed_domains', what });
        assert.match(e.message, missing, `${what}: the message names what is missing`);
        assert.equal(r.json.key, undefined, `${what}: no secret`);
      }
      assert.equal(await count(), before, 'no key was created by a refused request');
      // Without allowed_domains the same key is fine (not publishable).
      await createToken(gw, root, { name: 'not-pub', allow: { models: '*', agents: '*' } });
    });

    test('domains are stored normalised: lower case, no trailing dot, punycode', async () => {
      const want = ['example.com', '*.apps.example.com', 'xn--bcher-kva.example'];
      assert.deepEqual(pub.allowed_domains, want, 'in the create reply');
      assert.deepEqual(ok(await api(gw, 'GET', `/v1/tokens/${pub.id}`, { key: root })).allowed_domains, want, 'in GET');
      const t = await createToken(gw, root, {
        name: 'norm',
        allowed_domains: ['XN--BCHER-KVA.Example.', '*.BÜCHER.example'],
        ...LOW_PRIV,
      });
      assert.deepEqual(t.allowed_domains, ['xn--bcher-kva.example', '*.xn--bcher-kva.example']);
      ok(await api(gw, 'DELETE', `/v1/tokens/${t.id}`, { key: root }));
    });

    test('PATCH adding allowed_domains to a key without the limits → 400; with them → publishable', async () => {
      const k = await createToken(gw, root, { name: 'to-publish' });
      const r = await api(gw, 'PATCH', `/v1/tokens/${k.id}`, { key: root, body: { allowed_domains: ['patch.test'] } });
      const e = assertError(r, 400, 'invalid_value', { param: 'allowed_domains', what: 'PATCH domains only' });
      assert.match(e.message, /allow\.models/);
      const r2 = await api(gw, 'PATCH', `/v1/tokens/${k.id}`, {
        key: root,
        body: { allowed_domains: ['patch.test'], allow: LOW_PRIV.allow, rate_limits: { rpm: 5 } },
      });
      assert.match(assertError(r2, 400, 'invalid_value', { param: 'allowed_domains', what: 'no tpm' }).message, /rate_limits\.tpm/);
      const unchanged = ok(await api(gw, 'GET', `/v1/tokens/${k.id}`, { key: root }));
      assert.equal(unchanged.allowed_domains, null, 'a refused PATCH changes nothing');
      assertError(await chat(k.id, { origin: 'https://patch.test' }), 401, 'invalid_api_key', { what: 'not publishable yet' });

      const done = ok(
        await api(gw, 'PATCH', `/v1/tokens/${k.id}`, { key: root, body: { allowed_domains: ['patch.test'], ...LOW_PRIV } })
      );
      assert.deepEqual(done.allowed_domains, ['patch.test']);
      ok(await chat(k.id, { origin: 'https://patch.test' }), 200, 'publishable after the PATCH');
      assert.equal(await isListed('https://patch.test'), true, 'its domain is listed for preflight');

      // A publishable key cannot be widened again.
      for (const [what, body, missing] of [
        ['allow "*"', { allow: { models: '*', agents: [] } }, /allow\.models/],
        ['rpm dropped', { rate_limits: { tpm: 5 } }, /rate_limits\.rpm/],
      ]) {
        const rr = await api(gw, 'PATCH', `/v1/tokens/${k.id}`, { key: root, body });
        assert.match(assertError(rr, 400, 'invalid_value', { param: 'allowed_domains', what }).message, missing);
      }
      // allowed_domains [] makes it an ordinary key again: the id alone stops working.
      const cleared = ok(await api(gw, 'PATCH', `/v1/tokens/${k.id}`, { key: root, body: { allowed_domains: [] } }));
      assert.equal(cleared.allowed_domains, null);
      assertError(await chat(k.id, { origin: 'https://patch.test' }), 401, 'invalid_api_key', { what: 'no longer publishable' });
      assert.equal(await isListed('https://patch.test'), false, 'its domain left the CORS set');
    });

    test('Bearer <pk> alone from an allowed Origin → 200 chat (raw HTTP and the openai SDK)', async () => {
      const r = await chat(pub.id, { origin: 'https://example.com' });
      const c = ok(r, 200, 'pk + Origin');
      assert.equal(c.object, 'chat.completion');
      assert.ok(r.headers.get('x-request-id'), 'x-request-id');

      const client = sdk(pub.id, { defaultHeaders: { Origin: 'https://example.com' } });
      const s = await client.chat.completions.create(CHAT_BODY);
      assert.equal(s.object, 'chat.completion');
      assert.equal(typeof s.choices[0].message.content, 'string');
      const models = await client.models.list();
      assert.deepEqual(
        models.data.map((m) => m.id),
        ['demo-chat'],
        'lists only the publishable key\'s models'
      );
      // The low-privilege allowlist holds in publishable mode.
      assertError(await chat(pub.id, { origin: 'https://example.com' }, { model: 'demo-embed', messages: MSG }), 403, 'model_not_allowed', {
        what: 'a model outside the allowlist',
      });
      await assert.rejects(sdk(pub.id).chat.completions.create(CHAT_BODY), (e) => {
        assert.equal(e.status, 403, 'the SDK without Origin is refused');
        assert.equal(e.code, 'origin_not_allowed');
        return true;
      });
    });

    test('the origin rules: exact, *.wildcard, case, trailing dot, punycode, Referer fallback; everything else → 403', async () => {
      const homograph = 'ex\u0430mple.com'; // Cyrillic а
      const homographPuny = url.domainToASCII(homograph);
      assert.match(homographPuny, /^xn--/, 'the homograph has a distinct punycode form');
      const allowed = [
        ['exact', ['Origin: https://example.com']],
        ['http scheme', ['Origin: http://example.com']],
        ['with a port', ['Origin: https://example.com:8443']],
        ['letter case', ['Origin: https://EXAMPLE.Com']],
        ['upper-case scheme', ['Origin: HTTPS://example.com']],
        ['trailing dot', ['Origin: https://example.com.']],
        ['wildcard, one label', ['Origin: https://x.apps.example.com']],
        ['wildcard, two labels', ['Origin: https://a.b.apps.example.com']],
        ['wildcard, case and dot', ['Origin: https://X.Apps.EXAMPLE.com.']],
        ['punycode', ['Origin: https://xn--bcher-kva.example']],
        ['Unicode (UTF-8 bytes)', ['Origin: https://bücher.example']],
        ['Unicode, upper case', ['Origin: https://BÜCHER.example']],
        ['Referer only, allowed host', ['Referer: https://example.com/page?q=1#top']],
        ['Referer only, wildcard host', ['Referer: https://x.apps.example.com/']],
        ['Referer only, port', ['Referer: https://example.com:8443/a/b']],
      ];
      const refused = [
        ['evil-example.com', ['Origin: https://evil-example.com']],
        ['suffix host', ['Origin: https://example.com.evil.net']],
        ['userinfo', ['Origin: https://example.com@evil.net']],
        ['userinfo in Referer', ['Referer: https://example.com@evil.net/']],
        ['the apex of a *. pattern', ['Origin: https://apps.example.com']],
        ['a label ending like the pattern', ['Origin: https://evilapps.example.com']],
        ['a subdomain of an exact domain', ['Origin: https://www.example.com']],
        ['null', ['Origin: null']],
        ['no Origin, no Referer', []],
        ['empty Origin', ['Origin: ']],
        ['empty Origin, allowed Referer', ['Origin: ', 'Referer: https://example.com/']],
        ['Referer only, foreign host', ['Referer: https://evil.net/page']],
        ['Referer only, allowed host in the query', ['Referer: https://evil.net/?from=https://example.com']],
        ['a foreign Origin wins over an allowed Referer', ['Origin: https://evil.net', 'Referer: https://example.com/']],
        ['two Origin headers', ['Origin: https://example.com', 'Origin: https://evil.net']],
        ['ftp scheme', ['Origin: ftp://example.com']],
        ['no scheme', ['Origin: example.com']],
        ['port 99999', ['Origin: https://example.com:99999']],
        ['port 0', ['Origin: https://example.com:0']],
        ['empty port', ['Origin: https://example.com:']],
        ['two trailing dots', ['Origin: https://example.com..']],
        ['Origin with a path', ['Origin: https://example.com/x']],
        ['a look-alike', ['Origin: https://bucher.example']],
        ['IDN homograph (UTF-8)', [`Origin: https://${homograph}`]],
        ['IDN homograph (punycode)', [`Origin: https://${homographPuny}`]],
        ['Unicode wildcard trick', ['Origin: https://x.apps.example.com\u3002evil.net']],
      ];
      for (const [what, lines] of allowed) {
        const r = await rawChat([`Authorization: Bearer ${pub.id}`, ...lines]);
        assert.equal(r.status, 200, `${what} is allowed: ${redact(r.text)}`);
        assert.equal(r.json?.object, 'chat.completion', `${what}: a chat answer`);
      }
      for (const [what, lines] of refused) {
        const r = await rawChat([`Authorization: Bearer ${pub.id}`, ...lines]);
        assertError(r, 403, 'origin_not_allowed', { what: `${what} is refused` });
      }
    });

    test('the pk id of a key without allowed_domains never authenticates alone → 401 invalid_api_key', async () => {
      const a = await chat(plain.id, { origin: 'https://example.com' });
      assertError(a, 401, 'invalid_api_key', { what: 'non-publishable pk' });
      const unknown = await chat('pk_' + 'A'.repeat(24), { origin: 'https://example.com' });
      assertError(unknown, 401, 'invalid_api_key', { what: 'unknown pk' });
      assert.equal(a.text, unknown.text, 'a non-publishable id answers like an unknown one');
      assert.ok(!a.text.includes(plain.id), 'the message does not echo the id');
    });

    test('pk:sk pairs skip the origin check; a pair with another key\'s secret answers like a wrong secret', async () => {
      ok(await chat(`${pub.id}:${pub.key}`), 200, 'pair, no Origin');
      ok(await chat(`${pub.id}:${pub.key}`, { origin: 'https://evil.net' }), 200, 'pair, foreign Origin');
      ok(await chat(`${plain.id}:${plain.key}`), 200, 'pair of a non-publishable key');
      const other = await chat(`${pub.id}:${plain.key}`);
      const wrong = await chat(`${pub.id}:${forgeSecret('live')}`);
      assertError(other, 401, 'invalid_api_key', { what: 'pk with another key\'s secret' });
      assertError(wrong, 401, 'invalid_api_key', { what: 'pk with a wrong secret' });
      assert.equal(other.text, wrong.text, 'byte-identical 401 bodies');
      assert.equal(other.headers.get('www-authenticate'), wrong.headers.get('www-authenticate'));
      const swapped = await chat(`${plain.id}:${pub.key}`);
      assert.equal(swapped.status, 401);
      assert.equal(swapped.text, wrong.text, 'the other way round too');
    });

    test('publishable keys on admin routes are refused (never 200)', async () => {
      const h = { origin: 'https://example.com' };
      const calls = [
        ['GET', '/v1/tokens'],
        ['POST', '/v1/tokens', { name: 'x' }],
        ['GET', `/v1/tokens/${pub.id}`],
        ['PATCH', `/v1/tokens/${pub.id}`, { allowed_domains: ['evil.net'] }],
        ['POST', `/v1/tokens/${pub.id}/disable`],
        ['POST', `/v1/tokens/${pub.id}/rotate`],
        ['POST', `/v1/tokens/${pub.id}/ephemeral`, { ttl_seconds: 60 }],
        ['POST', '/v1/ephemeral-tokens', { ttl_seconds: 60 }],
        ['GET', '/v1/audit-events'],
        ['GET', '/v1/admin/environments'],
      ];
      for (const [m, p, body] of calls) {
        for (const cred of [pub.id, `${pub.id}:${pub.key}`]) {
          if (cred !== pub.id && p === '/v1/ephemeral-tokens') continue; // its own secret may mint (below)
          const r = await api(gw, m, p, { key: cred, body, headers: h });
          assertError(r, 403, 'admin_required', { what: `${m} ${p} with ${cred === pub.id ? 'pk' : 'pk:sk'}` });
          assert.ok(!/kg_(live|test|eph)_/.test(r.text), `${m} ${p}: no secret in the answer`);
        }
      }
      const me = ok(await api(gw, 'GET', `/v1/tokens/${pub.id}`, { key: root }));
      assert.equal(me.status, 'active', 'the refused disable did nothing');
      assert.deepEqual(me.allowed_domains, ['example.com', '*.apps.example.com', 'xn--bcher-kva.example']);
      ok(await chat(pub.key), 200, 'and the refused rotate did nothing: the secret still works');
    });

    test('disabling a publishable key → 401 key_disabled on the next request; enable → back', async () => {
      const k = await createToken(gw, root, { name: 'dis', allowed_domains: ['dis.test'], ...LOW_PRIV });
      const h = { origin: 'https://dis.test' };
      ok(await chat(k.id, h), 200);
      ok(await api(gw, 'POST', `/v1/tokens/${k.id}/disable`, { key: root }));
      assertError(await chat(k.id, h), 401, 'key_disabled', { what: 'pk after disable' });
      ok(await api(gw, 'POST', `/v1/tokens/${k.id}/enable`, { key: root }));
      ok(await chat(k.id, h), 200, 'after enable');
      ok(await api(gw, 'DELETE', `/v1/tokens/${k.id}`, { key: root }));
      assertError(await chat(k.id, h), 401, 'key_revoked', { what: 'pk after revoke' });
    });
  });

  // ==== CORS (SPEC §2) ====

  describe('CORS', () => {
    function assertPreflightOk(r, origin, what) {
      assert.equal(r.status, 204, `${what}: 204 (${redact(r.text)})`);
      assert.equal(r.text, '', `${what}: no body`);
      assert.equal(r.headers.get('access-control-allow-origin'), origin, `${what}: the exact origin, never *`);
      assert.equal(
        r.headers.get('access-control-allow-headers'),
        'authorization, content-type, x-stainless-os',
        `${what}: echoes the requested headers`
      );
      assert.ok(tokens(r.headers.get('access-control-allow-methods')).includes('post'), `${what}: POST allowed`);
      const expose = tokens(r.headers.get('access-control-expose-headers'));
      for (const h of ['x-request-id', ...RATELIMIT_HEADERS]) assert.ok(expose.includes(h), `${what}: exposes ${h}`);
      assert.ok(tokens(r.headers.get('vary')).includes('origin'), `${what}: Vary: Origin`);
    }

    test('preflight for a listed origin (exact or wildcard) → 204 echoing origin and headers', async () => {
      assertPreflightOk(await preflight('https://example.com'), 'https://example.com', 'exact');
      assertPreflightOk(await preflight('https://x.apps.example.com'), 'https://x.apps.example.com', 'wildcard');
      assertPreflightOk(await preflight('https://xn--bcher-kva.example'), 'https://xn--bcher-kva.example', 'punycode');
      assertPreflightOk(await preflight('https://example.com', '/api/v1/chat/completions'), 'https://example.com', '/api/v1 alias');
      assertPreflightOk(await preflight('https://example.com', '/v1/embeddings'), 'https://example.com', 'embeddings');
      assertPreflightOk(await preflight('https://example.com', '/v1/models'), 'https://example.com', 'models');
      const other = await preflight('https://example.com', '/v1/chat/completions', {
        'access-control-request-headers': 'x-stainless-lang, x-stainless-retry-count, authorization',
      });
      assert.equal(other.status, 204);
      assert.equal(other.headers.get('access-control-allow-headers'), 'x-stainless-lang, x-stainless-retry-count, authorization');
    });

    test('preflight for an origin in no active publishable key\'s domains → no allow-origin (403 JSON)', async () => {
      for (const [what, origin] of [
        ['foreign', 'https://evil.net'],
        ['look-alike', 'https://evil-example.com'],
        ['apex of a wildcard', 'https://apps.example.com'],
        ['null', 'null'],
        ['no Origin', undefined],
        ['a non-publishable key\'s world', 'https://plain.test'],
      ]) {
        const r = await preflight(origin);
        assert.equal(r.headers.get('access-control-allow-origin'), null, `${what}: no allow-origin`);
        assert.deepEqual(corsHeaderNames(r), [], `${what}: no CORS headers at all`);
        assertError(r, 403, 'origin_not_allowed', { what: `${what} preflight` });
      }
    });

    test('disable / enable / revoke / PATCH move origins out of and into the preflight set at once', async () => {
      const d = await createToken(gw, root, { name: 'cors-d', allowed_domains: ['cors-only.test', 'shared.test'], ...LOW_PRIV });
      const e = await createToken(gw, root, { name: 'cors-e', allowed_domains: ['shared.test'], ...LOW_PRIV });
      assert.equal(await isListed('https://cors-only.test'), true, 'listed on creation');
      assert.equal(await isListed('https://shared.test'), true);

      const gone = async (origin, what) => {
        const { elapsedMs } = await waitFor(async () => !(await isListed(origin)), {
          timeoutMs: 100,
          intervalMs: 5,
          what: `${origin} to leave the preflight set (${what})`,
        });
        return elapsedMs;
      };
      ok(await api(gw, 'POST', `/v1/tokens/${d.id}/disable`, { key: root }));
      await gone('https://cors-only.test', 'disable');
      assert.equal(await isListed('https://shared.test'), true, 'still listed through the other active key');
      ok(await api(gw, 'POST', `/v1/tokens/${d.id}/enable`, { key: root }));
      assert.equal(await isListed('https://cors-only.test'), true, 'listed again after enable');
      ok(await api(gw, 'DELETE', `/v1/tokens/${d.id}`, { key: root }));
      await gone('https://cors-only.test', 'revoke');
      assert.equal(await isListed('https://shared.test'), true, 'still listed through the other key');
      ok(await api(gw, 'PATCH', `/v1/tokens/${e.id}`, { key: root, body: { allowed_domains: ['moved.test'] } }));
      await gone('https://shared.test', 'PATCH away');
      assert.equal(await isListed('https://moved.test'), true, 'the new domain is listed');
      ok(await api(gw, 'DELETE', `/v1/tokens/${e.id}`, { key: root }));
      await gone('https://moved.test', 'revoke of the last key');
    });

    test('local CLI disable / enable / delete: the preflight set follows within the change feed\'s 100 ms', async (t) => {
      const FEED_BOUND_MS = 100; // SPEC §7, measured from the CLI's exit, polling every 5 ms
      const k = await createToken(gw, root, { name: 'cors-cli', allowed_domains: ['cli-cors.test'], ...LOW_PRIV });
      const origin = 'https://cli-cors.test';
      assert.equal(await isListed(origin), true);
      for (const [verb, listed] of [['disable', false], ['enable', true], ['delete', false]]) {
        const r = await sb.cli(['access-key', verb, '--id', k.id]);
        assert.equal(r.code, 0, `access-key ${verb}: ${r.stderr}`);
        const seen = await waitFor(async () => ((await isListed(origin)) === listed ? performance.now() : false), {
          timeoutMs: 2000,
          intervalMs: 5,
          what: `CLI ${verb} to reach the preflight set`,
        });
        const ms = seen.value - r.exitedAt;
        t.diagnostic(`CLI ${verb} visible to preflight after ${ms.toFixed(1)} ms`);
        assert.ok(ms < FEED_BOUND_MS, `CLI ${verb} visible after ${ms.toFixed(1)} ms (bound ${FEED_BOUND_MS})`);
      }
    });

    test('real answers to a listed origin carry allow-origin (200 and errors); unlisted ones do not', async () => {
      const origin = 'https://x.apps.example.com';
      const check = (r, what, status) => {
        assert.equal(r.status, status, `${what}: ${status} (${redact(r.text)})`);
        assert.equal(r.headers.get('access-control-allow-origin'), origin, `${what}: allow-origin`);
        const expose = tokens(r.headers.get('access-control-expose-headers'));
        for (const h of ['x-request-id', ...RATELIMIT_HEADERS]) assert.ok(expose.includes(h), `${what}: exposes ${h}`);
        assert.ok(tokens(r.headers.get('vary')).includes('origin'), `${what}: Vary: Origin`);
      };
      check(await chat(pub.id, { origin }), 'pk 200', 200);
      check(await api(gw, 'GET', '/v1/models', { key: pub.id, headers: { origin } }), 'models 200', 200);
      check(await chat(forgeSecret('live'), { origin }), 'unknown secret 401', 401);
      check(await chat(undefined, { origin }), 'no key 401', 401);
      check(await chat(plain.id, { origin }), 'non-publishable pk 401', 401);
      // Listed (through `pub`) but not one of this key's domains: 403 the page can read.
      const k = await createToken(gw, root, { name: 'elsewhere', allowed_domains: ['elsewhere.test'], ...LOW_PRIV });
      check(await chat(k.id, { origin }), 'another key\'s origin 403', 403);
      check(await chat(pub.id, { origin }, { model: 'demo-embed', messages: MSG }), 'model_not_allowed 403', 403);
      check(await api(gw, 'GET', '/v1/chat/completions', { key: pub.id, headers: { origin } }), 'wrong method', 405);
      ok(await api(gw, 'DELETE', `/v1/tokens/${k.id}`, { key: root }));

      for (const [what, r] of [
        ['unlisted 403', await chat(pub.id, { origin: 'https://evil.net' })],
        ['unlisted 200 (secret)', await chat(plain.key, { origin: 'https://evil.net' })],
        ['no Origin 200 (secret)', await chat(plain.key)],
      ]) {
        assert.deepEqual(corsHeaderNames(r), [], `${what}: no CORS headers`);
      }
    });

    test('admin routes never carry CORS headers, not even for OPTIONS from a listed origin', async () => {
      const h = { origin: 'https://example.com' };
      const pre = { ...h, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' };
      const calls = [
        ['GET /v1/tokens (root)', await api(gw, 'GET', '/v1/tokens?limit=1', { key: root, headers: h })],
        ['GET /v1/tokens (no key)', await api(gw, 'GET', '/v1/tokens', { headers: h })],
        ['GET /api/v1/tokens (root)', await api(gw, 'GET', '/api/v1/tokens?limit=1', { key: root, headers: h })],
        ['GET /v1/audit-events', await api(gw, 'GET', '/v1/audit-events?limit=1', { key: root, headers: h })],
        ['OPTIONS /v1/tokens', await api(gw, 'OPTIONS', '/v1/tokens', { headers: pre })],
        ['OPTIONS /api/v1/tokens', await api(gw, 'OPTIONS', '/api/v1/tokens', { headers: pre })],
        ['OPTIONS /v1/ephemeral-tokens', await api(gw, 'OPTIONS', '/v1/ephemeral-tokens', { headers: pre })],
        ['OPTIONS /v1/admin/models', await api(gw, 'OPTIONS', '/v1/admin/models', { headers: pre })],
        ['POST /v1/ephemeral-tokens', await mint(plain.key, { ttl_seconds: 60 }, { headers: h })],
      ];
      for (const [what, r] of calls) {
        assert.notEqual(r.status, 204, `${what}: not a preflight answer`);
        assert.deepEqual(corsHeaderNames(r), [], `${what}: no CORS headers (${r.status})`);
      }
      assert.equal(calls[0][1].status, 200);
      assert.equal(calls.at(-1)[1].status, 201, 'the access key minted');
    });
  });

  // ==== Ephemeral tokens (SPEC §3) ====

  describe('ephemeral tokens', () => {
    let parent; // scopes chat+embed, models demo-chat and demo-embed
    let tok; // a plain token of parent
    let short; // a ttl 1 token of parent (expires during the run)
    let graceParent;
    let graceTok;
    let graceUntil;
    let graceOldTok; // minted with the old secret during the grace
    let graceNewTok; // minted with the new secret during the grace

    before(async () => {
      parent = await createToken(gw, root, {
        name: 'eph-parent',
        scopes: ['inference:chat', 'inference:embed'],
        allow: { models: ['demo-chat', 'demo-embed'], agents: [] },
      });
      tok = await mintOk(parent.key, { ttl_seconds: 600 });
      short = await mintOk(parent.key, { ttl_seconds: 1 });
      graceParent = await createToken(gw, root, { name: 'eph-grace' });
      graceTok = await mintOk(graceParent.key, { ttl_seconds: 600 });
      ok(await chat(graceTok.token), 200, 'grace token before the rotation');
      const rot = ok(await api(gw, 'POST', `/v1/tokens/${graceParent.id}/rotate`, { key: root, body: { grace_seconds: 2 } }));
      graceUntil = rot.grace_until;
      assert.equal(typeof graceUntil, 'number');
      graceOldTok = await mintOk(graceParent.key, { ttl_seconds: 600 });
      graceNewTok = await mintOk(rot.key, { ttl_seconds: 600 });
    });

    test('a token\'s use is charged to its parent: the parent\'s last_used_at moves', async () => {
      // Minted by an admin, so the parent's own secret is never presented.
      const quiet = await createToken(gw, root, { name: 'eph-charged' });
      const t = await mintOk(root, { ttl_seconds: 60 }, { parent: quiet.id, viaAdmin: true });
      const before = ok(await api(gw, 'GET', `/v1/tokens/${quiet.id}`, { key: root }));
      assert.equal(before.last_used_at, null, 'the parent was never used');
      const t0 = nowSec();
      ok(await chat(t.token), 200, 'chat with the token');
      const { value } = await waitFor(
        async () => ok(await api(gw, 'GET', `/v1/tokens/${quiet.id}`, { key: root })).last_used_at ?? false,
        { timeoutMs: 5000, intervalMs: 100, what: 'the parent\'s last_used_at' },
      );
      assert.ok(value >= t0 && value <= nowSec(), `last_used_at ${value}`);
    });

    test('POST /v1/ephemeral-tokens with the access key\'s own secret → 201 token', async () => {
      const t0 = nowSec();
      const r = await mint(parent.key, { ttl_seconds: 300 });
      const t = ok(r, 201);
      assert.deepEqual(Object.keys(t).sort(), ['expires_at', 'object', 'parent_id', 'token', 'ttl_seconds']);
      assert.equal(t.object, 'ephemeral_token');
      assert.match(t.token, EPH_RE, 'kg_eph_<payload>.<signature>');
      assert.equal(t.parent_id, parent.id);
      assert.equal(t.ttl_seconds, 300);
      assert.ok(t.expires_at >= t0 + 300 && t.expires_at <= nowSec() + 300, `expires_at ${t.expires_at}`);
      assert.match(r.headers.get('cache-control') ?? '', /no-store/, 'a secret-bearing answer is not cached');
      assert.match(tok.token, EPH_RE);
      assert.notEqual(t.token, tok.token, 'each mint is a new token');
      // The pair form carries the same own secret.
      const p = await mintOk(`${parent.id}:${parent.key}`, { ttl_seconds: 60, scopes: ['inference:chat'] });
      assert.equal(p.parent_id, parent.id);
      // Full narrowing in one call.
      const n = await mintOk(parent.key, { ttl_seconds: 3600, scopes: ['inference:embed'], allow: { models: ['demo-embed'], agents: [] } });
      assert.equal(n.ttl_seconds, 3600, 'the maximum ttl is accepted');
    });

    test('refused minting credentials: admin key, gateway key, publishable pk, ephemeral token, none', async () => {
      const gk = await createToken(gw, root, { token_type: 'gateway', name: 'gk' });
      const cases = [
        ['root admin key', root, {}, [403, 404]],
        ['other org admin key', orgBAdmin, {}, [403, 404]],
        ['gateway key', gk.key, {}, [403]],
        ['publishable pk + allowed Origin', pub.id, { origin: 'https://example.com' }, [403]],
        ['publishable pk, no Origin', pub.id, {}, [403]],
        ['ephemeral token', tok.token, {}, [403]],
        ['pair pk:ephemeral token', `${parent.id}:${tok.token}`, {}, [403]],
        ['no credential', undefined, {}, [401]],
        ['forged secret', forgeSecret('live'), {}, [401]],
      ];
      for (const [what, cred, headers, statuses] of cases) {
        const r = await mint(cred, { ttl_seconds: 60 }, { headers });
        assert.ok(statuses.includes(r.status), `${what}: ${statuses.join('/')}, got ${r.status} ${redact(r.text)}`);
        assert.ok(r.json?.error, `${what}: an error body`);
        assert.ok(!/kg_eph_/.test(r.text), `${what}: no token`);
      }
      const g = await mint(gk.key, { ttl_seconds: 60 });
      assertError(g, 403, 'admin_required', { what: 'a gateway key cannot mint' });
      const e = await mint(tok.token, { ttl_seconds: 60 });
      assertError(e, 403, 'admin_required', { what: 'an ephemeral token cannot mint' });
    });

    test('POST /v1/tokens/{id}/ephemeral with an admin key → 201; another org\'s id → 404', async () => {
      const t = await mintOk(root, { ttl_seconds: 120 }, { parent: parent.id, viaAdmin: true });
      assert.equal(t.parent_id, parent.id);
      assert.match(t.token, EPH_RE);
      ok(await chat(t.token), 200, 'an admin-minted token works');
      assertError(await mint(orgBAdmin, { ttl_seconds: 60 }, { parent: parent.id, viaAdmin: true }), 404, 'not_found', {
        what: 'another org\'s key id',
      });
      assertError(await mint(root, { ttl_seconds: 60 }, { parent: 'pk_' + 'B'.repeat(24), viaAdmin: true }), 404, 'not_found', {
        what: 'unknown id',
      });
      const r = await mint(root, { ttl_seconds: 60 }, { parent: rootId, viaAdmin: true });
      assert.equal(r.status, 400, `an admin key is no parent: ${redact(r.text)}`);
      // An access key cannot use the admin route, even for itself.
      assertError(await mint(parent.key, { ttl_seconds: 60 }, { parent: parent.id, viaAdmin: true }), 403, 'admin_required');
    });

    test('validation: ttl, narrowing, unknown members', async () => {
      for (const ttl of [0, -1, 3601, 86400, 1.5, '60', null, true]) {
        assertError(await mint(parent.key, { ttl_seconds: ttl }), 400, 'invalid_value', {
          param: 'ttl_seconds',
          what: `ttl_seconds ${JSON.stringify(ttl)}`,
        });
      }
      const wider = [
        ['a scope the parent lacks', { scopes: ['inference:transcribe'] }, 'scopes'],
        ['an unknown scope', { scopes: ['admin:all'] }, 'scopes'],
        ['chat plus a missing scope', { scopes: ['inference:chat', 'inference:image'] }, 'scopes'],
        ['empty scopes', { scopes: [] }, 'scopes'],
        ['scopes "*"', { scopes: '*' }, 'scopes'],
        ['a model the parent lacks', { allow: { models: ['gpt-4o-mini'] } }, 'allow.models'],
        ['a pattern wider than the parent\'s list', { allow: { models: ['demo-*'] } }, 'allow.models'],
        ['models "*"', { allow: { models: '*' } }, 'allow.models'],
        ['["*"]', { allow: { models: ['*'] } }, 'allow.models'],
        ['an agent the parent lacks', { allow: { agents: ['support-bot'] } }, 'allow.agents'],
        ['a separator in a name', { allow: { models: ['demo-chat;m=gpt-4o-mini'] } }, 'allow.models'],
        ['allow not an object', { allow: ['demo-chat'] }, 'allow'],
      ];
      for (const [what, extra, param] of wider) {
        assertError(await mint(parent.key, { ttl_seconds: 60, ...extra }), 400, 'invalid_value', { param, what });
      }
      assertError(await mint(parent.key, { ttl_seconds: 60, colour: 'red' }), 400, 'unknown_parameter', {
        param: 'colour',
        what: 'unknown member',
      });
      const e = assertError(await mint(parent.key, { ttl_seconds: 60, allow: { datasets: [] } }), 400, 'unknown_parameter', {
        what: 'unknown member of allow',
      });
      assert.match(e.param ?? '', /^allow/, 'param names allow');
      assertError(await mint(parent.key, { ttl_seconds: 60, allowed_domains: ['example.com'] }), 400, 'unknown_parameter');
      const bad = await api(gw, 'POST', '/v1/ephemeral-tokens', { key: parent.key, raw: '{"ttl_seconds": 60' });
      assertError(bad, 400, 'invalid_json', { what: 'broken JSON' });
    });

    test('using a token: the openai SDK works; scope, model and listing follow the narrowing', async () => {
      const client = sdk(tok.token);
      const c = await client.chat.completions.create(CHAT_BODY);
      assert.equal(c.object, 'chat.completion');
      const emb = await client.embeddings.create({ model: 'demo-embed', input: 'hi' });
      assert.equal(emb.data.length, 1);
      assert.deepEqual((await client.models.list()).data.map((m) => m.id).sort(), ['demo-chat', 'demo-embed']);
      const stream = await client.chat.completions.create({ ...CHAT_BODY, stream: true });
      let text = '';
      for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
      assert.ok(text.length > 0, 'streams');

      const embedOnly = await mintOk(parent.key, { ttl_seconds: 60, scopes: ['inference:embed'] });
      assertError(await chat(embedOnly.token), 403, 'insufficient_scope', { what: 'chat with an embed-only token' });
      assertError(await api(gw, 'POST', '/v1/completions', { key: embedOnly.token, body: { model: 'demo-chat', prompt: 'x' } }), 403, 'insufficient_scope');
      ok(await api(gw, 'POST', '/v1/embeddings', { key: embedOnly.token, body: { model: 'demo-embed', input: 'x' } }), 200);

      const narrow = await mintOk(parent.key, { ttl_seconds: 60, allow: { models: ['demo-embed'] } });
      assertError(await chat(narrow.token), 403, 'model_not_allowed', { param: 'model', what: 'a model outside the narrowing' });
      ok(await api(gw, 'POST', '/v1/embeddings', { key: narrow.token, body: { model: 'demo-embed', input: 'x' } }), 200);
      const list = ok(await api(gw, 'GET', '/v1/models', { key: narrow.token }));
      assert.deepEqual(list.data.map((m) => m.id), ['demo-embed'], 'GET /v1/models lists only the narrowed models');
      ok(await api(gw, 'GET', '/v1/models/demo-embed', { key: narrow.token }), 200);
      // Outside the parent altogether.
      assertError(await chat(tok.token, {}, { model: 'gpt-4o-mini', messages: MSG }), 403, 'model_not_allowed');

      // Pairs: the parent's id with the token works; another id does not.
      ok(await chat(`${parent.id}:${tok.token}`), 200, 'parent pk : token');
      assertError(await chat(`${plain.id}:${tok.token}`), 401, 'invalid_api_key', { what: 'other pk : token' });
      // Never an admin credential.
      assertError(await api(gw, 'GET', '/v1/tokens', { key: tok.token }), 403, 'admin_required');
      // SPEC §4: GET /v1/models/{id} shows only what the credential may reach, like the list.
      assertError(await api(gw, 'GET', '/v1/models/demo-chat', { key: narrow.token }), 403, 'model_not_allowed', {
        what: 'GET /v1/models/{id} of a model outside the narrowing',
      });
    });

    test('a tampered token (payload or signature) → 401 invalid_api_key', async () => {
      const [, payload, sig] = tok.token.match(EPH_RE);
      const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      const variants = [
        ['payload, first char', `kg_eph_${flip(payload, 0)}.${sig}`],
        ['payload, middle char', `kg_eph_${flip(payload, payload.length >> 1)}.${sig}`],
        ['payload, last char', `kg_eph_${flip(payload, payload.length - 1)}.${sig}`],
        ['signature, first char', `kg_eph_${payload}.${flip(sig, 0)}`],
        ['signature, middle char', `kg_eph_${payload}.${flip(sig, 20)}`],
        ['signature truncated', `kg_eph_${payload}.${sig.slice(0, -1)}`],
        ['signature extended', `kg_eph_${payload}.${sig}A`],
        ['no signature', `kg_eph_${payload}`],
        ['another token\'s signature', `kg_eph_${payload}.${short.token.match(EPH_RE)[2]}`],
        ['payload truncated', `kg_eph_${payload.slice(0, -4)}.${sig}`],
        ['another brand', `zz_eph_${payload}.${sig}`],
        // The last character carries 2 spare bits: another spelling of the same signature bytes.
        ['signature, a second spelling', `kg_eph_${payload}.${sig.slice(0, -1)}${respell(sig.at(-1))}`],
      ];
      const wrong = await chat(forgeSecret('live'));
      for (const [what, t] of variants) {
        const r = await chat(t);
        assertError(r, 401, 'invalid_api_key', { what });
        assert.equal(r.text, wrong.text, `${what}: the same answer as any unknown key`);
      }
      ok(await chat(tok.token), 200, 'the original still works');
      // Never in a URL: a token in the query string is refused even beside a good header.
      const inQuery = await api(gw, 'POST', `/v1/chat/completions?token=${tok.token}`, { key: tok.token, body: CHAT_BODY });
      assertError(inQuery, 401, 'invalid_api_key', { what: 'a token in the query string' });
    });

    test('parent disabled → key_disabled and back after enable; revoked → key_revoked', async () => {
      const p = await createToken(gw, root, { name: 'eph-status' });
      const t = await mintOk(p.key, { ttl_seconds: 600 });
      ok(await chat(t.token), 200);
      ok(await api(gw, 'POST', `/v1/tokens/${p.id}/disable`, { key: root }));
      assertError(await chat(t.token), 401, 'key_disabled', { what: 'parent disabled' });
      assertError(await mint(p.key, { ttl_seconds: 60 }), 401, 'key_disabled', { what: 'a disabled key cannot mint' });
      ok(await api(gw, 'POST', `/v1/tokens/${p.id}/enable`, { key: root }));
      ok(await chat(t.token), 200, 'back after enable');
      ok(await api(gw, 'DELETE', `/v1/tokens/${p.id}`, { key: root }));
      assertError(await chat(t.token), 401, 'key_revoked', { what: 'parent revoked' });
      assertError(await mint(root, { ttl_seconds: 60 }, { parent: p.id, viaAdmin: true }), 400, 'invalid_value', {
        what: 'no minting from a revoked key',
      });
    });

    test('parent disabled by the local CLI → its tokens stop within the change feed\'s 100 ms', async () => {
      const p = await createToken(gw, root, { name: 'eph-cli' });
      const t = await mintOk(p.key, { ttl_seconds: 600 });
      ok(await chat(t.token), 200);
      const r = await sb.cli(['access-key', 'disable', '--id', p.id]);
      assert.equal(r.code, 0, r.stderr);
      const seen = await waitFor(
        async () => {
          const res = await api(gw, 'GET', '/v1/models', { key: t.token });
          return res.status === 401 ? { at: performance.now(), res } : false;
        },
        { timeoutMs: 2000, intervalMs: 5, what: 'the CLI disable to reach the token' }
      );
      assertError(seen.value.res, 401, 'key_disabled');
      const ms = seen.value.at - r.exitedAt;
      assert.ok(ms < 100, `token refused ${ms.toFixed(1)} ms after the CLI exited (bound 100)`);
    });

    test('parent rotated without grace → its tokens die at once (also a second rotation in the same second)', async () => {
      const p = await createToken(gw, root, { name: 'eph-rotate' });
      const t = await mintOk(p.key, { ttl_seconds: 600 });
      ok(await chat(t.token), 200);
      const r1 = ok(await api(gw, 'POST', `/v1/tokens/${p.id}/rotate`, { key: root, body: {} }));
      assertError(await chat(t.token), 401, 'invalid_api_key', { what: 'token after a rotation without grace' });
      assertError(await chat(p.key), 401, 'invalid_api_key', { what: 'the old secret' });

      // A token minted with the new secret dies at the next rotation, even one in the same second.
      // Early in a second, but clear of its boundary (time(2) is a coarse clock that lags a tick).
      const inWindow = () => Date.now() % 1000 >= 50 && Date.now() % 1000 < 400;
      await waitFor(inWindow, { timeoutMs: 1100, intervalMs: 5, what: 'the start of a second' });
      const r2 = ok(await api(gw, 'POST', `/v1/tokens/${p.id}/rotate`, { key: root, body: {} }));
      const t2 = await mintOk(r2.key, { ttl_seconds: 600 });
      ok(await chat(t2.token), 200, 'a token of the new secret works');
      ok(await api(gw, 'POST', `/v1/tokens/${p.id}/rotate`, { key: root, body: {} }));
      assertError(await chat(r2.key), 401, 'invalid_api_key', { what: 'the second secret after the third rotation' });
      assertError(await chat(t2.token), 401, 'invalid_api_key', {
        what: 'a token minted after rotation 2, after rotation 3 in the same second',
      });
      assert.ok(r1.key);
    });

    test('a second rotation ends the first grace at once, for tokens too', async () => {
      const p = await createToken(gw, root, { name: 'eph-grace2' });
      const t = await mintOk(p.key, { ttl_seconds: 600 });
      ok(await api(gw, 'POST', `/v1/tokens/${p.id}/rotate`, { key: root, body: { grace_seconds: 60 } }));
      ok(await chat(p.key), 200, 'old secret in its grace');
      ok(await chat(t.token), 200, 'token in the grace');
      ok(await api(gw, 'POST', `/v1/tokens/${p.id}/rotate`, { key: root, body: { grace_seconds: 60 } }));
      assertError(await chat(p.key), 401, 'invalid_api_key', { what: 'the first secret after a second rotation' });
      assertError(await chat(t.token), 401, 'invalid_api_key', { what: 'a token of the first secret after a second rotation' });
    });

    test('parent rotated with grace → its tokens work until the grace ends, then 401 invalid_api_key', async () => {
      if (nowSec() < graceUntil) ok(await chat(graceTok.token), 200, 'in the grace');
      let lastOkStart = 0;
      const seen = await waitFor(
        async () => {
          const start = Date.now();
          const r = await chat(graceTok.token);
          if (r.status === 200) lastOkStart = start;
          return r.status === 401 ? { end: Date.now(), code: r.json?.error?.code } : false;
        },
        { timeoutMs: (graceUntil - nowSec() + 2) * 1000, intervalMs: 20, what: 'the grace to end' }
      );
      assert.equal(seen.value.code, 'invalid_api_key');
      assert.ok(seen.value.end >= graceUntil * 1000, 'not refused before the grace ended');
      assert.ok(lastOkStart < graceUntil * 1000 + 20, 'no success after the grace ended');
      assertError(await chat(graceParent.key), 401, 'invalid_api_key', { what: 'the old secret after its grace' });
      ok(await chat(graceNewTok.token), 200, 'a token of the new secret outlives the grace');
      // The old secret's reach ends with its grace: a token it minted during the grace ends too.
      assertError(await chat(graceOldTok.token), 401, 'invalid_api_key', {
        what: 'a token minted with the old secret during the grace, after the grace',
      });
    });

    test('expired (ttl_seconds 1) → 401 key_expired', async () => {
      let lastOkStart = 0;
      const seen = await waitFor(
        async () => {
          const start = Date.now();
          const r = await api(gw, 'GET', '/v1/models', { key: short.token });
          if (r.status === 200) lastOkStart = start;
          return r.status === 401 ? { end: Date.now(), res: r } : false;
        },
        { timeoutMs: Math.max(0, (short.expires_at - nowSec() + 2) * 1000), intervalMs: 20, what: 'the token to expire' }
      );
      assertError(seen.value.res, 401, 'key_expired', { what: 'expired token' });
      assert.ok(seen.value.end >= short.expires_at * 1000, 'not refused before expires_at');
      assert.ok(lastOkStart < short.expires_at * 1000 + 20, 'no success after expires_at');
      assertError(await chat(short.token), 401, 'key_expired');
    });
  });

  // ==== A publishable key that expires ====

  test('an expired publishable key: pk → 401 key_expired, and its origins leave the preflight set', async () => {
    await waitFor(() => nowSec() >= expiring.expires_at, {
      timeoutMs: Math.max(0, (expiring.expires_at - nowSec() + 1) * 1000) + 100,
      intervalMs: 20,
      what: 'the publishable key to expire',
    });
    assertError(await chat(expiring.id, { origin: 'https://expiring.test' }), 401, 'key_expired', { what: 'expired pk' });
    const r = await preflight('https://expiring.test');
    assert.equal(r.headers.get('access-control-allow-origin'), null, 'an expired key\'s origin is not listed (SPEC §2: active keys)');
    assert.equal(r.status, 403);
  });

  // ==== Audit and secrecy (last: every mint has happened) ====

  test('one audit event per mint (token.ephemeral_minted on the parent); no token in audit, log or store', async () => {
    assert.ok(minted.length >= 10, `several tokens were minted (${minted.length})`);
    const all = await listAll(gw, root, '/v1/audit-events');
    const minting = all.filter((e) => e.action === 'token.ephemeral_minted');
    const total = [...mints.values()].reduce((n, a) => n + a.length, 0);
    assert.equal(minting.length, total, 'exactly one event per successful mint, none for refused ones');
    for (const [parentId, actors] of mints) {
      const ev = minting.filter((e) => e.object_id === parentId);
      assert.equal(ev.length, actors.length, `${parentId}: one event per mint`);
      assert.deepEqual(ev.map((e) => e.actor).sort(), [...actors].sort(), `${parentId}: actors`);
      for (const e of ev) {
        assert.equal(e.object_type, 'token');
        assert.equal(e.remote_addr, '127.0.0.1');
        assert.equal(typeof e.changes?.ttl_seconds, 'number', 'the ttl is recorded');
      }
    }
    const auditText = JSON.stringify(all);
    assert.ok(!auditText.includes('kg_eph_'), 'no token in any audit event');
    for (const t of minted) {
      const [, payload, sig] = t.match(EPH_RE);
      assert.ok(!auditText.includes(payload) && !auditText.includes(sig), 'no token part in the audit log');
    }
    await sleep(50); // let the last log lines arrive
    assert.ok(!gw.output.includes('kg_eph_'), 'no token in the gateway log');
    for (const t of minted) assert.ok(!gw.output.includes(t.slice(7, 40)), 'no token part in the gateway log');
    // The store, its WAL and the usage journal's segments (k.db.journal/).
    const files = fs
      .readdirSync(sb.dir, { recursive: true })
      .filter((f) => f.startsWith('k.db') && fs.statSync(path.join(sb.dir, f)).isFile());
    assert.ok(files.includes('k.db'), `store files: ${files}`);
    assert.ok(files.some((f) => f.startsWith('k.db.journal/')), `journal files: ${files}`);
    for (const f of files) {
      const bytes = fs.readFileSync(path.join(sb.dir, f)).toString('latin1');
      assert.ok(!bytes.includes('kg_eph_'), `no token in ${f}`);
      for (const t of minted) assert.ok(!bytes.includes(t.split('.')[1]), `no token signature in ${f}`);
    }
  });
});
