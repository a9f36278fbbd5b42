// SPDX-License-Identifier: Apache-2.0
//
// keygate from a real browser (SPEC §2 publishable mode + CORS, §3 ephemeral tokens).
//
// A little app (node:http on 127.0.0.1) serves a page whose module script loads the official
// openai SDK's browser build straight from node_modules (no bundler: an import map gives the
// package's two bare specifiers the files its `exports` "browser" condition names) and runs it
// with `dangerouslyAllowBrowser` in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; Playwright never downloads a browser here). On the page's origin
// (http://127.0.0.1:PORT, listed in the publishable key's allowed_domains) it streams a chat
// with the publishable key (pk_… alone), then with an ephemeral token that the app's own
// backend minted server-side (POST /mint → keygate's POST /v1/ephemeral-tokens with the
// backend's secret, which never reaches the browser). The same page served from a second
// origin (http://localhost:PORT2, not listed) is refused by the browser's CORS check: the
// preflight answer has no Access-Control-Allow-Origin, the SDK rejects with a connection error,
// no completion ever reaches the page, and (seen through a counting pass-through in front of the
// gateway) only refused preflights ever arrived from it. On the allowed origin the page also
// reads a gateway error (403 model_not_allowed: CORS headers on errors) and the exposed
// x-request-id. A screenshot of the allowed page goes to the sandbox (KEYGATE_E2E_KEEP=1 keeps it).
//
// Skipped only when /usr/bin/chromium is missing outside CI (CI=true: it must run;
// scripts/install-deps installs Debian's chromium package).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  REPO_ROOT,
  ID_RE,
  sandbox,
  startGateway,
  readRootKey,
  api,
  createToken,
  createAccessKey,
  waitFor,
  redact,
  stopAll,
} from '../e2e/lib/harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const IN_CI = process.env.CI === 'true';
const SKIP =
  !fs.existsSync(CHROMIUM) && !IN_CI
    ? `${CHROMIUM} is missing (Debian's chromium package; scripts/install-deps installs it) — runs under CI=true`
    : false;

// The demo provider's answer (src/proxy/mock.c), streamed one word per chunk.
const DEMO_ANSWER =
  "Hello! I am keygate's built-in demo model. Point a provider at a real model to get real answers.";
const MIN_DELTAS = 5;
// Headers a page may read only when the gateway lists them in Access-Control-Expose-Headers.
const EXPOSED = [
  'x-request-id',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
];
const PAGE_TIMEOUT_MS = 20000; // the page's whole run, per origin

const OPENAI_DIR = path.join(REPO_ROOT, 'node_modules', 'openai');

// ==== The page and its backend ====

