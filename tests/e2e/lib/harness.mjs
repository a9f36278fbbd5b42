// SPDX-License-Identifier: Apache-2.0
//
// Shared plumbing of keygate's end-to-end tests (node --test tests/e2e/). Node's built-ins only.
//
//  - sandbox():        a private temp dir with a copy of the sample keygate.yaml
//  - startGateway():   `keygate serve` on 127.0.0.1:0, port parsed from its log, output captured
//  - cli()/remoteCli(): the keygate CLI on the local store or against a running gateway
//  - api():            one HTTP call to a gateway (JSON in, JSON out)
//  - waitFor():        the only way to wait for something; always bounded by tries and time
//  - secret helpers:   shape + CRC32/base62 checksum of SPEC §2, and a forger of unknown secrets
//
// Every process a test file starts is registered here; stopAll() (call it from `after`) ends the
// ones still running. Nothing binds anything but 127.0.0.1.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // tests/e2e/lib
export const TEST_DIR = path.resolve(HERE, '..'); // tests/e2e
export const REPO_ROOT = path.resolve(TEST_DIR, '../..');
export const BIN = process.env.KEYGATE_BIN
  ? path.resolve(process.env.KEYGATE_BIN)
  : path.resolve(TEST_DIR, '../../build/keygate');
const SAMPLE_CONFIG = path.join(REPO_ROOT, 'keygate.yaml');

// ==== Secrets (SPEC §2) ====

export const ID_RE = /^pk_[0-9A-Za-z]{24}$/;
/** Any keygate secret of the default brand, anywhere in a text. */
export const SECRET_RE_G = /kg_(?:live|test|gk|admin|eph)_[0-9A-Za-z]{38}/g;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(text) {
  let c = 0xffffffff;
  for (const b of Buffer.from(text, 'latin1')) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function base62Checksum(random) {
  let n = crc32(random);
  let s = '';
  do {
    s = BASE62[n % 62] + s;
    n = Math.floor(n / 62);
  } while (n > 0);
  return s.padStart(6, '0');
}

/** Asserts `secret` is `kg_<kind>_` + 32 base62 + its CRC32 in base62 (SPEC §2). */
export function assertSecret(secret, kind, msg = '') {
  assert.equal(typeof secret, 'string', `${msg} secret is a string`);
  const m = secret.match(/^kg_([a-z]+)_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$/);
  assert.ok(m, `${msg} secret has the SPEC §2 shape: ${redact(secret)}`);
  assert.equal(m[1], kind, `${msg} secret kind`);
  assert.equal(m[3], base62Checksum(m[2]), `${msg} secret checksum`);
}

/** A well-formed secret (valid checksum) that no keygate ever issued. */
export function forgeSecret(kind = 'admin') {
  const bytes = crypto.randomBytes(64);
  let random = '';
  for (const b of bytes) {
    if (b < 248 && random.length < 32) random += BASE62[b % 62];
  }
  while (random.length < 32) random += 'A';
  return `kg_${kind}_${random}${base62Checksum(random)}`;
}

/** The same secret with its last character changed: the checksum no longer matches. */
export function breakChecksum(secret) {
  const last = secret.at(-1);
  return secret.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

/** For assertion messages: never print a whole secret. */
export function redact(s) {
  return typeof s === 'string' ? s.replace(SECRET_RE_G, (k) => `${k.slice(0, 12)}…${k.slice(-4)}`) : s;
}

// ==== Waiting ====

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `probe` until it returns a truthy value. Bounded by `timeoutMs` AND `maxTries`; on
 * failure throws with `what` and the last value seen. Returns {value, elapsedMs, tries}.
 */
export async function waitFor(probe, { timeoutMs = 2000, intervalMs = 10, maxTries, what = 'condition' } = {}) {
  const tries = maxTries ?? Math.ceil(timeoutMs / Math.max(intervalMs, 1)) + 10;
  const start = performance.now();
  let last;
  for (let i = 1; i <= tries; i++) {
    last = await probe();
    if (last) return { value: last, elapsedMs: performance.now() - start, tries: i };
    if (performance.now() - start >= timeoutMs) break;
    await sleep(intervalMs);
  }
  throw new Error(
    `timed out after ${Math.round(performance.now() - start)} ms waiting for ${what}; last: ${redact(
      JSON.stringify(last)
    )}`
  );
}

// ==== Sandboxes ====

/** Environment for every keygate process: the caller's, minus its KEYGATE_* settings. */
export function baseEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('KEYGATE_') && k !== 'KEYGATE_BIN') delete env[k];
  return { ...env, ...extra };
}

