// SPDX-License-Identifier: Apache-2.0
//
// Usage accounting and budgets as an operator meets them (issue 6, SPEC §3, §5, §6): one usage
// record per request with tokens and integer micro-credit cost from the model's prices, read
// back through GET /v1/usage, `keygate usage` and the key listing's usage summary; credit
// budgets per key and per team pool that refuse with 429 insufficient_quota and
// x-should-retry: false (the openai SDK then does not retry), overspend at most one
// reservation under concurrent load, never block a zero-priced model, survive a restart, and
// reset on their UTC period boundary — crossed with an injected clock, not a sleep.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';

import {
  api,
  assertError,
  cliJson,
  createAccessKey,
  ok,
  readRootKey,
  startGateway,
  startWithUpstream,
  stopAll,
  waitFor,
} from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];

// Prices in credits per 1M tokens: 1 and 2 micro-credits per token; 1000 per token for budgets.
const MODELS = [
  { name: 'gpt-4o-mini', provider: 'up', input: 1, output: 2 },
  { name: 'gpt-4o', provider: 'up', input: 1000, output: 1000 },
  { name: 'text-embedding-3-small', provider: 'up', input: 1 },
];

describe('usage records, /v1/usage, budgets (real binary, openai SDK)', () => {
  let up;
  let sb;
  let gw;
  let root;
  let clockFile;

  const setClockOffset = (seconds) => fs.writeFileSync(clockFile, String(seconds));
  const usageOf = async (query) => ok(await api(gw, 'GET', `/v1/usage?${query}`, { key: root }), 200);
  const waitForRequests = (query, n) =>
    waitFor(
      async () => {
        const u = await usageOf(query);
        return u.totals.requests >= n ? u : null;
      },
      { timeoutMs: 5000, intervalMs: 25, what: `${n} usage records for ${query}` }
    ).then((r) => r.value);

  before(async () => {
    up = await startUpstream({ delayMs: 5 });
    clockFile = path.join(fs.mkdtempSync('/tmp/keygate-clock-'), 'offset');
    setClockOffset(0);
    ({ sb, gw } = await startWithUpstream('usage', up, {
      models: MODELS,
      env: { KEYGATE_TEST_CLOCK_FILE: clockFile },
      extraYaml: 'allow_private_upstreams: true\n',
    }));
    root = readRootKey(sb);
  });
  after(async () => {
    await stopAll();
    await up?.close();
    fs.rmSync(path.dirname(clockFile), { recursive: true, force: true });
  });

  test('one record per request: tokens, cost and errors in /v1/usage, the CLI and the key listing', async () => {
    ok(await api(gw, 'POST', '/v1/admin/teams', { key: root, body: { name: 'acct' } }), 201);
    const k = await createAccessKey(gw, root, 'metered', { team_id: 'acct' });
    const client = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 10000 });
    let input = 0;
    let output = 0;

    const plain = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG, max_tokens: 5 });
    input += plain.usage.prompt_tokens;
    output += plain.usage.completion_tokens;

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: MSG,
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamedUsage;
    for await (const chunk of stream) if (chunk.usage) streamedUsage = chunk.usage;
    input += streamedUsage.prompt_tokens;
    output += streamedUsage.completion_tokens;

    // A stream that did not ask for usage (SPEC §4): the gateway asks the provider for it, bills
    // it exactly, and keeps the usage chunk from the caller.
    up.reset();
    const blindBody = JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, max_tokens: 7, stream: true });
    const blind = await api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: blindBody });
    assert.equal(blind.status, 200);
    assert.deepEqual(up.last().json.stream_options, { include_usage: true }, "the provider was asked for usage");
    assert.ok(!/"usage":\{/.test(blind.text), 'the caller gets no usage chunk');
    assert.ok(blind.text.trimEnd().endsWith('data: [DONE]'), blind.text.slice(-200));
    // What the provider reported for it: the same call, asking for usage itself.
    const seen = await api(gw, 'POST', '/v1/chat/completions', {
      key: k.key,
      body: { model: 'gpt-4o-mini', messages: MSG, max_tokens: 7, stream: true, stream_options: { include_usage: true } },
    });
    const seenUsage = seen.text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)))
      .find((e) => e.usage).usage;
    input += 2 * seenUsage.prompt_tokens;
    output += 2 * seenUsage.completion_tokens;

    const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello world' });
    input += emb.usage.prompt_tokens;

    // An upstream failure is a request with an error and no tokens.
    const failed = await api(gw, 'POST', '/v1/chat/completions', {
      key: k.key,
      body: { model: 'gpt-4o-mini', messages: MSG, x_test_fault: 'status:500' },
    });
    assert.equal(failed.status, 500);

    const u = await waitForRequests(`key=${k.id}&bucket=minute`, 6);
    assert.equal(u.totals.requests, 6);
    assert.equal(u.totals.errors, 1);
    assert.equal(u.totals.input_tokens, input);
    assert.equal(u.totals.output_tokens, output);
    // Cost from the models' prices: 1 micro-credit per input token, 2 per output token.
    assert.equal(u.totals.cost_micro, input + 2 * output);
    assert.equal(u.totals.cost, u.totals.cost_micro / 1e6);
    // Buckets are whole UTC minutes and add up to the totals.
    assert.ok(u.data.length >= 1);
    for (const b of u.data) {
      assert.equal(b.start_time % 60, 0);
      assert.equal(b.end_time - b.start_time, 60);
    }
    assert.equal(
      u.data.reduce((s, b) => s + b.requests, 0),
      6
    );
    // Per team: the team's keys summed; another team or a foreign key is not found.
    assert.equal((await usageOf('team=acct')).totals.requests, 6);
    assertError(await api(gw, 'GET', '/v1/usage?team=nope', { key: root }), 404, 'not_found');
    assertError(await api(gw, 'GET', '/v1/usage?key=pk_000000000000000000000000', { key: root }), 404, 'not_found');
    assertError(await api(gw, 'GET', '/v1/usage?bucket=week', { key: root }), 400, 'invalid_value', { param: 'bucket' });

    // The key listing's usage summary and last use.
    const listed = ok(await api(gw, 'GET', `/v1/tokens/${k.id}`, { key: root }), 200);
    assert.equal(listed.usage.requests, 6);
    assert.equal(listed.usage.input_tokens, input);
    assert.equal(listed.usage.output_tokens, output);
    assert.equal(listed.usage.cost, u.totals.cost);
    await waitFor(
      async () => ok(await api(gw, 'GET', `/v1/tokens/${k.id}`, { key: root }), 200).last_used_at !== null,
      { timeoutMs: 3000, intervalMs: 50, what: 'last_used_at' }
    );

    // keygate usage: JSON and the table, on the local store the gateway writes.
    const cliU = cliJson(await sb.cli(['usage', '--key', k.id, '--bucket', 'day', '--json']), 'keygate usage');
    assert.equal(cliU.totals.requests, 6);
    assert.equal(cliU.totals.cost_micro, u.totals.cost_micro);
    const table = await sb.cli(['usage', '--key', k.id]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^BUCKET\s+REQUESTS/m);
    assert.match(table.stdout, new RegExp(`^TOTAL\\s+6\\s+1\\s+${input}\\s+${output}\\s`, 'm'));
  });

  test('a plain answer that quotes a stream end ("data: [DONE]") is billed from its usage, not cut short', async () => {
    // The answer reaches the gateway in two pieces, and its text holds the SSE end marker in
    // the first: only a stream's [DONE] ends metering before the last byte.
    const k = await createAccessKey(gw, root, 'quotes-done');
    const client = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 10000 });
    const text = `data: [DONE] ${'lorem ipsum dolor sit amet '.repeat(200)}`;
    const r = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: text }],
      x_test_fault: 'split-events',
    });
    assert.ok(r.choices[0].message.content.startsWith('echo: data: [DONE] lorem'));
    const u = await waitForRequests(`key=${k.id}`, 1);
    assert.equal(u.totals.input_tokens, r.usage.prompt_tokens);
    assert.equal(u.totals.output_tokens, r.usage.completion_tokens);
  });

  test('streams: usage asked of the provider and kept from the caller, unless the provider says no', async () => {
    const k = await createAccessKey(gw, root, 'streams');
    const client = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 10000 });
    up.reset();
    const chunks = [];
    for await (const c of await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG, stream: true }))
      chunks.push(c);
    assert.ok(chunks.length > 2);
    assert.ok(chunks.every((c) => !c.usage && c.choices.length === 1), 'no usage chunk reaches the SDK');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.deepEqual(up.last().json.stream_options, { include_usage: true });

    // Events cut anywhere, with CRLF line ends: relayed whole and in order, the usage one kept back.
    const split = await api(gw, 'POST', '/v1/chat/completions', {
      key: k.key,
      body: { model: 'gpt-4o-mini', messages: MSG, stream: true, x_test_fault: 'split-events' },
    });
    assert.equal(split.status, 200);
    const events = split.text.split('\r\n\r\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]');
    assert.ok(!/"usage":\{/.test(split.text), 'no usage event');
    const text = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '')
      .join('');
    assert.equal(text, chunks.map((c) => c.choices[0].delta.content ?? '').join(''), 'the same answer, every event');

    // A provider that refuses stream_options (stream_usage: false) gets the body as sent; the
    // stream is then billed its reservation and marked estimated.
    ok(
      await api(gw, 'POST', '/v1/admin/providers', {
        key: root,
        body: { name: 'plain', base_url: up.baseURL, credential: 'up', stream_usage: false },
      }),
      201
    );
    ok(
      await api(gw, 'POST', '/v1/admin/models', {
        key: root,
        body: { name: 'plain-mini', provider: 'plain', upstream_model: 'gpt-4o-mini', input: 1, output: 2 },
      }),
      201
    );
    const body = JSON.stringify({ model: 'plain-mini', messages: MSG, max_tokens: 9, stream: true });
    const r = await api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: body });
    assert.equal(r.status, 200, r.text);
    assert.equal(up.last().json.stream_options, undefined, 'the body went as sent');
    const u = await waitForRequests(`key=${k.id}`, 3);
    const reserved = Math.floor(Buffer.byteLength(body) / 4) + 1;
    const exact = u.totals.input_tokens - reserved; // the two earlier streams' exact prompt tokens
    assert.ok(exact > 0 && exact < 2 * reserved, `input ${u.totals.input_tokens}`);
    assert.ok(u.totals.output_tokens >= 9, 'the estimated call billed its max_tokens');
  });

  test('a key budget refuses with insufficient_quota, overspends at most one reservation, resets daily', async () => {
    // 1 credit at 1000 credits per 1M tokens: 1000 tokens. Each call reserves ~40 tokens.
    const k = await createAccessKey(gw, root, 'budgeted', { budget: { limit_credits: 1, period: 'day' } });
    const body = JSON.stringify({ model: 'gpt-4o', messages: MSG, max_tokens: 20 });
    const reservationMicro = (Math.floor(Buffer.byteLength(body) / 4) + 1 + 20) * 1000;
    const statuses = [];
    let refusal;
    for (let wave = 0; wave < 20 && !refusal; wave++) {
      const replies = await Promise.all(
        Array.from({ length: 16 }, () => api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: body }))
      );
      for (const r of replies) {
        statuses.push(r.status);
        if (r.status === 429) refusal = r;
        else assert.equal(r.status, 200, r.text);
      }
    }
    assert.ok(refusal, 'the budget ran out');
    // Under load, reservations in flight refuse early; one at a time, calls pass until the spend
    // itself leaves no room for one more reservation.
    for (let i = 0; i < 400; i++) {
      const r = await api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: body });
      statuses.push(r.status);
      if (r.status === 429) break;
      assert.equal(r.status, 200, r.text);
    }
    assertError(refusal, 429, 'insufficient_quota');
    assert.equal(refusal.json.error.type, 'insufficient_quota');
    assert.equal(refusal.headers.get('x-should-retry'), 'false');
    const admitted = statuses.filter((s) => s === 200).length;
    const u = await waitForRequests(`key=${k.id}`, admitted);
    assert.equal(u.totals.requests, admitted);
    assert.ok(u.totals.cost_micro <= 1_000_000 + reservationMicro, `spent ${u.totals.cost_micro}`);
    assert.ok(u.totals.cost_micro >= 1_000_000 - reservationMicro, `spent ${u.totals.cost_micro}: budget not used up`);

    // The SDK does not retry a budget refusal.
    up.reset();
    const client = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 3, timeout: 10000 });
    const t0 = performance.now();
    await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: MSG, max_tokens: 20 }), (e) => {
      assert.equal(e.status, 429);
      assert.equal(e.code, 'insufficient_quota');
      return true;
    });
    assert.ok(performance.now() - t0 < 400, 'refused at once, no retry back-off');
    assert.equal(up.received.length, 0);

    // A zero-priced model is never blocked.
    const free = await api(gw, 'POST', '/v1/chat/completions', {
      key: k.key,
      body: { model: 'demo-chat', messages: MSG },
    });
    assert.equal(free.status, 200, free.text);

    // The spend survives a restart (seeded from the stored usage) ...
    await gw.stop();
    gw = await startGateway(sb, { env: { TEST_UPSTREAM_KEY: up.apiKey, KEYGATE_TEST_CLOCK_FILE: clockFile } });
    assertError(await api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: body }), 429, 'insufficient_quota');
    // ... and ends with the UTC day: one day later the key may spend again.
    setClockOffset(86400);
    try {
      const next = await api(gw, 'POST', '/v1/chat/completions', { key: k.key, raw: body });
      assert.equal(next.status, 200, next.text);
    } finally {
      setClockOffset(0);
    }
  });

  test("a team's credit pool is shared by its keys", async () => {
    ok(
      await api(gw, 'POST', '/v1/admin/teams', {
        key: root,
        body: { name: 'pool', budget: { limit_credits: 0.2, period: 'month' } },
      }),
      201
    );
    const a = await createAccessKey(gw, root, 'pool-a', { team_id: 'pool' });
    const b = await createAccessKey(gw, root, 'pool-b', { team_id: 'pool' });
    const body = JSON.stringify({ model: 'gpt-4o', messages: MSG, max_tokens: 20 });
    let refusedA;
    for (let i = 0; i < 100 && !refusedA; i++) {
      const r = await api(gw, 'POST', '/v1/chat/completions', { key: a.key, raw: body });
      if (r.status === 429) refusedA = r;
    }
    assert.ok(refusedA, "key A spent the team's pool");
    assertError(refusedA, 429, 'insufficient_quota');
    assert.match(refusedA.json.error.message, /team/);
    // Key B has no budget of its own, but the pool is empty for it too.
    assertError(await api(gw, 'POST', '/v1/chat/completions', { key: b.key, raw: body }), 429, 'insufficient_quota');
  });
});
