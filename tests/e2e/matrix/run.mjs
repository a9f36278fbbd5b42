// SPDX-License-Identifier: Apache-2.0
//
// Runs the authorization matrix (rows.mjs) against one keygate binary:
//   runMatrix(binaryPath) → {rows, results, failures, durationMs, gatewayLog}
// It makes a private sandbox (config rendered from CATALOG, a second org), creates every key of
// PRINCIPALS with the local CLI (or, where the CLI has no flag for it, the admin API), puts each
// into its state, starts `keygate serve` on 127.0.0.1:0, sends every row with a raw fetch
// (about 8 at a time) and compares status, error code and (for 200s) the OpenAI object.
// Self-contained apart from a few pure helpers of lib/harness.mjs, so that a mutant binary can
// be run without KEYGATE_BIN.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { TYPE_OF_STATUS, breakChecksum, forgeSecret, redact } from '../lib/harness.mjs';
import { CATALOG, PRINCIPALS, KEY_PRINCIPALS, ROWS, parseStep } from './rows.mjs';

/** keygate.yaml for the matrix: production (live) + staging, everything on the mock provider. */
export function matrixYaml(workers = 2) {
  const list = (items) => items.map((i) => `  - ${JSON.stringify(i)}`).join('\n'); // JSON is YAML flow
  return [
    'listen: 127.0.0.1:0',
    `workers: ${workers}`,
    `environments: ${JSON.stringify(CATALOG.environments)}`,
    'limits: {max_body_bytes: 65536, max_header_bytes: 8192, upstream_timeout_ms: 2000}',
    'credentials: {}',
    'providers:',
    list([{ name: 'demo', type: 'mock' }]),
    'models:',
    list(CATALOG.models.map((m) => ({ ...m, provider: 'demo' }))),
    'prompt_modules:',
    list(CATALOG.prompt_modules),
    'agents:',
    list(CATALOG.agents),
    '',
  ].join('\n');
}

function baseEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('KEYGATE_')) delete env[k];
  return env;
}

/** One CLI run; resolves {code, stdout, stderr}; bounded by 15 s. */
function run(bin, args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.on('error', (e) => (clearTimeout(timer), reject(e)));
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

async function runJson(bin, args, cwd) {
  const r = await run(bin, [...args, '--json'], cwd);
  if (r.code !== 0) throw new Error(`keygate ${args.join(' ')} → exit ${r.code}: ${redact(r.stderr + r.stdout)}`);
  return JSON.parse(r.stdout);
}

/** The JSON of a reply body, or undefined when it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function http(url, method, { key, body } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  return { status: res.status, json: parseJson(text), text };
}

async function adminCall(gw, key, method, route, body) {
  const r = await http(gw.url + route, method, { key, body });
  if (r.status >= 300) throw new Error(`${method} ${route} → ${r.status}: ${redact(r.text)}`);
  return r.json;
}

/** `keygate serve` on 127.0.0.1:0; resolves once it logged its port (≤ 10 s). */
function serve(bin, sb) {
  return new Promise((resolve, reject) => {
    const env = baseEnv();
    env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'detect_leaks=0'].filter(Boolean).join(':');
    const child = spawn(bin, ['serve', '--db', sb.db, '--config', sb.config, '--listen', '127.0.0.1:0', '--workers', '2'], {
      cwd: sb.dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const gw = { child, log: '', exit: null };
    const exited = new Promise((r) => child.on('exit', (code, signal) => r((gw.exit = { code, signal }))));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`keygate serve did not log its port within 10 s:\n${gw.log}`));
    }, 10000);
    const onData = (d) => {
      gw.log += d;
      const m = gw.log.match(/keygate listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !gw.url) {
        clearTimeout(timer);
        gw.url = `http://127.0.0.1:${m[1]}`;
        resolve(gw);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('exit', () => {
      if (!gw.url) {
        clearTimeout(timer);
        reject(new Error(`keygate serve exited early:\n${gw.log}`));
      }
    });
    gw.stop = async () => {
      if (gw.exit) return gw.exit;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(t);
      return r;
    };
  });
}

// ==== Keys ====

/**
 * Creates the keys of PRINCIPALS and applies their steps, one phase at a time:
 *  'local' (CLI, before the gateway starts), 'live' (admin API: API-made keys and '@live' steps),
 *  'feed' (CLI while the gateway runs; then waits 300 ms, thrice the 100 ms SPEC §7 allows).
 * Fills ctx.keys: {name → {id, secrets[], noun}}.
 */