/** For `keygate serve` only: libh2o leaks at exit by design, so LeakSanitizer is told to skip it
 * (the caller's other ASan options are kept; a later option wins). */
function serveEnv(extra = {}) {
  const env = baseEnv(extra);
  env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'detect_leaks=0'].filter(Boolean).join(':');
  return env;
}

const sandboxes = new Set();

/** A private directory with keygate.yaml (a copy of the repo's sample config). */
export function sandbox(label = 'e2e') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `keygate-${label}-`));
  const config = path.join(dir, 'keygate.yaml');
  fs.writeFileSync(config, fs.readFileSync(SAMPLE_CONFIG));
  const sb = {
    dir,
    config,
    db: path.join(dir, 'k.db'),
    rootKeyFile: path.join(dir, 'k.db.root-key'),
    /** Local CLI on this sandbox's store. */
    cli: (args, opts = {}) => cli([...args, '--db', sb.db, '--config', sb.config], { cwd: dir, ...opts }),
    remove: () => {
      sandboxes.delete(sb);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  sandboxes.add(sb);
  return sb;
}

// ==== Processes ====

const running = new Set();

/** Runs the keygate CLI; resolves {code, stdout, stderr, exitedAt} (exitedAt: performance.now()). */
export function cli(args, { cwd = os.tmpdir(), env = {}, timeoutMs = 15000, input } = {}) {
  return new Promise((resolve, reject) => {
    const stdin = input === undefined ? 'ignore' : 'pipe';
    const child = spawn(BIN, args, { cwd, env: baseEnv(env), stdio: [stdin, 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    let exitedAt = 0;
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`keygate ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('exit', () => (exitedAt = performance.now()));
    child.on('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, exitedAt: exitedAt || performance.now() });
    });
    if (input !== undefined) {
      child.stdin.on('error', () => {}); // a CLI that exits before reading its input: not our failure
      child.stdin.end(input);
    }
  });
}

/** The CLI against a running gateway: --url and KEYGATE_ADMIN_KEY. */
export function remoteCli(gw, adminKey, args, opts = {}) {
  return cli([...args, '--url', gw.url], {
    ...opts,
    env: { KEYGATE_ADMIN_KEY: adminKey, ...(opts.env ?? {}) },
  });
}

/** Parses the JSON a `--json` verb printed; fails the test with the CLI's output otherwise. */
export function cliJson(r, what = 'keygate') {
  assert.equal(r.code, 0, `${what} exits 0; stderr: ${redact(r.stderr)}`);
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`${what} prints JSON: ${e.message}\n${redact(r.stdout)}`);
  }
}

/**
 * Starts `keygate serve --db <dir>/k.db --listen 127.0.0.1:0 --workers N --config <dir>/keygate.yaml`
 * in the sandbox and waits (≤ 10 s) for "keygate listening on http://127.0.0.1:PORT".
 */
export async function startGateway(sb, { workers = 2, args = [], env = {} } = {}) {
  const child = spawn(
    BIN,
    ['serve', '--db', sb.db, '--listen', '127.0.0.1:0', '--workers', String(workers), '--config', sb.config, ...args],
    { cwd: sb.dir, env: serveEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }
  );
  running.add(child);
  const gw = {
    proc: child,
    port: 0,
    url: '',
    stdout: '',
    stderr: '',
    exit: null, // {code, signal} once exited
    get output() {
      return this.stdout + this.stderr;
    },
  };
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      gw.exit = { code, signal };
      running.delete(child);
      resolve(gw.exit);
    });
  });
  child.stdout.setEncoding('utf8').on('data', (d) => (gw.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (gw.stderr += d));
  gw.exited = exited;

  try {
    const { value } = await waitFor(
      () => {
        if (gw.exit) throw new Error(`keygate serve exited early (${JSON.stringify(gw.exit)}):\n${gw.output}`);
        return gw.stderr.match(/keygate listening on http:\/\/127\.0\.0\.1:(\d+)/);
      },
      { timeoutMs: 10000, intervalMs: 10, what: 'keygate serve to log its port' }
    );
    gw.port = Number(value[1]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  gw.url = `http://127.0.0.1:${gw.port}`;

  /** Sends `signal` and waits (bounded) for the exit; resolves {code, signal}. */
  gw.stop = async (signal = 'SIGTERM', timeoutMs = 10000) => {
    if (gw.exit) return gw.exit;
    child.kill(signal);
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const r = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (r === null) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`keygate serve did not exit within ${timeoutMs} ms of ${signal}`);
    }
    return r;
  };
  return gw;
}

/** The root admin secret `keygate serve` wrote beside a fresh store. */
export function readRootKey(sb) {
  return fs.readFileSync(sb.rootKeyFile, 'utf8').trim();
}

/** Ends every process this file started and still running, then removes the sandboxes. */
export async function stopAll() {
  const waits = [];
  for (const child of running) {
    waits.push(
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      })
    );
  }
  await Promise.all(waits);
  running.clear();
  // KEYGATE_E2E_KEEP=1 keeps the temp dirs (stores, configs) for a post-mortem.
  if (process.env.KEYGATE_E2E_KEEP !== '1') for (const sb of [...sandboxes]) sb.remove();
}

// ==== HTTP ====

/**
 * One call to a gateway. `key` goes in `Authorization: Bearer`; `body` is JSON-encoded unless
 * `raw` (string or Buffer) is given. Resolves {status, headers, text, json}.
 */
export async function api(gw, method, urlPath, { key, body, raw, headers = {}, timeoutMs = 10000 } = {}) {
  const h = { ...headers };
  if (key !== undefined) h.authorization = `Bearer ${key}`;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type'))
    h['content-type'] = 'application/json';
  const res = await fetch(gw.url + urlPath, {
    method,
    headers: h,
    body: payload,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = text.length ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * One HTTP/1.1 request written by hand over a fresh socket (for what fetch cannot send, such
 * as a repeated header). `head` lines come without CRLFs. Resolves {status, headers, json, text}
 * shaped like api()'s reply; bounded by `timeoutMs`.
 */
export function rawRequest(gw, head, { body = '', timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(gw.port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete reply within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('latin1');
    sock.on('connect', () => {
      const lines = [...head, `Host: 127.0.0.1:${gw.port}`, 'Connection: close', `Content-Length: ${Buffer.byteLength(body)}`];
      sock.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    });
    sock.on('data', (d) => (data += d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const [rawHead, ...rest] = data.split('\r\n\r\n');
      const [statusLine, ...headerLines] = rawHead.split('\r\n');
      const headers = new Headers();
      for (const l of headerLines) {
        const i = l.indexOf(':');
        if (i > 0) headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
      }
      const text = rest.join('\r\n\r\n');
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, text, json });
    });
  });
}

/** Asserts a 2xx-class status and returns the JSON body. */
export function ok(res, status = 200, what = '') {
  assert.equal(res.status, status, `${what} expected ${status}, got ${res.status}: ${redact(res.text)}`);
  assert.ok(res.json !== undefined, `${what} replies JSON`);
  return res.json;
}

/** SPEC §5: the OpenAI error type each status carries. */
export const TYPE_OF_STATUS = {
  400: 'invalid_request_error',
  401: 'invalid_request_error',
  403: 'permission_error',
  404: 'invalid_request_error',
  405: 'invalid_request_error',
};

/**
 * Asserts SPEC §5's error shape: {"error": {message, type, param, code}} with all four members,
 * the status, the code, and (when given) the param; 401s carry `WWW-Authenticate: Bearer`.
 */
export function assertError(res, status, code, { param, what = '' } = {}) {
  const ctx = `${what} (${redact(res.text)})`;
  assert.equal(res.status, status, `${what} status ${status} ${code}; got ${res.status} ${ctx}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${what} error is JSON ${ctx}`);
  const e = res.json?.error;
  assert.ok(e && typeof e === 'object', `${what} has an "error" object ${ctx}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], `${what} error members ${ctx}`);
  assert.equal(typeof e.message, 'string', `${what} message is a string`);
  assert.ok(e.message.length > 0, `${what} message is not empty`);
  assert.equal(e.code, code, `${what} code ${ctx}`);
  if (TYPE_OF_STATUS[status]) assert.equal(e.type, TYPE_OF_STATUS[status], `${what} type ${ctx}`);
  if (param !== undefined) assert.equal(e.param, param, `${what} param ${ctx}`);
  else assert.ok(e.param === null || typeof e.param === 'string', `${what} param is null or a string`);
  if (status === 401)
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer\b/, `${what} 401 carries WWW-Authenticate`);
  return e;
}

/** GET /v1/tokens?limit=1 with `key`: the cheapest way to see how the key index judges a key. */
export async function probeKey(gw, key) {
  const r = await api(gw, 'GET', '/v1/tokens?limit=1', { key });
  return { status: r.status, code: r.json?.error?.code ?? null };
}

/**
 * Waits (≤ 1 s) until the gateway answers `key` with `status` (and `code` when given). Used
 * where the test is about something else than how fast a change reaches the key index; the
 * index's latency has its own strict tests.
 */
export async function settleKey(gw, key, status = 200, code = undefined, timeoutMs = 1000) {
  return waitFor(
    async () => {
      const p = await probeKey(gw, key);
      return p.status === status && (code === undefined || p.code === code) ? p : false;
    },
    { timeoutMs, intervalMs: 5, what: `key ${redact(key)} to answer ${status} ${code ?? ''}` }
  );
}

/**
 * Polls `key` (every `intervalMs`, ≤ `timeoutMs`) until it answers 401 `code`, and checks the
 * change happened at `deadlineSec` (unix seconds), judged by wall-clock times taken around each
 * probe: no probe that started at or after the deadline succeeded, and the refusal was not
 * seen before it. Returns {lastOkStart, refusedEnd}.
 */
export async function assertStopsAt(gw, key, deadlineSec, code, { timeoutMs = 5000, intervalMs = 10, what = 'key' } = {}) {
  const deadline = deadlineSec * 1000;
  let lastOkStart = 0;
  const seen = await waitFor(
    async () => {
      const start = Date.now();
      const p = await probeKey(gw, key);
      const end = Date.now();
      if (p.status === 200) lastOkStart = start;
      else if (p.status === 401) return { end, code: p.code };
      return false;
    },
    { timeoutMs, intervalMs, what: `${what} to stop at ${deadlineSec}` }
  );
  assert.equal(seen.value.code, code, `${what}: refused with ${code}`);
  // time(2), which the gateway reads, is the kernel's coarse clock: it lags the precise one by
  // up to a tick (1-10 ms). A success that late is granularity, not a missed deadline.
  const TICK_MS = 20;
  assert.ok(
    lastOkStart < deadline + TICK_MS,
    `${what}: a request sent ${lastOkStart - deadline} ms after the deadline still worked`
  );
  assert.ok(seen.value.end >= deadline, `${what}: refused ${deadline - seen.value.end} ms before the deadline`);
  return { lastOkStart, refusedEnd: seen.value.end };
}

/** Creates a token through the API (root or any admin key) and returns the reply. */
export async function createToken(gw, adminKey, body) {
  const r = await api(gw, 'POST', '/v1/tokens', { key: adminKey, body });
  return ok(r, 201, `POST /v1/tokens ${JSON.stringify(body)}`);
}

/** Reads every page of a list route (limit 100, after=last_id), bounded to 50 pages. */
export async function listAll(gw, key, route) {
  const out = [];
  let after = null;
  for (let page = 0; page < 50; page++) {
    const sep = route.includes('?') ? '&' : '?';
    const r = ok(await api(gw, 'GET', `${route}${sep}limit=100${after ? `&after=${after}` : ''}`, { key }));
    out.push(...r.data);
    if (!r.has_more) return out;
    after = r.last_id ?? r.data.at(-1)?.id;
  }
  throw new Error(`${route}: more than 50 pages`);
}

export const nowSec = () => Math.floor(Date.now() / 1000);

// ==== Data plane (dataplane-*.test.mjs) ====

/** A port on 127.0.0.1 that nothing listens on (bound by the kernel's choice, then closed). */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Resolves true when a TCP connect to 127.0.0.1:port is refused, false when it connects. */
export function connectRefused(port, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connect to ${port}: neither accepted nor refused within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(false);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED') resolve(true);
      else reject(e);
    });
  });
}

/**
 * The text of a keygate.yaml for data-plane tests: `providers` and `models` as lists of flow
 * mappings (objects, rendered as YAML flow maps), the demo provider and its two models always
 * included. `limits`, `credentials` and `agents` likewise.
 */
export function dataplaneYaml({
  workers = 2,
  limits = { max_body_bytes: 65536, max_header_bytes: 8192, upstream_timeout_ms: 1500, request_timeout_ms: 800 },
  credentials = {},
  providers = [],
  models = [],
  agents = [],
} = {}) {
  const flow = (o) =>
    `{${Object.entries(o)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(', ')}]` : JSON.stringify(v)}`)
      .join(', ')}}`;
  const list = (items) => (items.length ? items.map((i) => `  - ${flow(i)}`).join('\n') : '  []');
  const lines = [
    'listen: 127.0.0.1:0',
    `workers: ${workers}`,
    'environments: [{name: production, live: true}, {name: staging}]',
    `limits: ${flow(limits)}`,
    Object.keys(credentials).length ? `credentials: ${flow(credentials)}` : 'credentials: {}',
    'providers:',
    list([{ name: 'demo', type: 'mock' }, ...providers]),
    'models:',
    list([{ name: 'demo-chat', provider: 'demo' }, { name: 'demo-embed', provider: 'demo' }, ...models]),
  ];
  if (agents.length) lines.push('agents:', list(agents));
  return `${lines.join('\n')}\n`;
}

/**
 * A sandboxed gateway whose provider `up` is `upstream` (a started test upstream), its credential
 * read from TEST_UPSTREAM_KEY; `models` default to gpt-4o-mini on it, `extraYaml` is appended to
 * the config, `env` to the gateway's environment, `workers` its event loops. Resolves {sb, gw}.
 */
export async function startWithUpstream(
  label,
  upstream,
  { models = [{ name: 'gpt-4o-mini', provider: 'up' }], agents = [], extraYaml = '', env = {}, workers = 2 } = {}
) {
  const sb = sandbox(label);
  fs.writeFileSync(
    sb.config,
    dataplaneYaml({
      credentials: { up: 'env:TEST_UPSTREAM_KEY' },
      providers: [{ name: 'up', base_url: upstream.baseURL, credential: 'up' }],
      models,
      agents,
    }) + extraYaml
  );
  const gw = await startGateway(sb, { workers, env: { TEST_UPSTREAM_KEY: upstream.apiKey, ...env } });
  return { sb, gw };
}

/** Creates an access key through the admin API; resolves the 201 reply (with `key`, `id`). */
export async function createAccessKey(gw, adminKey, name, extra = {}) {
  return createToken(gw, adminKey, { token_type: 'access', name, ...extra });
}

/**
 * Reads a fetch Response's body as it arrives. Resolves {text, reads: [{t, text}], events:
 * [{t, data}]}: `t` is performance.now() when the bytes arrived; an SSE event's `t` is the
 * arrival of the read that completed it (its blank line). `data` joins the event's data lines.
 */
export async function readTimed(res) {
  const reads = [];
  const events = [];
  const decoder = new TextDecoder();
  let text = '';
  let pending = '';
  for await (const chunk of res.body) {
    const t = performance.now();
    const s = decoder.decode(chunk, { stream: true });
    reads.push({ t, text: s });
    text += s;
    pending += s;
    let i;
    while ((i = pending.search(/\r?\n\r?\n/)) >= 0) {
      const block = pending.slice(0, i);
      pending = pending.slice(i).replace(/^\r?\n\r?\n/, '');
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (block.trim() !== '') events.push({ t, data });
    }
  }
  return { text, reads, events };
}

/** The data payloads of a whole SSE text (blank blocks skipped). */
export function sseData(text) {
  return text
    .split(/\r?\n\r?\n/)
    .filter((b) => b.trim() !== '')
    .map((b) =>
      b
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n')
    );
}

/**
 * A hand-written HTTP exchange on a fresh socket: writes each of `parts` (string or Buffer) in
 * turn, `pauseMs` apart, then reads until the server closes (or `timeoutMs`, after which the
 * socket is destroyed and `timedOut` is true). Resolves {raw, status, headers, body, json,
 * closedAfterMs, timedOut}; `closedAfterMs` counts from the last write.
 */
export function rawExchange(port, parts, { pauseMs = 0, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let lastWrite = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      sock.destroy();
    }, timeoutMs);
    sock.on('connect', async () => {
      for (let i = 0; i < parts.length; i++) {
        if (i > 0 && pauseMs > 0) await sleep(pauseMs);
        if (sock.destroyed) return;
        sock.write(parts[i]);
        lastWrite = performance.now();
      }
    });
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') {
        clearTimeout(timer);
        reject(e);
      }
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const sep = raw.indexOf('\r\n\r\n');
      const head = sep >= 0 ? raw.slice(0, sep) : raw;
      const body = sep >= 0 ? raw.slice(sep + 4) : '';
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers = new Headers();
      for (const l of headerLines) {
        const i = l.indexOf(':');
        if (i > 0) headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
      }
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({
        raw,
        status: Number(statusLine.split(' ')[1]) || 0,
        headers,
        body,
        text: body,
        json,
        closedAfterMs: performance.now() - lastWrite,
        timedOut,
      });
    });
  });
}
