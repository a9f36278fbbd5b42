// SPDX-License-Identifier: Apache-2.0
//
// The CLI on the local store (SPEC §7): init, the access-key life cycle, presets, gateway and
// admin keys, and exit statuses. No gateway runs here; every verb writes the SQLite file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { ID_RE, SECRET_RE_G, assertSecret, cliJson, nowSec, redact, sandbox, stopAll } from './lib/harness.mjs';

const TABLE_HEADER = /^ID\s+NAME\s+TYPE\s+PREFIX\s+STATUS\s+CREATED\s+LAST USED\s*$/;

/** Parses `Created <type> key pk_... (name) in env` + `secret: ...` from human create output. */
function parseCreated(stdout, type) {
  const head = stdout.match(new RegExp(`^Created ${type} key (pk_[0-9A-Za-z]{24}) \\((.*)\\)(?: in (\\S+))?$`, 'm'));
  const secret = stdout.match(/^secret: (\S+)$/m);
  assert.ok(head, `create prints "Created ${type} key pk_... (name)": ${redact(stdout)}`);
  assert.ok(secret, `create prints "secret: ...": ${redact(stdout)}`);
  return { id: head[1], name: head[2], env: head[3] ?? null, secret: secret[1] };
}

/** Rows of a `list` table (header checked), each split on runs of 2+ spaces. */
function tableRows(stdout) {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  assert.match(lines[0] ?? '', TABLE_HEADER, `list prints the table header: ${stdout}`);
  return lines.slice(1).map((l) => l.trim().split(/\s{2,}/));
}

/** "keygate: <message> (<status> <code>)" on stderr. */
function refusal(r) {
  const m = r.stderr.trim().match(/^keygate: (.+) \((\d{3}) ([a-z_]+)\)$/m);
  assert.ok(m, `refusal is "keygate: <message> (<status> <code>)": ${r.stderr}`);
  return { message: m[1], status: Number(m[2]), code: m[3] };
}