async function makeKeys(bin, sb, phase, ctx) {
  const { keys } = ctx;
  const local = (args) => runJson(bin, [...args, '--db', sb.db, '--config', sb.config], sb.dir);
  const byApi = (name) => PRINCIPALS[name].make.api !== undefined || PRINCIPALS[name].org === 'other';
  const now = () => Math.floor(Date.now() / 1000);
  const adminOf = (name) => (PRINCIPALS[name].org === 'other' ? ctx.otherAdmin : ctx.root);
  const stepsOf = (name, via) =>
    (PRINCIPALS[name].steps ?? []).map(parseStep).filter((st) => (st.via ?? (byApi(name) ? 'live' : 'cli')) === via);

  const cliStep = async (name, st) => {
    const { id, noun } = keys[name];
    if (st.op === 'update') return local([noun, 'update', '--id', id, ...st.args]);
    if (st.op !== 'rotate') return local([noun, st.op, '--id', id]);
    const r = await local([noun, 'rotate', '--id', id, ...(st.grace ? ['--grace', `${st.grace}s`] : [])]);
    keys[name].secrets.push(r.key);
  };
  const apiStep = async (name, st) => {
    const { id } = keys[name];
    const admin = adminOf(name);
    if (st.op === 'disable' || st.op === 'enable') return adminCall(ctx.gw, admin, 'POST', `/v1/tokens/${id}/${st.op}`);
    if (st.op === 'delete') return adminCall(ctx.gw, admin, 'DELETE', `/v1/tokens/${id}`);
    if (st.op === 'patch') return adminCall(ctx.gw, admin, 'PATCH', `/v1/tokens/${id}`, st.body);
    if (st.op !== 'rotate') throw new Error(`${name}: no admin API step ${st.op}`);
    const r = await adminCall(ctx.gw, admin, 'POST', `/v1/tokens/${id}/rotate`, st.grace ? { grace_seconds: st.grace } : {});
    if (st.grace && st.grace < 60) ctx.expiresAt = Math.max(ctx.expiresAt, now() + st.grace);
    keys[name].secrets.push(r.key);
  };

  if (phase === 'local') {
    // Keys that must expire first (they are waited for before the rows run).
    const names = KEY_PRINCIPALS.filter((n) => !byApi(n) && !PRINCIPALS[n].make.root && !PRINCIPALS[n].make.orgAdmin);
    names.sort((a, b) => (PRINCIPALS[b].expires === 'soon') - (PRINCIPALS[a].expires === 'soon'));
    const one = async (name) => {
      const p = PRINCIPALS[name];
      const noun = p.make.noun ?? 'access-key';
      const extra = [];
      if (p.expires === 'soon') {
        const at = now() + 2;
        ctx.expiresAt = Math.max(ctx.expiresAt, at);
        extra.push('--expires', String(at));
      } else if (p.expires === 'later') extra.push('--expires', '30d');
      const t = await local([noun, 'create', '--name', name, ...p.make.cli, ...extra]);
      keys[name] = { id: t.id, secrets: [t.key], noun };
      for (const st of stepsOf(name, 'cli')) await cliStep(name, st);
    };
    // A few CLI processes at a time (the store has a busy timeout); each key's steps in order.
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < names.length) await one(names[next++]);
    }));
  } else if (phase === 'live') {
    for (const name of KEY_PRINCIPALS.filter(byApi)) {
      const p = PRINCIPALS[name];
      if (p.make.orgAdmin) continue;
      const body = { token_type: 'access', name, ...p.make.api };
      if (p.expires === 'later') body.expires_at = now() + 30 * 86400;
      if (p.expires === 'soon') {
        body.expires_at = now() + 2;
        ctx.expiresAt = Math.max(ctx.expiresAt, body.expires_at);
      }
      const t = await adminCall(ctx.gw, adminOf(name), 'POST', '/v1/tokens', body);
      keys[name] = { id: t.id, secrets: [t.key], noun: 'access-key' };
    }
    for (const name of KEY_PRINCIPALS) for (const st of stepsOf(name, 'live')) await apiStep(name, st);
  } else {
    let any = false;
    for (const name of KEY_PRINCIPALS)
      for (const st of stepsOf(name, 'feed')) {
        await cliStep(name, st);
        any = true;
      }
    if (any) await new Promise((r) => setTimeout(r, 300));
  }
}