/** The HTML page: config inline, the SDK through an import map, results on window.__result. */
function pageHtml({ gateway, publishableKey }) {
  const cfg = JSON.stringify({ gateway, publishableKey }).replace(/</g, '\\u003c');
  // openai@4 (index.mjs) has exactly one bare import of its own: 'openai/_shims/auto/runtime',
  // which its package.json "exports" maps, under the "browser" condition, to
  // _shims/auto/runtime.mjs (which re-exports the web runtime: the browser's fetch, streams).
  const importMap = {
    imports: {
      openai: '/openai/index.mjs',
      'openai/_shims/auto/runtime': '/openai/_shims/auto/runtime.mjs',
    },
  };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>keygate browser test</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 24px; max-width: 900px; }
  section { border: 1px solid #ccc; border-radius: 6px; padding: 8px 14px; margin: 12px 0; }
  h2 { font-size: 15px; margin: 4px 0; }
  pre { white-space: pre-wrap; margin: 4px 0; }
  .ok { color: #0a6b2d; } .refused { color: #a4161a; }
</style>
<script type="importmap">${JSON.stringify(importMap)}</script>
<script type="application/json" id="cfg">${cfg}</script>
</head>
<body>
<h1>keygate in the browser</h1>
<p id="origin"></p>
<section id="pk"><h2>publishable key</h2><pre class="out">…</pre></section>
<section id="eph"><h2>ephemeral token (minted by this page's backend)</h2><pre class="out">…</pre></section>
<section id="denied"><h2>publishable key, model outside its allowlist</h2><pre class="out">…</pre></section>
<script type="module">
import OpenAI from 'openai';

const cfg = JSON.parse(document.getElementById('cfg').textContent);
const EXPOSED = ${JSON.stringify(EXPOSED)};
document.getElementById('origin').textContent = 'origin ' + location.origin + ' → gateway ' + cfg.gateway;

function describeError(e) {
  return {
    name: e?.constructor?.name ?? typeof e,
    message: String(e?.message ?? e),
    status: e?.status ?? null,
    code: e?.code ?? null,
    cause: e?.cause ? String(e.cause.message ?? e.cause) : null,
  };
}

function client(apiKey) {
  return new OpenAI({
    baseURL: cfg.gateway + '/v1',
    apiKey,
    dangerouslyAllowBrowser: true,
    maxRetries: 0,
    timeout: 10000,
  });
}

async function streamChat(label, apiKey) {
  const el = document.querySelector('#' + label + ' .out');
  const out = { deltas: [], text: '', chunks: 0, finishReason: null, requestId: null, headers: {}, error: null };
  try {
    const { data: stream, response } = await client(apiKey)
      .chat.completions.create({
        model: 'demo-chat',
        messages: [{ role: 'user', content: 'Say hello to the browser (' + label + ').' }],
        stream: true,
      })
      .withResponse();
    // Readable only if the gateway exposes them (Access-Control-Expose-Headers).
    out.requestId = response.headers.get('x-request-id');
    out.headers = Object.fromEntries(EXPOSED.map((h) => [h, response.headers.get(h)]));
    out.contentType = response.headers.get('content-type');
    for await (const chunk of stream) {
      out.chunks++;
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) {
        out.deltas.push(choice.delta.content);
        out.text += choice.delta.content;
        el.textContent = out.text;
      }
      if (choice?.finish_reason) out.finishReason = choice.finish_reason;
    }
    el.className = 'out ok';
    el.textContent = out.text + '\\n— ' + out.deltas.length + ' deltas, finish_reason ' + out.finishReason;
  } catch (e) {
    out.error = describeError(e);
    el.className = 'out refused';
    el.textContent = 'refused: ' + out.error.name + ': ' + out.error.message;
  }
  return out;
}

async function mint() {
  const r = await fetch('/mint', { method: 'POST' });
  if (!r.ok) throw new Error('POST /mint answered ' + r.status + ': ' + (await r.text()));
  return (await r.json()).token;
}

async function deniedModel() {
  const el = document.querySelector('#denied .out');
  const out = { error: null, completed: false };
  try {
    await client(cfg.publishableKey).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    out.completed = true;
    el.textContent = 'answered (unexpected)';
  } catch (e) {
    out.error = describeError(e);
    el.className = 'out refused';
    el.textContent = out.error.name + ' ' + out.error.status + ' ' + out.error.code;
  }
  return out;
}

const result = { origin: location.origin };
try {
  result.pk = await streamChat('pk', cfg.publishableKey);
  let token = null;
  try {
    token = await mint();
    result.ephTokenShape = typeof token === 'string' ? token.slice(0, 7) : typeof token;
  } catch (e) {
    result.mintError = describeError(e);
  }
  if (token) result.eph = await streamChat('eph', token);
  result.denied = await deniedModel();
} catch (e) {
  result.fatal = describeError(e);
}
result.done = true;
window.__result = result;
</script>
</body>
</html>
`;
}

/**
 * The page's own little backend: GET / (the page), GET /openai/* (the SDK's files, read from
 * node_modules/openai and nothing outside it), POST /mint (an ephemeral token, minted
 * server-side with the backend's access-key secret). Records what it served in `log`.
 */
function appServer({ gateway, mintVia = gateway, publishableKey, backendSecret }) {
  const log = { pages: 0, sdkFiles: 0, mints: [], errors: [] };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://app.invalid');
    try {
      if (req.method === 'GET' && url.pathname === '/') {
        log.pages++;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(pageHtml({ gateway, publishableKey }));
        return;
      }
      if (req.method === 'GET' && url.pathname.startsWith('/openai/')) {
        const rel = decodeURIComponent(url.pathname.slice('/openai/'.length));
        const file = path.resolve(OPENAI_DIR, rel);
        if (!file.startsWith(OPENAI_DIR + path.sep) || !/\.m?js$/.test(file) || !fs.existsSync(file)) {
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('not found');
          return;
        }
        log.sdkFiles++;
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
        res.end(fs.readFileSync(file));
        return;
      }
      if (req.method === 'POST' && url.pathname === '/mint') {
        const r = await fetch(`${mintVia}/v1/ephemeral-tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${backendSecret}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            ttl_seconds: 300,
            scopes: ['inference:chat'],
            allow: { models: ['demo-chat'], agents: [] },
          }),
          signal: AbortSignal.timeout(5000),
        });
        const text = await r.text();
        log.mints.push({ status: r.status, body: redact(text) });
        if (r.status !== 201 && r.status !== 200) {
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: `keygate answered ${r.status}` }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ token: JSON.parse(text).token }));
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    } catch (e) {
      log.errors.push(String(e?.stack ?? e));
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('error');
    }
  });
  return { log, ...loopbackLifecycle(server) };
}

