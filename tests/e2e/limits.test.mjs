// SPDX-License-Identifier: Apache-2.0
//
// Rate limits as a client meets them (issue 6, SPEC §5): the x-ratelimit-* headers on every
// inference response with the limiter's true values, 429 rate_limit_exceeded with Retry-After
// and retry-after-ms that the openai SDK's own retry honours, GCRA accuracy under concurrent
// load, team tiers whose counters all the team's keys share, max_concurrency and rpd, and token
// reservations reconciled from the answer's usage (plain and streamed).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { api, assertError, createAccessKey, ok, readRootKey, startWithUpstream, stopAll } from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];

/** A chat body whose byte length we know, so the reservation can be computed exactly. */
function chatBody(extra = {}) {
  const raw = JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, ...extra });
  return { raw, reserved: Math.floor(Buffer.byteLength(raw) / 4) + 1 + (extra.max_tokens ?? 1024) };
}

const num = (res, name) => Number(res.headers.get(name));

/** Asserts a 200 and returns the whole reply (headers included; a stream's body is text). */
function passed(res, what = '') {
  assert.equal(res.status, 200, `${what} expected 200, got ${res.status}: ${res.text}`);
  return res;
}

describe('rate limits, teams and token reservations (openai SDK, real binary)', () => {
  let up;
  let gw;
  let root;

  before(async () => {
    up = await startUpstream({ delayMs: 5 });
    let sb;
    ({ sb, gw } = await startWithUpstream('limits', up));
    root = readRootKey(sb);
  });
  after(async () => {
    await stopAll();
    await up?.close();
  });

  const chat = (key, body) =>
    api(gw, 'POST', '/v1/chat/completions', { key, raw: body.raw, headers: { 'content-type': 'application/json' } });

  test('every inference response carries the x-ratelimit-* headers with the limiter state', async () => {
    const k = await createAccessKey(gw, root, 'hdr', { rate_limits: { rpm: 10, tpm: 100000 } });
    const b = chatBody({ max_tokens: 50 });
    const t0 = performance.now();
    const r1 = passed(await chat(k.key, b));
    assert.equal(r1.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(r1.headers.get('x-ratelimit-remaining-requests'), '9');
    assert.equal(r1.headers.get('x-ratelimit-limit-tokens'), '100000');
    // The reservation is held while the request runs: what the headers report, as of the answer
    // (the bucket refills meanwhile: 100,000 a minute is 1.7 tokens a millisecond).
    const remaining1 = num(r1, 'x-ratelimit-remaining-tokens');
    const refill1 = Math.ceil(((performance.now() - t0) / 60000) * 100000);
    assert.ok(remaining1 >= 100000 - b.reserved, `remaining ${remaining1}`);
    assert.ok(remaining1 <= 100000 - b.reserved + refill1, `remaining ${remaining1}, ${refill1} refilled`);
    assert.match(r1.headers.get('x-ratelimit-reset-requests'), /^\d+(\.\d+)?(ms|s)$/);
    assert.match(r1.headers.get('x-ratelimit-reset-tokens'), /^\d+(\.\d+)?(ms|s)$/);
    assert.match(r1.headers.get('x-request-id') ?? '', /./);
    // The first call was reconciled to its usage; the second's reservation is held now.
    const used1 = r1.json.usage.total_tokens;
    const r2 = passed(await chat(k.key, b));
    const refill = Math.ceil(((performance.now() - t0) / 60000) * 100000) + 1; // tokens back since t0
    assert.equal(r2.headers.get('x-ratelimit-remaining-requests'), '8');
    const remaining = num(r2, 'x-ratelimit-remaining-tokens');
    assert.ok(remaining <= 100000 - used1 - b.reserved + refill, `remaining ${remaining}`);
    assert.ok(remaining >= 100000 - used1 - b.reserved - 1, `remaining ${remaining} after reconciliation`);
    // Refusals before admission carry them too (SPEC §5: every authenticated inference answer).
    const unknown = await api(gw, 'POST', '/v1/chat/completions', { key: k.key, body: { model: 'nope', messages: MSG } });
    assertError(unknown, 404, 'model_not_found', { param: 'model' });
    assert.equal(unknown.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(unknown.headers.get('x-ratelimit-remaining-requests'), '8', 'a refused call takes nothing');
    // A key without limits reports them as unlimited rather than omitting them.
    const free = await createAccessKey(gw, root, 'nolimits');
    const r3 = passed(await chat(free.key, b));
    assert.equal(r3.headers.get('x-ratelimit-limit-requests'), '2147483647');
    assert.equal(r3.headers.get('x-ratelimit-remaining-tokens'), '2147483647');
  });

  test('a refused call is 429 with Retry-After and retry-after-ms, and the SDK retry succeeds', async () => {
    // 60 rpm: a burst of 60, then one call per second.
    const k = await createAccessKey(gw, root, 'retry', { rate_limits: { rpm: 60 } });
    const b = chatBody({ max_tokens: 5 });
    const burst = await Promise.all(Array.from({ length: 60 }, () => chat(k.key, b)));
    assert.equal(burst.filter((r) => r.status === 200).length >= 59, true, 'the burst allowance passes');
    const refused = await chat(k.key, b);
    assertError(refused, 429, 'rate_limit_exceeded');
    assert.equal(refused.json.error.type, 'rate_limit_exceeded');
    const ms = num(refused, 'retry-after-ms');
    assert.ok(ms > 0 && ms <= 1000, `retry-after-ms ${ms}`);
    assert.equal(num(refused, 'retry-after'), Math.ceil(ms / 1000));
    assert.equal(refused.headers.get('x-ratelimit-limit-requests'), '60');
    assert.equal(refused.headers.get('x-ratelimit-remaining-requests'), '0');

    const client = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 3, timeout: 10000 });
    up.reset();
    const t0 = performance.now();
    const done = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG, max_tokens: 5 });
    assert.equal(done.object, 'chat.completion');
    const waited = performance.now() - t0;
    assert.ok(waited >= 100, `the SDK waited before retrying (${waited} ms)`);
    // The successful attempt reached the upstream as a retry (the SDK numbers its attempts).
    assert.equal(up.received.length, 1);
    assert.ok(Number(up.last().headers['x-stainless-retry-count']) >= 1, 'the SDK retried');
  });

  test('admitted calls never exceed the limit and reach it under concurrent load', async () => {
    const k = await createAccessKey(gw, root, 'accuracy', { rate_limits: { rpm: 120 } });
    const b = chatBody({ max_tokens: 1 });
    let admitted = 0;
    let refused = 0;
    const t0 = performance.now();
    const until = t0 + 2000;
    await Promise.all(
      Array.from({ length: 24 }, async () => {
        while (performance.now() < until) {
          const r = await chat(k.key, b);
          if (r.status === 200) admitted++;
          else if (r.status === 429) refused++;
          else assert.fail(`unexpected ${r.status}: ${r.text}`);
        }
      })
    );
    const seconds = (performance.now() - t0) / 1000;
    const ceiling = 120 + Math.ceil(seconds * 2) + 1; // the burst, then 2 per second
    assert.ok(refused > 0, 'the load was enough to be refused');
    assert.ok(admitted <= ceiling, `admitted ${admitted} > ${ceiling}`);
    assert.ok(admitted >= 120 * 0.97, `admitted ${admitted}: the limit was not reached`);
  });

  test("a team's counters are shared by its keys, and its tier sets limits and models", async () => {
    ok(
      await api(gw, 'POST', '/v1/admin/teams', {
        key: root,
        body: { name: 'shared', tier: 'custom', rate_limits: { rpm: 50 } },
      }),
      201
    );
    const a = await createAccessKey(gw, root, 'team-a', { team_id: 'shared', rate_limits: { rpm: 1000 } });
    const c = await createAccessKey(gw, root, 'team-b', { team_id: 'shared', rate_limits: { rpm: 1000 } });
    const b = chatBody({ max_tokens: 1 });
    const results = await Promise.all(Array.from({ length: 80 }, (_, i) => chat(i % 2 ? a.key : c.key, b)));
    const admitted = results.filter((r) => r.status === 200).length;
    assert.ok(admitted >= 50 && admitted <= 52, `the team admitted ${admitted} across both keys`);
    // The key's effective limit is the stricter: the team's 50.
    const refused = results.find((r) => r.status === 429);
    assert.equal(refused.headers.get('x-ratelimit-limit-requests'), '50');
    assertError(refused, 429, 'rate_limit_exceeded');
    assert.match(refused.json.error.message, /team/);

    // Preset tiers: free is 60 requests / 40K tokens per minute; a tier may restrict models.
    const preset = await api(gw, 'POST', '/v1/admin/teams', {
      key: root,
      body: { name: 'starter', tier: 'free', models: ['demo-*'] },
    });
    ok(preset, 201);
    assertError(
      await api(gw, 'POST', '/v1/admin/teams', { key: root, body: { name: 'bad', tier: 'pro', rate_limits: { rpm: 5 } } }),
      400,
      'invalid_value',
      { param: 'rate_limits' }
    );
    const s = await createAccessKey(gw, root, 'starter-key', { team_id: 'starter' });
    const demo = passed(
      await api(gw, 'POST', '/v1/chat/completions', { key: s.key, body: { model: 'demo-chat', messages: MSG } })
    );
    assert.equal(demo.headers.get('x-ratelimit-limit-requests'), '60');
    assert.equal(demo.headers.get('x-ratelimit-limit-tokens'), '40000');
    assertError(await chat(s.key, b), 403, 'model_not_allowed', { param: 'model' });
    // The list shows what the team may reach, and nothing else.
    const listed = ok(await api(gw, 'GET', '/v1/models', { key: s.key })).data.map((m) => m.id);
    assert.ok(listed.includes('demo-chat') && !listed.includes('gpt-4o-mini'), `listed ${listed}`);
    assertError(await api(gw, 'GET', '/v1/models/gpt-4o-mini', { key: s.key }), 403, 'model_not_allowed');
  });

  test('max_concurrency and rpd refuse with 429', async () => {
    const k = await createAccessKey(gw, root, 'conc', { rate_limits: { max_concurrency: 2 } });
    // Three slow streams at once: the third is refused while two are running.
    const slow = chatBody({ max_tokens: 5, stream: true, x_test_delay_ms: 150 });
    const opened = await Promise.all([0, 1, 2].map(() => chat(k.key, slow)));
    assert.deepEqual(opened.map((r) => r.status).sort(), [200, 200, 429]);
    assertError(opened.find((r) => r.status === 429), 429, 'rate_limit_exceeded');
    // Once they finished, calls pass again.
    passed(await chat(k.key, chatBody({ max_tokens: 5 })));

    const d = await createAccessKey(gw, root, 'daily', { rate_limits: { rpd: 3 } });
    for (let i = 0; i < 3; i++) passed(await chat(d.key, chatBody({ max_tokens: 5 })));
    const r = await chat(d.key, chatBody({ max_tokens: 5 }));
    assertError(r, 429, 'rate_limit_exceeded');
    assert.ok(num(r, 'retry-after') > 60, `a daily limit waits long (${r.headers.get('retry-after')} s)`);
    assert.equal(r.headers.get('x-ratelimit-limit-requests'), '3', 'with no rpm, the daily limit is reported');
  });

  test('a request larger than the token limit is refused without a retry hint', async () => {
    const k = await createAccessKey(gw, root, 'small', { rate_limits: { tpm: 500 } });
    const r = await chat(k.key, chatBody({ max_tokens: 1000 }));
    assertError(r, 429, 'rate_limit_exceeded');
    assert.equal(r.headers.get('x-should-retry'), 'false');
    assert.match(r.json.error.message, /too large/i);
  });

  test('token reservations are reconciled from usage, streamed or not, else billed as estimated', async () => {
    const k = await createAccessKey(gw, root, 'recon', { rate_limits: { tpm: 60000 } }); // 1 token per ms back
    const probe = chatBody({ max_tokens: 1 });
    const remainingAfter = async (body, read) => {
      const t0 = performance.now();
      const r = passed(await chat(k.key, body));
      read?.(r);
      // The next admission reports what is left after this call was reconciled.
      const p = passed(await chat(k.key, probe));
      // The cell refills 1 token per ms meanwhile (a slow stream on a busy machine: tens of ms).
      const refilled = Math.ceil(performance.now() - t0) + 1;
      return { r, left: num(p, 'x-ratelimit-remaining-tokens') + probe.reserved, refilled };
    };
    // What is left is what the call cost, taken from a full cell, plus what flowed back since.
    const billed = (res, cost) => res.left >= 60000 - cost - 2 && res.left <= 60000 - cost + res.refilled;
    // Let the cell fill up again between measurements (60000 tpm: a full minute's worth in 60 s
    // at most; the probes here use a few thousand, refilled in a few seconds).
    const settle = () => new Promise((res) => setTimeout(res, 2500));

    // Plain: reconciled to usage.total_tokens, far below the 3000 reserved for max_tokens.
    await settle();
    const plain = await remainingAfter(chatBody({ max_tokens: 3000 }));
    const plainUsed = plain.r.json.usage.total_tokens;
    assert.ok(plainUsed < 200);
    assert.ok(billed(plain, plainUsed), `plain: left ${plain.left}, used ${plainUsed}, refilled ≤ ${plain.refilled}`);

    // Streamed with include_usage: reconciled from the final usage chunk.
    await settle();
    const streamed = await remainingAfter(chatBody({ max_tokens: 3000, stream: true, stream_options: { include_usage: true } }));
    const usageEvent = streamed.r.text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)))
      .find((e) => e.usage);
    const streamedUsed = usageEvent.usage.total_tokens;
    assert.ok(billed(streamed, streamedUsed), `streamed: left ${streamed.left}, refilled ≤ ${streamed.refilled}`);

    // A stream cut before its usage came: the whole reservation is billed (estimated).
    await settle();
    const blind = chatBody({ stream: true, x_test_fault: 'close-mid-stream' }); // no max_tokens: 1024 reserved
    const est = await remainingAfter(blind);
    assert.ok(
      billed(est, blind.reserved),
      `estimated: left ${est.left}, reserved ${blind.reserved}, refilled ≤ ${est.refilled}`,
    );
  });
});