/** The request headers (and query) a row's principal sends (SPEC §2 credential forms). */
function credentialOf(name, keys) {
  const p = PRINCIPALS[name];
  const k = keys[p.as ?? name];
  const secret = k ? (p.secret !== undefined ? k.secrets[p.secret] : k.secrets.at(-1)) : undefined;
  switch (p.cred ?? 'bearer') {
    case 'bearer': return { headers: { authorization: `Bearer ${secret}` } };
    case 'bearer-lower': return { headers: { authorization: `bearer   ${secret}` } };
    case 'x-api-key': return { headers: { 'x-api-key': secret } };
    case 'pair': return { headers: { authorization: `Bearer ${k.id}:${secret}` } };
    case 'pair-wrong': return { headers: { authorization: `Bearer ${keys.full.id}:${secret}` } };
    case 'pk-only': return { headers: { authorization: `Bearer ${k.id}` } };
    case 'conflict': return { headers: { authorization: `Bearer ${secret}`, 'x-api-key': keys.full.secrets.at(-1) } };
    case 'query': return { headers: { authorization: `Bearer ${secret}` }, query: `?api_key=${secret}` };
    case 'query-other': return { headers: { authorization: `Bearer ${secret}` }, query: `?q=1&foo=${secret}` };
    case 'both-same': return { headers: { authorization: `Bearer ${secret}`, 'x-api-key': secret } };
    case 'none': return { headers: {} };
    case 'garbage': return { headers: { authorization: 'Bearer hello-world' } };
    case 'badsum': return { headers: { authorization: `Bearer ${breakChecksum(secret)}` } };
    case 'forged': return { headers: { authorization: `Bearer ${forgeSecret('live')}` } };
    case 'forged-eph': return { headers: { authorization: `Bearer ${forgeSecret('eph')}` } };
    default: throw new Error(`unknown credential form ${p.cred}`);
  }
}

// ==== Judging one answer ====

/** Why `res` does not match `row.expect`, or null when it does. */
export function judge(row, res) {
  const e = row.expect;
  const body = redact(res.text ?? '').slice(0, 300);
  const got = `${res.status} ${res.json?.error?.code ?? ''}`.trim();
  if (res.status !== e.status) return `expected ${e.status} ${e.code ?? ''}, got ${got}: ${body}`;
  if (e.code) {
    const er = res.json?.error;
    if (!er || typeof er !== 'object') return `no error object: ${body}`;
    if (er.code !== e.code) return `expected code ${e.code}, got ${er.code}: ${body}`;
    const members = Object.keys(er).sort().join(',');
    if (members !== 'code,message,param,type') return `error members ${members}: ${body}`;
    if (TYPE_OF_STATUS[e.status] && er.type !== TYPE_OF_STATUS[e.status]) return `error type ${er.type}: ${body}`;
    if (e.status === 401 && !/^Bearer\b/.test(res.headers.get('www-authenticate') ?? '')) return '401 without WWW-Authenticate: Bearer';
    return null;
  }
  if (e.stream) {
    if (!/^text\/event-stream/.test(res.headers.get('content-type') ?? '')) return `stream is not text/event-stream: ${body}`;
    const data = res.text.split(/\r?\n\r?\n/).filter((b) => b.startsWith('data:')).map((b) => b.slice(5).trim());
    if (data.at(-1) !== '[DONE]') return `stream does not end with [DONE]: ${body}`;
    let first;
    try {
      first = JSON.parse(data[0]);
    } catch {
      return `first stream event is not JSON: ${body}`;
    }
    if (first.object !== e.object || first.model !== e.model) return `stream chunk ${first.object}/${first.model}, expected ${e.object}/${e.model}`;
    return null;
  }
  const j = res.json;
  if (!j) return `200 without JSON: ${body}`;
  if (j.object !== e.object) return `expected object ${e.object}, got ${j.object}: ${body}`;
  if (e.ids) {
    if (!Array.isArray(j.data) || j.has_more !== false) return `not an OpenAI list: ${body}`;
    const ids = j.data.map((m) => m.id).sort();
    if (JSON.stringify(ids) !== JSON.stringify(e.ids)) return `listed [${ids}], expected [${e.ids}]`;
    if (j.data.some((m) => m.object !== 'model')) return `list items are not models: ${body}`;
  } else if (e.object === 'model') {
    if (j.id !== e.id) return `model id ${j.id}, expected ${e.id}`;
  } else if (e.object === 'list') {
    if (j.data?.[0]?.object !== 'embedding' || !Array.isArray(j.data[0].embedding)) return `not an embedding list: ${body}`;
    if (j.model !== e.model) return `embedding model ${j.model}, expected ${e.model}`;
  } else {
    if (!Array.isArray(j.choices) || j.choices.length === 0) return `no choices: ${body}`;
    if (j.model !== e.model) return `answered by ${j.model}, expected ${e.model}`;
  }
  return null;
}