/** listen() on an ephemeral 127.0.0.1 port (resolves the port) and close(), for a test server. */
function loopbackLifecycle(server) {
  return {
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(server.address().port));
      }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/**
 * A pass-through in front of the gateway (bodies streamed both ways) that records every request
 * reaching it — method, path, Origin — and the status keygate answered: the gateway's side of
 * what a page sent.
 */
function countingProxy(target) {
  const log = [];
  const server = http.createServer((req, res) => {
    const entry = { method: req.method, path: req.url, origin: req.headers.origin ?? null, status: null };
    log.push(entry);
    const up = http.request(
      { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        entry.status = ur.statusCode;
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
      }
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  return { log, ...loopbackLifecycle(server) };
}

// ==== The browser ====

/**
 * Opens `url` in a fresh page and waits (bounded) for window.__result. Records what the
 * browser itself saw: console messages, failed requests, every response, and — through a CDP
 * session — the CORS preflights (type "Preflight") and their answers' headers.
 */
async function runPage(context, url) {
  const page = await context.newPage();
  const seen = { console: [], pageErrors: [], failed: [], responses: [], preflights: new Map() };
  page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('requestfailed', (r) =>
    seen.failed.push({ method: r.method(), url: r.url(), error: r.failure()?.errorText ?? null })
  );
  page.on('response', (r) => seen.responses.push({ method: r.request().method(), url: r.url(), status: r.status() }));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.type === 'Preflight' || e.request.method === 'OPTIONS')
      seen.preflights.set(e.requestId, { url: e.request.url, origin: e.request.headers?.Origin ?? null });
  });
  cdp.on('Network.responseReceived', (e) => {
    const p = seen.preflights.get(e.requestId);
    if (p) {
      const headers = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
      Object.assign(p, { status: e.response.status, headers });
    }
  });
  await page.goto(url, { waitUntil: 'load', timeout: 10000 });
  let result;
  try {
    await page.waitForFunction(() => window.__result?.done === true, null, { timeout: PAGE_TIMEOUT_MS, polling: 50 });
    result = await page.evaluate(() => window.__result);
  } catch (e) {
    throw new Error(
      `${url}: no result within ${PAGE_TIMEOUT_MS} ms (${e.message})\nconsole:\n${seen.console.join('\n')}\n` +
        `page errors:\n${seen.pageErrors.join('\n')}\nfailed:\n${JSON.stringify(seen.failed, null, 1)}`
    );
  }
  return { page, result, seen, preflights: [...seen.preflights.values()] };
}

function explain(run) {
  return `\nresult: ${redact(JSON.stringify(run.result, null, 1))}\nconsole:\n${redact(run.seen.console.join('\n'))}` +
    `\npage errors: ${run.seen.pageErrors.join('\n')}\nfailed: ${JSON.stringify(run.seen.failed)}`;
}

