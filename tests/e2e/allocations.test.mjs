// SPDX-License-Identifier: Apache-2.0
//
// keygate's own code makes no heap allocation on the request path in steady state (issue 7).
// The gateway runs with tests/alloc/alloc_count.c preloaded, which counts every allocation made
// on the event-loop threads by the first module on the stack that is not libc; after a warm-up,
// a few thousand inference calls (demo and proxied, plain and streamed, with limits, a team
// budget and usage records) must add none attributed to keygate. libh2o's and yajl's own
// allocations are printed beside it, not counted against it. Skipped in sanitizer builds (they
// replace malloc themselves) and where the preload library was not built.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { api, createAccessKey, readRootKey, startWithUpstream, stopAll, waitFor } from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

const PRELOAD = process.env.KEYGATE_ALLOC_PRELOAD;
const MSG = [{ role: 'user', content: 'Say hello to the allocation counter.' }];

describe('allocations on the request path', { skip: !PRELOAD && 'no preload library in this build' }, () => {
  let up;
  let gw;
  let dir;
  let key;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-alloc-'));
    up = await startUpstream({ delayMs: 0 });
    let sb;
    ({ sb, gw } = await startWithUpstream('alloc', up, {
      models: [{ name: 'gpt-4o-mini', provider: 'up', input: 0.15, output: 0.6 }],
      env: { LD_PRELOAD: PRELOAD, KG_ALLOC_DIR: dir },
      workers: 1, // every loop warmed up: the kernel spreads connections over several as it likes
    }));
    const root = readRootKey(sb);
    const team = await api(gw, 'POST', '/v1/admin/teams', {
      key: root,
      body: { name: 'alloc', rate_limits: { rpm: 1000000, tpm: 1000000000 }, budget: { limit_credits: 1000000 } },
    });
    assert.equal(team.status, 201, team.text);
    key = (await createAccessKey(gw, root, 'alloc', { team_id: 'alloc', rate_limits: { rpm: 1000000, tpm: 100000000 } })).key;
  });
  after(async () => {
    await stopAll();
    await up?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Asks the preload library to act through its control files; resolves when it has. */
  async function control(what) {
    fs.writeFileSync(path.join(dir, what), '');
    await waitFor(() => !fs.existsSync(path.join(dir, what)), { timeoutMs: 3000, intervalMs: 10, what: `alloc ${what}` });
  }

  async function load(n, parallel = 16) {
    // (the demo provider paces its streams at 25 ms a word: it streams in the warm-up only)
    const bodies = [
      { model: 'demo-chat', messages: MSG },
      { model: 'gpt-4o-mini', messages: MSG, max_tokens: 8 },
      { model: 'gpt-4o-mini', messages: MSG, max_tokens: 8, stream: true },
      { model: 'gpt-4o-mini', messages: MSG, max_tokens: 8, stream: true, stream_options: { include_usage: true } },
    ];
    for (let i = 0; i < n; i += parallel) {
      const batch = Array.from({ length: parallel }, (_, j) =>
        api(gw, 'POST', '/v1/chat/completions', { key, body: bodies[(i + j) % bodies.length] })
      );
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.text);
    }
  }

  test('keygate itself allocates nothing per request once warm', async () => {
    // Warm-up: pools, upstream connections, the journal's first segment, the metrics series, and
    // more client connections at once than the measurement opens (each has a watch, reused).
    await load(400, 48);
    const demoStream = { model: 'demo-chat', messages: MSG, stream: true };
    await Promise.all(Array.from({ length: 16 }, () => api(gw, 'POST', '/v1/chat/completions', { key, body: demoStream })));
    await control('reset');
    const n = 1600;
    await load(n);
    await control('dump');
    const lines = fs.readFileSync(path.join(dir, 'counts'), 'utf8').trim().split('\n');
    const sites = lines.filter((l) => l.startsWith('site ')).map((l) => l.slice(5));
    const counts = Object.fromEntries(
      lines
        .filter((l) => !l.startsWith('site '))
        .map((l) => l.split(' '))
        .map(([m, c]) => [m, Number(c)])
    );
    const perRequest = Object.entries(counts)
      .filter(([m]) => m !== 'total')
      .map(([m, c]) => `${m} ${(c / n).toFixed(2)}`)
      .join(', ');
    console.log(`# allocations per request on the event loops: ${perRequest || 'none'}`);
    assert.ok(counts.total > 0, 'the counter saw the event loops allocate (libh2o does)');
    assert.equal(
      counts.keygate ?? 0,
      0,
      `keygate's own allocations during ${n} requests (${perRequest}); call sites (offsets in the binary, ` +
        `for addr2line -f -e ${process.env.KEYGATE_BIN ?? 'build/keygate'}): ${sites.join(', ')}`
    );
  });
});
