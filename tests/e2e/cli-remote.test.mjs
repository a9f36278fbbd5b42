// SPDX-License-Identifier: Apache-2.0
//
// The CLI against a running gateway (--url / KEYGATE_URL + KEYGATE_ADMIN_KEY), and the
// gateway's change feed: a change the local CLI writes into the SQLite file is live in the
// gateway within 100 ms (SPEC §7, §8).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ID_RE,
  SECRET_RE_G,
  assertSecret,
  assertStopsAt,
  cli,
  cliJson,
  probeKey,
  redact,
  remoteCli,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
  waitFor,
} from './lib/harness.mjs';

// SPEC §7: "A running gateway notices changes made to its store by the CLI within 100 ms."
// Measured from the moment the CLI process has exited (its transaction committed before that),
// polling the gateway every 5 ms. On this machine the feed answers in ~10-30 ms, so the spec's
// own bound is asserted, not a relaxed one.
const FEED_BOUND_MS = 100;

describe('keygate CLI against a running gateway', () => {
  let sb;
  let gw;
  let root; // secret
  let rootId;

  before(async () => {
    sb = sandbox('cli-remote');
    const init = await sb.cli(['init']);
    assert.equal(init.code, 0, init.stderr);
    root = init.stdout.match(/^root admin key: (\S+)$/m)[1];
    gw = await startGateway(sb);
    rootId = cliJson(await sb.cli(['admin-key', 'list', '--json'])).data[0].id;
  });
  after(stopAll);

  const rcli = (args, opts) => remoteCli(gw, root, args, opts);

  test('access-key create / list / show / update / rotate / disable / enable / delete over --url', async () => {
    let r = await rcli(['access-key', 'create', '--name', 'remote-app', '--preset', 'chat-embeddings', '--rpm', '30']);
    assert.equal(r.code, 0, r.stderr);
    const head = r.stdout.match(/^Created access key (pk_[0-9A-Za-z]{24}) \(remote-app\) in production$/m);
    assert.ok(head, redact(r.stdout));
    const id = head[1];
    const secret = r.stdout.match(/^secret: (\S+)$/m)[1];
    assertSecret(secret, 'live');

    r = await rcli(['access-key', 'list']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0], /^ID\s+NAME\s+TYPE\s+PREFIX\s+STATUS\s+CREATED\s+LAST USED\s*$/);
    assert.match(r.stdout, new RegExp(`^${id}\\s+remote-app\\s+access\\s+${secret.slice(0, 12)}\\s+active\\s`, 'm'));

    let t = cliJson(await rcli(['access-key', 'show', '--id', id, '--json']));
    assert.equal(t.created_by, rootId, 'made through the API: the actor is the admin key, not cli:local');
    assert.deepEqual(t.rate_limits, { rpm: 30 });

    assert.equal((await rcli(['access-key', 'update', '--id', id, '--name', 'remote-app-2', '--rpm', '45'])).code, 0);
    t = cliJson(await rcli(['access-key', 'show', '--id', id, '--json']));
    assert.equal(t.name, 'remote-app-2');
    assert.equal(t.rate_limits.rpm, 45);

    const rot = cliJson(await rcli(['access-key', 'rotate', '--id', id, '--grace', '10m', '--json']));
    assertSecret(rot.key, 'live');
    assert.notEqual(rot.key, secret);
    assert.equal(typeof rot.grace_until, 'number');

    r = await rcli(['access-key', 'disable', '--id', id]);
    assert.match(r.stdout, new RegExp(`^${id} disabled$`, 'm'));
    assert.equal(cliJson(await rcli(['access-key', 'show', '--id', id, '--json'])).status, 'disabled');
    r = await rcli(['access-key', 'enable', '--id', id]);
    assert.match(r.stdout, new RegExp(`^${id} enabled$`, 'm'));
    assert.equal(cliJson(await rcli(['access-key', 'show', '--id', id, '--json'])).status, 'active');
    r = await rcli(['access-key', 'delete', '--id', id]);
    assert.match(r.stdout, new RegExp(`^${id} revoked$`, 'm'));
    t = cliJson(await rcli(['access-key', 'show', '--id', id, '--json']));
    assert.equal(t.status, 'revoked');
    assert.equal(t.revoked_by, rootId);
    const revoked = cliJson(await rcli(['access-key', 'list', '--status', 'revoked', '--json']));
    assert.ok(revoked.data.some((x) => x.id === id));

    // The local CLI sees what the remote one did (same store).
    assert.equal(cliJson(await sb.cli(['access-key', 'show', '--id', id, '--json'])).status, 'revoked');
  });

  test('KEYGATE_URL works like --url', async () => {
    const r = await cli(['gateway-key', 'create', '--name', 'edge-env', '--json'], {
      env: { KEYGATE_URL: gw.url, KEYGATE_ADMIN_KEY: root },
    });
    const j = cliJson(r);
    assertSecret(j.key, 'gk');
    assert.equal(j.token_type, 'gateway');
    const list = cliJson(await rcli(['gateway-key', 'list', '--json']));
    assert.ok(list.data.some((x) => x.id === j.id));
  });

  test('admin-key create over --url gives a working kg_admin_ key; rotate kills the old secret', async () => {
    const r = await rcli(['admin-key', 'create', '--name', 'remote-ops']);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.match(/^Created admin key (pk_[0-9A-Za-z]{24}) \(remote-ops\)$/m)?.[1];
    assert.match(id ?? '', ID_RE, redact(r.stdout));
    const secret = r.stdout.match(/^secret: (\S+)$/m)[1];
    assertSecret(secret, 'admin');
    await settleKey(gw, secret, 200);

    // The new key drives the CLI itself.
    const mine = cliJson(await remoteCli(gw, secret, ['admin-key', 'show', '--id', id, '--json']));
    assert.equal(mine.name, 'remote-ops');

    const rot = cliJson(await rcli(['admin-key', 'rotate', '--id', id, '--json']));
    assertSecret(rot.key, 'admin');
    assert.equal(rot.grace_until, null);
    await settleKey(gw, secret, 401, 'invalid_api_key');
    await settleKey(gw, rot.key, 200);
  });

  test('refusals: no KEYGATE_ADMIN_KEY is a usage error; a wrong key exits 1 with the API error', async () => {
    const noKey = await cli(['access-key', 'list', '--url', gw.url]);
    assert.equal(noKey.code, 2, noKey.stderr);
    assert.match(noKey.stderr, /KEYGATE_ADMIN_KEY/);

    const wrong = await remoteCli(gw, 'kg_admin_nope', ['access-key', 'list']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr.trim(), /^keygate: .+ \(401 invalid_api_key\)$/m);

    const missing = await rcli(['access-key', 'show', '--id', 'pk_000000000000000000000000']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr.trim(), /^keygate: .+ \(404 not_found\)$/m);

    // An access key is not an admin key.
    const acc = cliJson(await rcli(['access-key', 'create', '--name', 'not-admin', '--json']));
    await settleKey(gw, acc.key, 403, 'admin_required');
    const asAccess = await remoteCli(gw, acc.key, ['access-key', 'list']);
    assert.equal(asAccess.code, 1);
    assert.match(asAccess.stderr.trim(), /^keygate: .+ \(403 admin_required\)$/m);
    assert.equal(asAccess.stderr.match(SECRET_RE_G), null, 'the refusal does not echo the secret');
  });

  test('remote audit --key shows the HTTP actor and address', async () => {
    const k = cliJson(await rcli(['access-key', 'create', '--name', 'audited', '--json']));
    assert.equal((await rcli(['access-key', 'disable', '--id', k.id])).code, 0);
    const a = cliJson(await rcli(['audit', '--key', k.id, '--json']));
    assert.deepEqual(a.data.map((e) => e.action), ['token.disabled', 'token.created']);
    for (const e of a.data) {
      assert.equal(e.actor, rootId);
      assert.equal(e.remote_addr, '127.0.0.1');
      assert.equal(e.object_id, k.id);
    }
  });

  test('the local CLI and the API can write the store at the same time', async () => {
    const jobs = [];
    for (let i = 0; i < 6; i++) jobs.push(sb.cli(['admin-key', 'create', '--name', `busy-cli-${i}`, '--json']).then((r) => cliJson(r)));
    for (let i = 0; i < 10; i++) {
      jobs.push(
        fetch(`${gw.url}/v1/tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${root}`, 'content-type': 'application/json' },
          body: JSON.stringify({ token_type: 'admin', name: `busy-api-${i}` }),
          signal: AbortSignal.timeout(15000),
        }).then(async (r) => {
          assert.equal(r.status, 201);
          return r.json();
        })
      );
    }
    const made = await Promise.all(jobs);
    assert.equal(new Set(made.map((t) => t.id)).size, 16, 'sixteen distinct keys');
    const listed = cliJson(await sb.cli(['admin-key', 'list', '--json'])).data.map((t) => t.id);
    for (const t of made) assert.ok(listed.includes(t.id), `${t.name} is stored`);
    for (const t of made) await settleKey(gw, t.key, 200);
  });

  describe('the gateway sees local-CLI changes within 100 ms', () => {
    /** Runs a local CLI verb, then polls the gateway with `secret` until it answers as expected. */
    async function feedLatency(args, secret, status, code) {
      const r = await sb.cli(args);
      assert.equal(r.code, 0, `keygate ${args.join(' ')}: ${r.stderr}`);
      const exited = r.exitedAt;
      const seen = await waitFor(
        async () => {
          const p = await probeKey(gw, secret);
          return p.status === status && (code === undefined || p.code === code) ? performance.now() : false;
        },
        { timeoutMs: 2000, intervalMs: 5, what: `${args.slice(0, 2).join(' ')} to reach the gateway` }
      );
      return { r, ms: seen.value - exited };
    }

    let id;
    let secret;

    test('admin-key create (local) → the new secret authenticates', async (t) => {
      for (let i = 0; i < 3; i++) {
        const r = await sb.cli(['admin-key', 'create', '--name', `feed-${i}`, '--json']);
        const j = cliJson(r);
        const seen = await waitFor(async () => ((await probeKey(gw, j.key)).status === 200 ? performance.now() : false), {
          timeoutMs: 2000,
          intervalMs: 5,
          what: 'a CLI-made admin key to authenticate',
        });
        const ms = seen.value - r.exitedAt;
        t.diagnostic(`create #${i} visible after ${ms.toFixed(1)} ms`);
        assert.ok(ms < FEED_BOUND_MS, `create #${i} visible after ${ms.toFixed(1)} ms (bound ${FEED_BOUND_MS})`);
        id = j.id;
        secret = j.key;
      }
    });

    test('admin-key disable (local) → 401 key_disabled; enable → works again', async (t) => {
      let { ms } = await feedLatency(['admin-key', 'disable', '--id', id], secret, 401, 'key_disabled');
      t.diagnostic(`disable visible after ${ms.toFixed(1)} ms`);
      assert.ok(ms < FEED_BOUND_MS, `disable visible after ${ms.toFixed(1)} ms`);
      ({ ms } = await feedLatency(['admin-key', 'enable', '--id', id], secret, 200));
      assert.ok(ms < FEED_BOUND_MS, `enable visible after ${ms.toFixed(1)} ms`);
    });

    test('admin-key update --expires (local) → 401 key_expired once past', async () => {
      // An expiry two seconds ahead (the feed delivers it long before): the key works until the
      // second it names and answers key_expired from then on.
      const r = await sb.cli(['admin-key', 'update', '--id', id, '--expires', '2s', '--json']);
      const expiresAt = cliJson(r).expires_at;
      try {
        await assertStopsAt(gw, secret, expiresAt, 'key_expired', { intervalMs: 5, what: 'the CLI-expired key' });
      } catch (e) {
        // Leave the key usable for the next steps, then report.
        cliJson(await sb.cli(['admin-key', 'update', '--id', id, '--expires', 'never', '--json']));
        throw e;
      }
      // Clearing the expiry revives it, again within the feed's bound.
      const back = await feedLatency(['admin-key', 'update', '--id', id, '--expires', 'never'], secret, 200);
      assert.ok(back.ms < FEED_BOUND_MS, `clearing the expiry visible after ${back.ms.toFixed(1)} ms`);
    });

    test('admin-key rotate (local) → old secret 401 invalid_api_key, new one works', async () => {
      const r = await sb.cli(['admin-key', 'rotate', '--id', id, '--json']);
      const j = cliJson(r);
      const seenOld = await waitFor(
        async () => ((await probeKey(gw, secret)).code === 'invalid_api_key' ? performance.now() : false),
        { timeoutMs: 2000, intervalMs: 5, what: 'the rotated-away secret to stop' }
      );
      assert.ok(seenOld.value - r.exitedAt < FEED_BOUND_MS, `old secret stopped after ${(seenOld.value - r.exitedAt).toFixed(1)} ms`);
      const p = await probeKey(gw, j.key);
      assert.equal(p.status, 200, 'the new secret works');
      secret = j.key;
    });

    test('admin-key delete (local) → 401 key_revoked', async () => {
      const { ms } = await feedLatency(['admin-key', 'delete', '--id', id], secret, 401, 'key_revoked');
      assert.ok(ms < FEED_BOUND_MS, `revocation visible after ${ms.toFixed(1)} ms`);
    });

    test('access-key create (local) → the gateway knows it (403 admin_required, not 401)', async () => {
      const r = await sb.cli(['access-key', 'create', '--name', 'feed-access', '--json']);
      const j = cliJson(r);
      const seen = await waitFor(
        async () => ((await probeKey(gw, j.key)).code === 'admin_required' ? performance.now() : false),
        { timeoutMs: 2000, intervalMs: 5, what: 'a CLI-made access key to be known' }
      );
      assert.ok(seen.value - r.exitedAt < FEED_BOUND_MS, `visible after ${(seen.value - r.exitedAt).toFixed(1)} ms`);
    });
  });
});