// ==== The test ====

describe('browser: the openai SDK in headless Chromium against keygate', { timeout: 90000 }, () => {
  let sb, gw, root, pk, backend, app, appPort, foreign, foreignPort, proxy, proxyUrl, browserContext, chromium;

  before(async () => {
    if (SKIP) return;
    try {
      ({ chromium } = await import('playwright-core'));
    } catch (e) {
      throw new Error(`playwright-core is not installed (scripts/install-deps runs npm ci): ${e.message}`);
    }

    sb = sandbox('browser');
    gw = await startGateway(sb);
    root = readRootKey(sb);

    // The app backend's key: a normal access key; its secret stays on the server.
    backend = await createAccessKey(gw, root, 'browser-app-backend', {
      allow: { models: ['demo-chat'], agents: [] },
    });
    await waitFor(async () => (await api(gw, 'GET', '/v1/models', { key: backend.key })).status === 200, {
      timeoutMs: 2000,
      what: 'the backend key to authenticate',
    });

    // The publishable key: the browser's credential is its public id alone.
    const created = await createToken(gw, root, {
      token_type: 'access',
      name: 'browser-widget',
      allowed_domains: ['127.0.0.1'],
      allow: { models: ['demo-chat'], agents: [] },
      rate_limits: { rpm: 100, tpm: 100000 },
      budget: { limit_credits: 10 },
    });
    assert.match(created.id, ID_RE, 'the publishable key has a pk_ id');
    pk = created.id;

    app = appServer({ gateway: gw.url, publishableKey: pk, backendSecret: backend.key });
    appPort = await app.listen();
    // The disallowed origin's page reaches the gateway through a counting pass-through, so the
    // test also sees what arrived at the gateway from it (its backend mints directly).
    proxy = countingProxy(gw);
    proxyUrl = `http://127.0.0.1:${await proxy.listen()}`;
    foreign = appServer({ gateway: proxyUrl, mintVia: gw.url, publishableKey: pk, backendSecret: backend.key });
    foreignPort = await foreign.listen();

    // The CORS set follows the key index; wait (bounded) until 127.0.0.1 is in it.
    await waitFor(
      async () => {
        const r = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'OPTIONS',
          headers: { origin: `http://127.0.0.1:${appPort}`, 'access-control-request-method': 'POST' },
        });
        await r.arrayBuffer();
        return r.headers.get('access-control-allow-origin') !== null;
      },
      { timeoutMs: 2000, what: '127.0.0.1 to enter the CORS set' }
    );

    // A fresh, private profile in the sandbox; the flags keep Chromium off this closed network.
    browserContext = await chromium.launchPersistentContext(path.join(sb.dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 20000,
    });
  });

  after(async () => {
    await browserContext?.close().catch(() => {});
    await app?.close();
    await foreign?.close();
    await proxy?.close();
    await stopAll();
  });

  const ALLOWED = 'an allowed origin streams with the publishable key and with an ephemeral token its backend minted';
  test(ALLOWED, { skip: SKIP }, async (t) => {
    const run = await runPage(browserContext, `http://127.0.0.1:${appPort}/`);
    const { result } = run;
    const ctx = explain(run);

    assert.equal(result.fatal, undefined, `the page ran to its end${ctx}`);
    assert.ok(app.log.sdkFiles > 10, `the SDK's modules were loaded from the app server (${app.log.sdkFiles})${ctx}`);
    for (const label of ['pk', 'eph']) {
      const s = result[label];
      assert.ok(s, `the ${label} stream ran${ctx}`);
      assert.equal(s.error, null, `the ${label} stream succeeded${ctx}`);
      assert.ok(s.deltas.length >= MIN_DELTAS, `${label}: ≥ ${MIN_DELTAS} deltas, got ${s.deltas.length}${ctx}`);
      assert.equal(s.text, DEMO_ANSWER, `${label}: the demo model's answer`);
      assert.equal(s.finishReason, 'stop', `${label}: finish_reason`);
      assert.match(s.contentType ?? '', /^text\/event-stream/, `${label}: streamed as server-sent events`);
      assert.ok(s.requestId, `${label}: x-request-id is exposed to the page (Access-Control-Expose-Headers)${ctx}`);
    }
    // Every x-ratelimit-* header the gateway sends this key is readable by the page (SPEC §2:
    // exposed). Which ones it sends is asked outside the browser, with the same Origin.
    const direct = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${pk}`,
        origin: `http://127.0.0.1:${appPort}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    await direct.text();
    assert.equal(direct.status, 200, 'the publishable key works with its Origin outside the browser too');
    const sent = EXPOSED.filter((h) => direct.headers.get(h) !== null);
    for (const label of ['pk', 'eph'])
      for (const h of sent) assert.ok(result[label].headers[h] !== null, `${label}: the page can read ${h}${ctx}`);
    if (!sent.some((h) => h.startsWith('x-ratelimit-')))
      t.diagnostic('the gateway sent no x-ratelimit-* header on a streamed chat (SPEC §5 asks for them)');
    assert.notEqual(result.pk.requestId, result.eph.requestId, 'two requests, two request ids');

    // The ephemeral token came from the backend, which alone holds the parent secret.
    assert.equal(result.mintError, undefined, `the backend minted${ctx}`);
    assert.equal(result.ephTokenShape, 'kg_eph_', 'the browser received an ephemeral token');
    assert.equal(app.log.mints.length, 1, 'one mint');
    assert.ok([200, 201].includes(app.log.mints[0].status), `keygate minted: ${JSON.stringify(app.log.mints)}`);
    const html = await run.page.content();
    assert.ok(!html.includes(backend.key), 'the backend secret never reaches the page');

    // An error answer to a listed origin carries CORS headers too: the SDK reads the 403.
    assert.equal(result.denied.completed, false, 'a model outside the allowlist is not served');
    assert.equal(result.denied.error?.status, 403, `the page reads the 403 (not a CORS failure)${ctx}`);
    assert.equal(result.denied.error?.code, 'model_not_allowed', 'the page reads the error code');
    assert.equal(result.denied.error?.name, 'PermissionDeniedError', 'the SDK maps it to its 403 error');

    // The browser's preflights to the gateway were answered for this origin, echoing it.
    const preflights = run.preflights.filter((p) => p.url.startsWith(gw.url));
    if (preflights.length > 0) {
      for (const p of preflights) {
        assert.equal(p.status, 204, `preflight ${p.url} answered 204: ${JSON.stringify(p)}`);
        assert.equal(p.headers['access-control-allow-origin'], `http://127.0.0.1:${appPort}`, 'the origin is echoed');
      }
    }
    t.diagnostic(
      `pk: ${result.pk.deltas.length} deltas; eph: ${result.eph.deltas.length} deltas; ` +
        `preflights seen by CDP: ${preflights.length}; SDK files served: ${app.log.sdkFiles}`
    );

    const shot = path.join(sb.dir, 'allowed-origin.png');
    await run.page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 1000, 'a screenshot was taken');
    const kept = process.env.KEYGATE_E2E_KEEP === '1';
    t.diagnostic(`screenshot: ${shot}${kept ? '' : ' (removed at the end; KEYGATE_E2E_KEEP=1 keeps it)'}`);
    await run.page.close();
  });

  test("a disallowed origin is refused by the browser's CORS check", { skip: SKIP }, async (t) => {
    const origin = `http://localhost:${foreignPort}`;
    const run = await runPage(browserContext, `${origin}/`);
    const { result } = run;
    const ctx = explain(run);

    assert.equal(result.origin, origin, 'the page runs on the second origin');
    assert.equal(result.fatal, undefined, `the page ran to its end${ctx}`);
    // The SDK's calls reject as connection errors: the browser hid the gateway's answer.
    for (const label of ['pk', 'eph']) {
      const s = result[label];
      assert.ok(s, `the ${label} attempt ran${ctx}`);
      assert.ok(s.error, `the ${label} stream was refused${ctx}`);
      assert.equal(s.error.name, 'APIConnectionError', `${label}: the SDK saw a connection error${ctx}`);
      assert.equal(s.error.status, null, `${label}: no HTTP status reached the page`);
      assert.equal(s.deltas.length, 0, `${label}: no delta reached the page`);
      assert.equal(s.chunks, 0, `${label}: no chunk reached the page`);
    }
    assert.equal(result.denied.error?.name, 'APIConnectionError', 'the error probe is hidden from the page too');
    assert.equal(foreign.log.mints.length, 1, 'the backend minted (server side; the browser then was refused)');

    // The browser's own account: blocked by CORS policy, no completion answered to the page.
    const corsMessages = run.seen.console.filter((m) => /blocked by CORS policy/i.test(m) && m.includes(proxyUrl));
    assert.ok(corsMessages.length >= 2, `Chromium reports the CORS blocks${ctx}`);
    const gatewayResponses = run.seen.responses.filter((r) => r.url.startsWith(proxyUrl) && r.method !== 'OPTIONS');
    assert.deepEqual(gatewayResponses, [], 'no gateway answer (completion or error) was delivered to the page');
    const failed = run.seen.failed.filter((r) => r.url.startsWith(`${proxyUrl}/v1/chat/completions`));
    assert.ok(failed.length >= 2, `the browser failed the chat requests: ${JSON.stringify(run.seen.failed)}`);

    // The gateway's side: only preflights arrived from this page, each refused; the browser never
    // sent a request that carried a key, so no completion was ever served.
    assert.ok(proxy.log.length >= 1, 'the page tried to reach the gateway');
    for (const r of proxy.log) {
      assert.equal(r.method, 'OPTIONS', `only preflights reached the gateway: ${JSON.stringify(proxy.log)}`);
      assert.equal(r.origin, origin, 'with the page origin');
      assert.equal(r.status, 403, `each refused: ${JSON.stringify(proxy.log)}`);
    }

    // The preflights, as the browser saw them: refused, and without Access-Control-Allow-Origin.
    const preflights = run.preflights.filter((p) => p.url.startsWith(proxyUrl));
    for (const p of preflights) {
      if (p.status === undefined) continue; // CDP may report a preflight without its answer
      assert.equal(p.headers['access-control-allow-origin'], undefined, `no ACAO for ${origin}: ${JSON.stringify(p)}`);
      assert.notEqual(p.status, 204, `the preflight is not accepted: ${JSON.stringify(p)}`);
    }

    // The same preflight, asked directly: 403 origin_not_allowed, no CORS headers.
    const direct = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-stainless-os',
      },
    });
    const body = await direct.json().catch(() => null);
    assert.equal(direct.status, 403, 'the gateway refuses the preflight');
    assert.equal(body?.error?.code, 'origin_not_allowed');
    assert.equal(direct.headers.get('access-control-allow-origin'), null, 'no Access-Control-Allow-Origin');
    assert.match(direct.headers.get('vary') ?? '', /origin/i, 'Vary: Origin');

    // And the key itself, sent with that Origin outside a browser: refused by the origin check.
    const forged = await api(gw, 'POST', '/v1/chat/completions', {
      key: pk,
      headers: { origin },
      body: { model: 'demo-chat', messages: [{ role: 'user', content: 'hi' }] },
    });
    assert.equal(forged.status, 403, `the publishable key from ${origin}: ${forged.text}`);
    assert.equal(forged.json?.error?.code, 'origin_not_allowed');
    assert.equal(forged.headers.get('access-control-allow-origin'), null, 'no CORS headers for an unlisted origin');

    t.diagnostic(
      `CORS blocks reported by Chromium: ${corsMessages.length}; preflights seen by CDP: ${preflights.length} ` +
        `(${preflights.map((p) => p.status).join(', ')}); requests at the gateway: ` +
        proxy.log.map((r) => `${r.method} ${r.path} → ${r.status}`).join(', ')
    );
    await run.page.close();
  });
});