describe('keygate CLI on the local store', () => {
  let sb;
  let rootSecret;

  before(() => {
    sb = sandbox('cli-local');
  });
  after(stopAll);

  test('a verb on an uninitialised store refuses and says to run keygate init', async () => {
    const r = await sb.cli(['access-key', 'list']);
    assert.notEqual(r.code, 0, 'refused');
    assert.match(r.stderr, /keygate init/, 'tells the operator to run keygate init');
    assert.equal(r.stdout.match(SECRET_RE_G), null);
  });

  test('init prints the root admin key once; a second init says already initialised', async () => {
    const r = await sb.cli(['init']);
    assert.equal(r.code, 0, r.stderr);
    const m = r.stdout.match(/^root admin key: (\S+)$/m);
    assert.ok(m, `init prints "root admin key: ...": ${redact(r.stdout)}`);
    rootSecret = m[1];
    assertSecret(rootSecret, 'admin', 'root admin key');
    assert.equal(r.stdout.match(SECRET_RE_G).length, 1, 'the secret is printed exactly once');
    assert.equal(r.stderr.match(SECRET_RE_G), null, 'no secret on stderr');
    assert.ok(!fs.existsSync(sb.rootKeyFile), 'init prints the key; it writes no root-key file');

    const again = await sb.cli(['init']);
    assert.match(again.stdout + again.stderr, /already initiali[sz]ed/);
    assert.equal((again.stdout + again.stderr).match(SECRET_RE_G), null, 'a second init shows no secret');

    const admins = cliJson(await sb.cli(['admin-key', 'list', '--json']));
    assert.equal(admins.data.length, 1, 'still exactly one admin key (the root)');
    assert.equal(admins.data[0].token_type, 'admin');
    assert.equal(admins.data[0].prefix, rootSecret.slice(0, 12));
  });

  describe('access-key life cycle', () => {
    let key; // {id, secret}

    test('create prints the pk id and the secret, once', async () => {
      const r = await sb.cli(['access-key', 'create', '--name', 'web-app', '--preset', 'openai-chat', '--rpm', '60']);
      assert.equal(r.code, 0, r.stderr);
      key = parseCreated(r.stdout, 'access');
      assert.match(key.id, ID_RE);
      assert.equal(key.name, 'web-app');
      assert.equal(key.env, 'production');
      assertSecret(key.secret, 'live', 'production access key');
      assert.equal(r.stdout.match(SECRET_RE_G).length, 1, 'the secret appears once');
    });

    test('create in a non-live environment gives a kg_test_ secret', async () => {
      const r = await sb.cli(['access-key', 'create', '--name', 'staging-app', '--env', 'staging']);
      assert.equal(r.code, 0, r.stderr);
      const k = parseCreated(r.stdout, 'access');
      assert.equal(k.env, 'staging');
      assertSecret(k.secret, 'test', 'staging access key');
    });

    test('create --json prints the API object with key and id', async () => {
      const j = cliJson(
        await sb.cli([
          'access-key', 'create', '--name', 'json-app', '--scope', 'inference:chat', '--scope', 'inference:embed',
          '--model', 'demo-chat', '--tpm', '1000', '--metadata', '{"owner":"ops"}', '--description', 'from json',
          '--json',
        ])
      );
      assert.match(j.id, ID_RE);
      assert.equal(j.object, 'token');
      assertSecret(j.key, 'live');
      assert.equal(j.prefix, j.key.slice(0, 12));
      assert.equal(j.last4, j.key.slice(-4));
      assert.deepEqual(j.scopes, ['inference:chat', 'inference:embed']);
      assert.deepEqual(j.allow.models, ['demo-chat']);
      assert.deepEqual(j.rate_limits, { tpm: 1000 });
      assert.deepEqual(j.metadata, { owner: 'ops' });
      assert.equal(j.description, 'from json');
      assert.equal(j.created_by, 'cli:local');
    });

    test('list prints the table with the key; --json prints the list object without secrets', async () => {
      const r = await sb.cli(['access-key', 'list']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.match(SECRET_RE_G), null, 'list shows no secret');
      const row = tableRows(r.stdout).find((cells) => cells[0] === key.id);
      assert.ok(row, `the table lists ${key.id}:\n${r.stdout}`);
      assert.deepEqual(row.slice(0, 5), [key.id, 'web-app', 'access', key.secret.slice(0, 12), 'active']);
      assert.match(row[5], /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/, 'CREATED is a UTC time');
      assert.equal(row[6], 'never', 'LAST USED is never');
      for (const cells of tableRows(r.stdout)) assert.equal(cells[2], 'access', 'access-key list lists access keys only');

      const staging = cliJson(await sb.cli(['access-key', 'list', '--env', 'staging', '--json']));
      assert.deepEqual(staging.data.map((x) => x.name), ['staging-app'], '--env filters');

      const j = cliJson(await sb.cli(['access-key', 'list', '--json']));
      assert.equal(j.object, 'list');
      assert.equal(typeof j.has_more, 'boolean');
      const t = j.data.find((x) => x.id === key.id);
      assert.ok(t, 'the JSON list has the key');
      assert.equal(t.key, undefined, 'no secret in a list');
      assert.equal(t.status, 'active');
      assert.equal(JSON.stringify(j).match(SECRET_RE_G), null);
    });

    test('show prints the details; --json the token object', async () => {
      const r = await sb.cli(['access-key', 'show', '--id', key.id]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^id\\s+${key.id}$`, 'm'));
      assert.match(r.stdout, /^name\s+web-app$/m);
      assert.match(r.stdout, /^status\s+active$/m);
      assert.equal(r.stdout.match(SECRET_RE_G), null, 'show shows no secret');

      const t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.id, key.id);
      assert.equal(t.name, 'web-app');
      assert.equal(t.token_type, 'access');
      assert.equal(t.environment, 'production');
      assert.equal(t.purpose, 'inference');
      assert.deepEqual(t.scopes, ['inference:chat'], 'the openai-chat preset');
      assert.deepEqual(t.rate_limits, { rpm: 60 });
      assert.equal(t.prefix, key.secret.slice(0, 12));
      assert.equal(t.last4, key.secret.slice(-4));
      assert.equal(t.org_id, 'org_default');
      assert.equal(t.created_by, 'cli:local');
      assert.equal(t.expires_at, null);
      assert.equal(t.key, undefined);
    });

    test('update changes name, --rpm and --expires', async () => {
      const before = nowSec() - 1; // the gateway reads the coarse clock: allow a second of skew
      const r = await sb.cli(['access-key', 'update', '--id', key.id, '--name', 'web-app-2', '--rpm', '120', '--expires', '30d']);
      assert.equal(r.code, 0, r.stderr);
      let t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.name, 'web-app-2');
      assert.equal(t.rate_limits.rpm, 120);
      assert.ok(
        t.expires_at >= before + 30 * 86400 && t.expires_at <= nowSec() + 30 * 86400,
        `--expires 30d is 30 days from now: ${t.expires_at}`
      );
      assert.equal(t.status, 'active');

      assert.equal((await sb.cli(['access-key', 'update', '--id', key.id, '--expires', '2099-01-01T00:00:00Z'])).code, 0);
      t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.expires_at, 4070908800, 'an ISO time');

      assert.equal((await sb.cli(['access-key', 'update', '--id', key.id, '--expires', '4102444800'])).code, 0);
      t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.expires_at, 4102444800, 'unix seconds');

      assert.equal((await sb.cli(['access-key', 'update', '--id', key.id, '--expires', 'never'])).code, 0);
      t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.expires_at, null, 'never clears the expiry');
      assert.equal(t.name, 'web-app-2', 'untouched fields keep their values');
    });

    test('rotate without --grace prints a new secret and keeps the id', async () => {
      const r = await sb.cli(['access-key', 'rotate', '--id', key.id]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Rotated access key ${key.id} \\(web-app-2\\) in production$`, 'm'));
      const secret = r.stdout.match(/^secret: (\S+)$/m)?.[1];
      assertSecret(secret, 'live', 'rotated secret');
      assert.notEqual(secret, key.secret);
      assert.doesNotMatch(r.stdout, /keeps working/, 'no grace without --grace');
      const t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.prefix, secret.slice(0, 12));
      assert.equal(t.last4, secret.slice(-4));
      assert.equal(typeof t.last_rotated_at, 'number');
      assert.deepEqual(t.rate_limits, { rpm: 120 }, 'rotation keeps the limits');
      key.secret = secret;
    });

    test('rotate --grace 1h says until when the previous secret keeps working', async () => {
      const r = await sb.cli(['access-key', 'rotate', '--id', key.id, '--grace', '1h']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^The previous secret keeps working until \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\.$/m);
      assertSecret(r.stdout.match(/^secret: (\S+)$/m)?.[1], 'live');

      const before = nowSec() - 1; // the gateway reads the coarse clock: allow a second of skew
      const j = cliJson(await sb.cli(['access-key', 'rotate', '--id', key.id, '--grace', '1h', '--json']));
      assert.equal(j.id, key.id);
      assertSecret(j.key, 'live');
      assert.ok(j.grace_until >= before + 3600 && j.grace_until <= nowSec() + 3600, `grace_until ${j.grace_until}`);
    });

    test('disable and enable', async () => {
      let r = await sb.cli(['access-key', 'disable', '--id', key.id]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${key.id} disabled$`, 'm'));
      let t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.status, 'disabled');
      assert.equal(t.enabled, false);
      const disabled = cliJson(await sb.cli(['access-key', 'list', '--status', 'disabled', '--json']));
      assert.deepEqual(disabled.data.map((x) => x.id), [key.id], '--status disabled lists exactly it');

      r = await sb.cli(['access-key', 'enable', '--id', key.id]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${key.id} enabled$`, 'm'));
      t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.status, 'active');
      assert.equal(t.enabled, true);
    });

    test('delete revokes; the key stays listed with --status revoked and cannot be changed again', async () => {
      const r = await sb.cli(['access-key', 'delete', '--id', key.id]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${key.id} revoked$`, 'm'));
      const t = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t.status, 'revoked');
      assert.equal(typeof t.revoked_at, 'number');
      assert.equal(t.revoked_by, 'cli:local');

      const revoked = await sb.cli(['access-key', 'list', '--status', 'revoked']);
      assert.equal(revoked.code, 0, revoked.stderr);
      const row = tableRows(revoked.stdout).find((c) => c[0] === key.id);
      assert.ok(row, 'listed with --status revoked');
      assert.equal(row[4], 'revoked');
      const active = cliJson(await sb.cli(['access-key', 'list', '--status', 'active', '--json']));
      assert.ok(!active.data.some((x) => x.id === key.id), 'not listed as active');

      const rot = await sb.cli(['access-key', 'rotate', '--id', key.id]);
      assert.equal(rot.code, 1, 'rotating a revoked key is refused');
      const ref = refusal(rot);
      assert.ok(ref.status >= 400 && ref.status < 500, `refused with a 4xx: ${rot.stderr}`);
      assert.equal(rot.stdout.match(SECRET_RE_G), null, 'no secret for a revoked key');
      const en = await sb.cli(['access-key', 'enable', '--id', key.id]);
      assert.equal(en.code, 1, 'enabling a revoked key is refused');
      const t2 = cliJson(await sb.cli(['access-key', 'show', '--id', key.id, '--json']));
      assert.equal(t2.status, 'revoked', 'still revoked');
    });
  });

  test('presets lists every preset of SPEC §4 (table and --json)', async () => {
    const names = ['openai-chat', 'chat-embeddings', 'ide-agent', 'voice', 'image', 'dataset-upload', 'conversation-app'];
    const r = await sb.cli(['access-key', 'presets']);
    assert.equal(r.code, 0, r.stderr);
    for (const n of names) assert.match(r.stdout, new RegExp(`^${n}\\s`, 'm'), `presets shows ${n}`);
    const j = cliJson(await sb.cli(['access-key', 'presets', '--json']));
    assert.deepEqual(j.map((p) => p.preset).sort(), [...names].sort());

    const up = cliJson(await sb.cli(['access-key', 'create', '--name', 'ingest', '--preset', 'dataset-upload', '--json']));
    assert.equal(up.purpose, 'upload');
    assert.deepEqual(up.scopes, ['datasets:write']);
    const ide = cliJson(await sb.cli(['access-key', 'create', '--name', 'ide', '--preset', 'ide-agent', '--json']));
    assert.deepEqual([...ide.scopes].sort(), ['inference:chat', 'inference:embed']);
  });

  test('gateway-key create gives a kg_gk_ secret and the key is listed as gateway', async () => {
    const r = await sb.cli(['gateway-key', 'create', '--name', 'edge-1']);
    assert.equal(r.code, 0, r.stderr);
    const k = parseCreated(r.stdout, 'gateway');
    assertSecret(k.secret, 'gk', 'legacy gateway key');
    assert.equal(k.env, 'production');

    const list = await sb.cli(['gateway-key', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const rows = tableRows(list.stdout);
    assert.ok(rows.some((c) => c[0] === k.id && c[2] === 'gateway' && c[3] === k.secret.slice(0, 12)));
    for (const c of rows) assert.equal(c[2], 'gateway');

    const t = cliJson(await sb.cli(['gateway-key', 'show', '--id', k.id, '--json']));
    assert.equal(t.token_type, 'gateway');

    const rot = await sb.cli(['gateway-key', 'rotate', '--id', k.id]);
    assert.equal(rot.code, 0, rot.stderr);
    assertSecret(rot.stdout.match(/^secret: (\S+)$/m)?.[1], 'gk', 'a rotated legacy gateway key');

    const del = await sb.cli(['gateway-key', 'delete', '--id', k.id]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(cliJson(await sb.cli(['gateway-key', 'show', '--id', k.id, '--json'])).status, 'revoked');
  });

  test('admin-key create gives a kg_admin_ secret', async () => {
    const r = await sb.cli(['admin-key', 'create', '--name', 'ops']);
    assert.equal(r.code, 0, r.stderr);
    const k = parseCreated(r.stdout, 'admin');
    assertSecret(k.secret, 'admin', 'admin key');
    assert.equal(k.name, 'ops');
    const list = await sb.cli(['admin-key', 'list']);
    const rows = tableRows(list.stdout);
    assert.ok(rows.some((c) => c[0] === k.id && c[2] === 'admin'), 'listed');
    assert.ok(rows.some((c) => c[3] === rootSecret.slice(0, 12)), 'the root admin key is listed too');
    for (const c of rows) assert.equal(c[2], 'admin');
  });

  test('exit status 2 on usage errors, 1 on refusals with the API message', async () => {
    for (const args of [
      ['access-key', 'create'], // no --name
      ['access-key', 'show'], // no --id
      ['access-key', 'list', '--bogus'],
      ['access-key', 'create', '--name', 'x', '--rpm', 'lots'],
      ['access-key', 'create', '--name', 'x', '--expires', 'someday'],
      ['access-key', 'rotate', '--id', 'pk_x', '--grace', 'soon'],
      ['access-key', 'frobnicate'],
      ['no-such-noun', 'list'],
    ]) {
      const r = await sb.cli(args);
      assert.equal(r.code, 2, `keygate ${args.join(' ')} is a usage error (2); got ${r.code}: ${r.stderr}`);
      assert.ok(r.stderr.length > 0, 'says why');
    }

    const missing = await sb.cli(['access-key', 'show', '--id', 'pk_000000000000000000000000']);
    assert.equal(missing.code, 1);
    const ref = refusal(missing);
    assert.equal(ref.status, 404);
    assert.equal(ref.code, 'not_found');

    const bad = await sb.cli(['access-key', 'create', '--name', 'x', '--scope', 'bogus:scope']);
    assert.equal(bad.code, 1);
    assert.deepEqual([refusal(bad).status, refusal(bad).code], [400, 'invalid_value']);
  });
});

describe('keygate explain', () => {
  let sb;
  let key;

  before(async () => {
    sb = sandbox('cli-explain');
    assert.equal((await sb.cli(['init'])).code, 0);
    const team = await sb.cli(['team', 'create', '--name', 'minis', '--tier', 'free', '--model', 'demo-*']);
    assert.equal(team.code, 0, team.stderr);
    key = cliJson(await sb.cli(['access-key', 'create', '--name', 'in-team', '--team', 'minis', '--json']));
  });
  after(stopAll);

  const explain = (model) =>
    sb.cli(['explain', '--route', '/v1/chat/completions', '--model', model, '--id', key.id, '--json']);

  test('an allowed call names the scope and the allowlist that let it through', async () => {
    const v = cliJson(await explain('demo-chat'));
    assert.equal(v.decision, 'allowed');
    assert.equal(v.rule, "allowed: scope inference:chat; model 'demo-chat' in allow.models");
    assert.match(v.upstream, /provider demo/);
  });

  test("the key's team narrows its models, as the data plane does", async () => {
    const v = cliJson(await explain('gpt-4o-mini'));
    assert.deepEqual([v.decision, v.status, v.code], ['refused', 403, 'model_not_allowed']);
    assert.match(v.rule, /team 'minis' \(tier free\): its models do not list 'gpt-4o-mini'/);
  });
});
