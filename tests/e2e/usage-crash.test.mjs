// SPDX-License-Identifier: Apache-2.0
//
// Never lose a usage record (issue 6, SPEC §8): under load the gateway is killed with SIGKILL —
// no drain, no final flush — and started again on the same store, several times in a row.
// Every request a client saw succeed has exactly one usage record (matched by its
// x-request-id); nothing is counted twice, by the store or by /v1/usage.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import { api, createAccessKey, readRootKey, sandbox, startGateway, stopAll, waitFor } from './lib/harness.mjs';

const MSG = [{ role: 'user', content: 'Say hello.' }];
const ROUNDS = 4;
const CLIENTS = 16;

/** The request ids stored in the usage table, read with the sqlite3 shell (as an operator would). */
function storedIds(db) {
  const out = execFileSync('sqlite3', [db, 'SELECT request_id FROM usage;'], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

describe('usage survives kill -9 (real binary)', () => {
  after(stopAll);

  test('every request a client saw succeed has exactly one usage record, across repeated SIGKILLs', async () => {
    const sb = sandbox('crash');
    let gw = await startGateway(sb, { workers: 2 });
    const root = readRootKey(sb);
    const k = await createAccessKey(gw, root, 'crash');
    const succeeded = new Set();

    for (let round = 0; round < ROUNDS; round++) {
      let stop = false;
      const port = gw.port;
      // Clients call until the gateway dies under them; plain and streamed calls alike.
      const load = Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; !stop && i < 100000; i++) {
          try {
            const r = await api({ url: `http://127.0.0.1:${port}` }, 'POST', '/v1/chat/completions', {
              key: k.key,
              body: { model: 'demo-chat', messages: MSG, stream: (c + i) % 8 === 0 },
              timeoutMs: 3000,
            });
            // A streamed answer counts as seen only once it ended with [DONE].
            if (r.status === 200 && (!r.text.startsWith('data:') || r.text.includes('data: [DONE]')))
              succeeded.add(r.headers.get('x-request-id'));
          } catch {
            // the gateway died mid-call: this request was not seen to succeed
          }
        }
      });
      await new Promise((r) => setTimeout(r, 300 + round * 100));
      gw.proc.kill('SIGKILL');
      await gw.exited;
      stop = true;
      await Promise.all(load);
      assert.equal(gw.exit.signal, 'SIGKILL');
      // Start again: the journal is replayed into the store before the gateway listens.
      gw = await startGateway(sb, { workers: 2 });
      const ids = storedIds(sb.db);
      const stored = new Set(ids);
      assert.equal(stored.size, ids.length, 'a request id is stored once');
      const missing = [...succeeded].filter((id) => !stored.has(id));
      assert.deepEqual(missing, [], `round ${round}: successful requests without a usage record`);
      // Requests that were journaled but cut before the client saw them may be stored too; at
      // most one per client per round.
      assert.ok(ids.length <= succeeded.size + CLIENTS * (round + 1), `${ids.length} stored, ${succeeded.size} seen`);
    }
    assert.ok(succeeded.size > ROUNDS * 30, `the load was real (${succeeded.size} successes)`);
    // The API agrees with the store: every record counted once.
    const rows = storedIds(sb.db).length;
    const u = await waitFor(
      async () => {
        const r = await api(gw, 'GET', `/v1/usage?key=${k.id}`, { key: root });
        return r.status === 200 && r.json.totals.requests === rows ? r.json : null;
      },
      { timeoutMs: 3000, intervalMs: 25, what: 'usage totals equal to the stored rows' }
    );
    assert.equal(u.value.totals.requests, rows);
    await gw.stop();
  });
});
