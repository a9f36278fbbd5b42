// SPDX-License-Identifier: Apache-2.0
//
// Secrets are never stored or logged (SPEC §2: only SHA-256 + display prefix + last 4 are
// kept; §6: `keygate serve` on a fresh store writes the root key to a mode-0600 file and logs
// only the path). After a run that creates and rotates many keys through the API, the remote
// CLI and the local CLI, no secret may appear in the store's files or the gateway's output.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  SECRET_RE_G,
  api,
  assertSecret,
  cliJson,
  createToken,
  forgeSecret,
  ok,
  probeKey,
  readRootKey,
  remoteCli,
  sandbox,
  settleKey,
  startGateway,
  stopAll,
} from './lib/harness.mjs';

/** Every file under dir (recursively), except `skip`. */
function filesUnder(dir, skip) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...filesUnder(p, skip));
    else if (p !== skip) out.push(p);
  }
  return out;
}

/** Which of `secrets` (whole, or their hidden middle) occur in `buf`, plus any secret-shaped string. */
function leaks(buf, secrets) {
  const found = [];
  for (const s of secrets) {
    if (buf.includes(s)) found.push(`${s.slice(0, 12)}… (whole secret)`);
    else if (buf.includes(s.slice(12, -4))) found.push(`${s.slice(0, 12)}… (its hidden middle)`);
  }
  const shaped = buf.toString('latin1').match(SECRET_RE_G);
  if (shaped) found.push(...shaped.map((s) => `secret-shaped ${s.slice(0, 12)}…`));
  return [...new Set(found)];
}

