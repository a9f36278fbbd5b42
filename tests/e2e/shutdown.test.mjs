// SPDX-License-Identifier: Apache-2.0
//
// Graceful shutdown: SIGTERM (and SIGINT) → stop accepting, finish, flush pending writes, log
// "stopped", exit 0. The last-use time of a key used just before the signal is persisted.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import {
  api,
  cliJson,
  nowSec,
  probeKey,
  sandbox,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

describe('graceful shutdown', () => {
  let sb;
  let used; // admin key used right before SIGTERM
  let unused; // admin key never used

  before(async () => {
    sb = sandbox('shutdown');
    assert.equal((await sb.cli(['init'])).code, 0);
    // Made before the gateway starts, so the gateway knows them from its first request on and
    // the test never has to poll with them (which would set last_used_at early).
    used = cliJson(await sb.cli(['admin-key', 'create', '--name', 'used', '--json']));
    unused = cliJson(await sb.cli(['admin-key', 'create', '--name', 'unused', '--json']));
  });
  after(stopAll);

  test('SIGTERM: exit 0, log "stopped", last_used_at of a key used just before is persisted', async () => {
    const gw = await startGateway(sb);
    const t = nowSec();
    const p = await probeKey(gw, used.key);
    assert.equal(p.status, 200, 'the key works from the first request');

    const exit = await gw.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status; log:\n${gw.output}`);
    assert.match(gw.output, /\bstopped\s*$/m, 'logs "stopped"');
    const lines = gw.output.trim().split('\n');
    assert.match(lines.at(-1), /\bstopped$/, '"stopped" is the last line');

    await assert.rejects(
      fetch(`${gw.url}/healthz`, { signal: AbortSignal.timeout(2000) }),
      'the port no longer accepts connections'
    );

    const shown = cliJson(await sb.cli(['admin-key', 'show', '--id', used.id, '--json']));
    assert.notEqual(shown.last_used_at, null, 'last_used_at was flushed at shutdown');
    assert.ok(shown.last_used_at >= t - 1 && shown.last_used_at <= nowSec(), `last_used_at ${shown.last_used_at} ≈ ${t}`);
    const quiet = cliJson(await sb.cli(['admin-key', 'show', '--id', unused.id, '--json']));
    assert.equal(quiet.last_used_at, null, 'a key never used has no last_used_at');

    const table = await sb.cli(['admin-key', 'list']);
    const row = table.stdout.split('\n').find((l) => l.startsWith(used.id));
    assert.ok(row && !/\bnever\s*$/.test(row), `LAST USED is shown: ${row}`);
  });

  test('SIGINT also stops gracefully; the store is intact for the next start', async () => {
    const gw = await startGateway(sb);
    assert.equal((await probeKey(gw, used.key)).status, 200, 'keys survive a restart');
    assert.equal((await api(gw, 'GET', '/readyz')).status, 200);
    const exit = await gw.stop('SIGINT');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(gw.output, /\bstopped\s*$/m);
  });

  test('SIGTERM with idle connections open still exits promptly', async () => {
    const gw = await startGateway(sb);
    // One keep-alive connection that has finished a request, one that never sent anything.
    const idle = await new Promise((resolve, reject) => {
      const sock = net.connect(gw.port, '127.0.0.1', () =>
        sock.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`)
      );
      sock.once('data', () => resolve(sock));
      sock.on('error', reject);
    });
    const silent = await new Promise((resolve, reject) => {
      const sock = net.connect(gw.port, '127.0.0.1', () => resolve(sock));
      sock.on('error', reject);
    });
    idle.on('error', () => {});
    silent.on('error', () => {});
    const started = performance.now();
    const exit = await gw.stop('SIGTERM', 10000);
    const ms = performance.now() - started;
    idle.destroy();
    silent.destroy();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(ms < 3000, `exited ${Math.round(ms)} ms after SIGTERM`);
    assert.match(gw.output, /\bstopped\s*$/m);
  });
});
