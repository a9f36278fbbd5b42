// SPDX-License-Identifier: Apache-2.0
//
// GET /metrics (SPEC §6, issue 6) as Prometheus sees it: scraped from the metrics listener and
// parsed by the Prometheus project's own text-format parser — requests by route, status and model, latency
// histograms (total and upstream) that hold together, limiter refusals and the journal
// backlog; the same text on the main listener for the root admin key only; no secret in it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  SECRET_RE_G,
  api,
  assertError,
  createAccessKey,
  readRootKey,
  startWithUpstream,
  stopAll,
  waitFor,
} from './lib/harness.mjs';
import { parsePrometheus, sampleValue } from './lib/prometheus.mjs';
import { startUpstream } from '../upstream/server.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];

describe('/metrics in Prometheus text format (real binary)', () => {
  let up;
  let gw;
  let root;
  let metricsUrl;

  before(async () => {
    up = await startUpstream({ delayMs: 5 });
    let sb;
    ({ sb, gw } = await startWithUpstream('metrics', up, { extraYaml: 'metrics_listen: 127.0.0.1:0\n' }));
    root = readRootKey(sb);
    const port = gw.stderr.match(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/)[1];
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
  });
  after(async () => {
    await stopAll();
    await up?.close();
  });

  test('requests, latencies and refusals are counted and parse as Prometheus text', async () => {
    const k = await createAccessKey(gw, root, 'scraped', { rate_limits: { rpm: 4 } });
    const chat = (body) => api(gw, 'POST', '/v1/chat/completions', { key: k.key, body });
    for (let i = 0; i < 3; i++) assert.equal((await chat({ model: 'gpt-4o-mini', messages: MSG })).status, 200);
    const streamed = await chat({ model: 'gpt-4o-mini', messages: MSG, stream: true });
    assert.equal(streamed.status, 200);
    assert.equal((await chat({ model: 'gpt-4o-mini', messages: MSG })).status, 429); // rpm 4 used up
    assert.equal((await api(gw, 'POST', '/v1/chat/completions', { body: { model: 'gpt-4o-mini', messages: MSG } })).status, 401);
    assert.equal((await api(gw, 'GET', '/v1/models', { key: k.key })).status, 200);

    // Counted when each request's memory is released: wait for the last one to show.
    const { value: text } = await waitFor(
      async () => {
        const r = await fetch(metricsUrl);
        const t = await r.text();
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
        return /route="\/v1\/models",status="200"/.test(t) && t;
      },
      { timeoutMs: 3000, intervalMs: 20, what: 'the models request in /metrics' }
    );
    const f = parsePrometheus(text);

    const requests = f.keygate_requests;
    assert.equal(requests.type, 'counter');
    const chatRoute = '/v1/chat/completions';
    const count = (labels) => sampleValue(requests, 'keygate_requests_total', labels);
    assert.equal(count({ route: chatRoute, status: '200', model: 'gpt-4o-mini' }), 4);
    assert.equal(count({ route: chatRoute, status: '429', model: 'gpt-4o-mini' }), 1);
    assert.equal(count({ route: chatRoute, status: '401', model: '' }), 1);
    assert.equal(count({ route: '/v1/models', status: '200' }), 1);

    // The histograms hold together: cumulative buckets, +Inf equal to the count.
    const total = f.keygate_request_duration_seconds;
    assert.equal(total.type, 'histogram');
    const buckets = total.samples.filter((x) => x.name.endsWith('_bucket') && x.labels.route === chatRoute);
    assert.ok(buckets.length > 2);
    let prev = 0;
    for (const b of buckets) {
      assert.ok(b.value >= prev, `bucket le=${b.labels.le} is cumulative`);
      prev = b.value;
    }
    const chatCount = sampleValue(total, 'keygate_request_duration_seconds_count', { route: chatRoute });
    assert.equal(chatCount, 6);
    assert.equal(buckets.at(-1).labels.le, '+Inf');
    assert.equal(buckets.at(-1).value, chatCount);
    assert.ok(sampleValue(total, 'keygate_request_duration_seconds_sum', { route: chatRoute }) > 0);
    // Only the four calls that reached the provider are in the upstream histogram.
    const upstream = f.keygate_upstream_duration_seconds;
    assert.equal(sampleValue(upstream, 'keygate_upstream_duration_seconds_count', { route: chatRoute }), 4);

    const refusals = f.keygate_limiter_refusals;
    assert.equal(sampleValue(refusals, 'keygate_limiter_refusals_total', { reason: 'rate_limit_exceeded' }), 1);
    assert.equal(sampleValue(refusals, 'keygate_limiter_refusals_total', { reason: 'insufficient_quota' }), 0);
    assert.equal(f.keygate_usage_journal_backlog.type, 'gauge');
    assert.ok(sampleValue(f.keygate_usage_journal_backlog, 'keygate_usage_journal_backlog') >= 0);

    // No label, and nothing else in the text, holds a secret or a key id.
    assert.equal(text.match(SECRET_RE_G), null);
    assert.ok(!text.includes(k.id));
  });

  test('the main listener serves /metrics to the root admin key only', async () => {
    const r = await api(gw, 'GET', '/metrics', { key: root });
    assert.equal(r.status, 200);
    assert.equal(parsePrometheus(r.text).keygate_requests.type, 'counter');
    const k = await createAccessKey(gw, root, 'not-admin');
    assertError(await api(gw, 'GET', '/metrics', { key: k.key }), 403, 'admin_required');
    assertError(await api(gw, 'GET', '/metrics'), 401, 'missing_api_key');
    // The metrics listener serves nothing else.
    const other = await fetch(metricsUrl.replace('/metrics', '/v1/models'));
    assert.equal(other.status, 404);
    await other.text();
  });
});