describe('secrets are never stored or logged', () => {
  let sb;
  let gw;
  let root;
  const secrets = [];

  before(async () => {
    sb = sandbox('secrets');
    gw = await startGateway(sb);
  });
  after(stopAll);

  test('serve on a fresh store writes the root key to a 0600 file and logs only its path', async () => {
    const st = fs.statSync(sb.rootKeyFile);
    assert.equal(st.mode & 0o777, 0o600, `mode ${(st.mode & 0o777).toString(8)}`);
    const content = fs.readFileSync(sb.rootKeyFile, 'utf8');
    assert.match(content, /^kg_admin_[0-9A-Za-z]{38}\n$/, 'the secret and a newline');
    root = readRootKey(sb);
    assertSecret(root, 'admin', 'root key file');
    secrets.push(root);
    assert.ok(gw.output.includes(sb.rootKeyFile), `the log names ${sb.rootKeyFile}:\n${gw.output}`);
    assert.equal(gw.output.includes(root), false, 'the log does not contain the root secret');
    assert.equal(gw.output.match(SECRET_RE_G), null, 'no secret-shaped string in the log');
    await settleKey(gw, root, 200);
  });

  test('the store files are the operator\'s alone', () => {
    for (const f of filesUnder(sb.dir, null)) {
      if (!path.basename(f).startsWith('k.db')) continue;
      const mode = fs.statSync(f).mode & 0o777;
      assert.equal(mode & 0o077, 0, `${path.basename(f)} has mode ${mode.toString(8)}`);
    }
  });

  test('a run that creates and rotates many keys leaves no secret in the store or the log', async () => {
    // Through the API.
    for (const body of [
      { name: 'api-live' },
      { name: 'api-test', environment: 'staging' },
      { name: 'api-admin', token_type: 'admin' },
      { name: 'api-gw', token_type: 'gateway' },
      { name: 'api-full', preset: 'openai-chat', metadata: { note: 'x' }, rate_limits: { rpm: 5 } },
    ]) {
      const t = await createToken(gw, root, body);
      secrets.push(t.key);
      for (const grace of [0, 60]) {
        const r = ok(await api(gw, 'POST', `/v1/tokens/${t.id}/rotate`, { key: root, body: { grace_seconds: grace } }));
        secrets.push(r.key);
      }
    }
    const gk = ok(await api(gw, 'POST', '/v1/gateway-keys', { key: root, body: { name: 'legacy' } }), 201);
    secrets.push(gk.key);
    secrets.push(ok(await api(gw, 'POST', `/v1/gateway-keys/${gk.id}/rotate`, { key: root })).key);
    const org = ok(await api(gw, 'POST', '/v1/admin/orgs', { key: root, body: { name: 'leak-org' } }), 201);
    secrets.push(org.admin_key.key);

    // Through the remote CLI.
    for (const args of [
      ['access-key', 'create', '--name', 'rcli-live', '--json'],
      ['admin-key', 'create', '--name', 'rcli-admin', '--json'],
      ['gateway-key', 'create', '--name', 'rcli-gk', '--json'],
    ]) {
      const j = cliJson(await remoteCli(gw, root, args));
      secrets.push(j.key);
      const noun = args[0];
      secrets.push(cliJson(await remoteCli(gw, root, [noun, 'rotate', '--id', j.id, '--grace', '1h', '--json'])).key);
    }

    // Through the local CLI (writing the file under the running gateway).
    for (const args of [
      ['access-key', 'create', '--name', 'lcli-live', '--json'],
      ['access-key', 'create', '--name', 'lcli-test', '--env', 'development', '--json'],
      ['admin-key', 'create', '--name', 'lcli-admin', '--json'],
      ['gateway-key', 'create', '--name', 'lcli-gk', '--json'],
    ]) {
      const j = cliJson(await sb.cli(args));
      secrets.push(j.key);
      secrets.push(cliJson(await sb.cli([args[0], 'rotate', '--id', j.id, '--json'])).key);
    }
    const lorg = cliJson(await sb.cli(['org', 'create', '--name', 'leak-cli-org', '--json']));
    secrets.push(lorg.admin_key.key);

    // Use them, well and badly: successes, refusals (wrong type, rotated away), forgeries.
    for (const s of secrets) await probeKey(gw, s);
    for (let i = 0; i < 3; i++) await probeKey(gw, forgeSecret('live'));
    await api(gw, 'GET', '/v1/tokens', { headers: { authorization: `Bearer ${root}`, 'x-api-key': secrets[1] } });

    assert.ok(secrets.length >= 30, `${secrets.length} secrets made`);
    for (const s of secrets) assert.match(s, /^kg_(live|test|gk|admin)_/);

    // While running: the store, its WAL and shm, everything in the sandbox but the root key file.
    const running = {};
    for (const f of filesUnder(sb.dir, sb.rootKeyFile)) running[path.basename(f)] = leaks(fs.readFileSync(f), secrets);
    assert.ok(Object.hasOwn(running, 'k.db'), 'the store was scanned');
    for (const [f, found] of Object.entries(running)) assert.deepEqual(found, [], `${f} holds secrets (while running)`);
    assert.deepEqual(leaks(Buffer.from(gw.output), secrets), [], 'the gateway output holds secrets');

    // After a graceful stop (the WAL is checkpointed into the store).
    const exit = await gw.stop('SIGTERM');
    assert.equal(exit.code, 0);
    for (const f of filesUnder(sb.dir, sb.rootKeyFile)) {
      assert.deepEqual(leaks(fs.readFileSync(f), secrets), [], `${path.basename(f)} holds secrets (after stop)`);
    }
    assert.deepEqual(leaks(Buffer.from(gw.output), secrets), [], 'the gateway output holds secrets (after stop)');
    // The root key file holds exactly the root secret.
    assert.equal(fs.readFileSync(sb.rootKeyFile, 'utf8'), `${root}\n`);
  });

  test('a restart on an existing store writes no new root key and logs no secret', async () => {
    const before = fs.statSync(sb.rootKeyFile).mtimeMs;
    gw = await startGateway(sb);
    assert.equal(fs.statSync(sb.rootKeyFile).mtimeMs, before, 'the root key file is left alone');
    assert.equal(gw.output.match(SECRET_RE_G), null);
    assert.equal((await probeKey(gw, root)).status, 200);
  });
});