async function send(gw, row, keys) {
  const cred = credentialOf(row.key, keys);
  const headers = { ...cred.headers };
  let payload;
  if (row.method !== 'GET' && row.method !== 'HEAD' && row.method !== 'DELETE') {
    payload = row.raw ?? JSON.stringify(row.body ?? {});
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(gw.url + row.path + (cred.query ?? ''), {
    method: row.method,
    headers,
    body: payload,
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: parseJson(text) };
}

/** Runs every row against `binaryPath`; see the file's head. */
export async function runMatrix(binaryPath, { rows = ROWS, concurrency = 8, keep = process.env.KEYGATE_E2E_KEEP === '1' } = {}) {
  const t0 = performance.now();
  const bin = path.resolve(binaryPath);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-matrix-'));
  const sb = { dir, db: path.join(dir, 'k.db'), config: path.join(dir, 'keygate.yaml') };
  fs.writeFileSync(sb.config, matrixYaml());
  const ctx = { keys: {}, expiresAt: 0, root: null, otherAdmin: null, gw: null };
  let gw;
  try {
    const init = await run(bin, ['init', '--db', sb.db, '--config', sb.config], dir);
    const rootKey = init.stdout.match(/root admin key: (\S+)/);
    if (init.code !== 0 || !rootKey) throw new Error(`keygate init failed: ${init.stderr}`);
    ctx.root = rootKey[1];
    ctx.keys.root = { id: null, secrets: [ctx.root] };
    const org = await runJson(bin, ['org', 'create', '--name', 'other', '--db', sb.db, '--config', sb.config], dir);
    ctx.otherAdmin = org.admin_key.key;
    ctx.keys['other-admin'] = { id: org.admin_key.id, secrets: [ctx.otherAdmin] };
    await makeKeys(bin, sb, 'local', ctx);
    gw = ctx.gw = await serve(bin, sb);
    await makeKeys(bin, sb, 'live', ctx);
    await makeKeys(bin, sb, 'feed', ctx);
    // Every 'soon' key must be past its expiry (time(2) is coarse: leave it a tick).
    const waitMs = ctx.expiresAt * 1000 + 50 - Date.now();
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));

    const tRows = performance.now();
    const results = new Array(rows.length);
    let next = 0;
    const worker = async () => {
      while (next < rows.length) {
        const i = next++;
        const row = rows[i];
        let reason;
        let got = null;
        try {
          const res = await send(gw, row, ctx.keys);
          got = { status: res.status, code: res.json?.error?.code ?? null };
          reason = judge(row, res);
        } catch (e) {
          reason = `request failed: ${e.cause?.code ?? e.message}`;
        }
        results[i] = { row, got, ok: reason === null, reason };
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    // `todo` rows (proposed hardening beyond SPEC, see rows.mjs) are reported, never failures.
    const failures = results.filter((r) => !r.ok && !r.row.todo);
    const todo = results.filter((r) => r.row.todo);
    const timings = { setupMs: Math.round(tRows - t0), rowsMs: Math.round(performance.now() - tRows) };
    return { rows, results, failures, todo, durationMs: performance.now() - t0, timings, gatewayLog: gw.log };
  } finally {
    if (gw) await gw.stop().catch(() => {});
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// `node tests/e2e/matrix/run.mjs [binary]`: run once and print the failures.
if (import.meta.url === `file://${process.argv[1]}`) {
  const bin = process.argv[2] ?? process.env.KEYGATE_BIN ?? new URL('../../../build/keygate', import.meta.url).pathname;
  const r = await runMatrix(bin);
  for (const f of r.failures) console.log(`FAIL ${f.row.id}\n     ${f.reason}`);
  for (const f of r.todo) console.log(`TODO ${f.ok ? 'passes' : 'fails '} ${f.row.id}${f.ok ? '' : `\n     ${f.reason}`}`);
  console.log(`${r.rows.length} rows (${r.todo.length} todo), ${r.failures.length} failed, ${Math.round(r.durationMs)} ms (setup ${r.timings.setupMs} ms, rows ${r.timings.rowsMs} ms)`);
  process.exitCode = r.failures.length ? 1 : 0;
}
