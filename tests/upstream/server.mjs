// SPDX-License-Identifier: Apache-2.0
//
// A fake OpenAI-compatible provider for keygate's tests, written from OpenAI's documented wire
// formats. Node's built-ins only. One instance serves every test of a file: behaviour is chosen
// per request (fault injection, stream delay), and every request is recorded.
//
//   import { startUpstream } from '../upstream/server.mjs';
//   const up = await startUpstream();            // http://127.0.0.1:<port>, key sk-upstream-test
//   ... provider base_url: `${up.url}/v1` ...
//   up.received / up.last() / up.reset() / await up.close()
//
// As a program: node tests/upstream/server.mjs [--port 0] [--host 127.0.0.1] [--api-key K]
//   [--delay-ms 30] [--tls-key FILE --tls-cert FILE] [--log]
// prints `upstream listening on http://127.0.0.1:PORT` once it listens.
//
// Routes (the provider's base URL is `${url}/v1`):
//   POST /v1/chat/completions   chat.completion / chat.completion.chunk SSE
//   POST /v1/completions        text_completion (also streamed)
//   POST /v1/embeddings         list of embedding, float or base64 (float32 LE)
//   GET  /v1/models, GET /v1/models/{id}
//   GET  /__received  POST /__reset  GET /__last  POST /__fault   (control: not recorded, no auth)
//
// Fault injection, first found wins: request header `x-test-fault`, top-level body member
// `x_test_fault` (a gateway forwards unknown body members but may drop unknown headers), then a
// queued fault (setFault() / POST /__fault). Values:
//   slow-headers:<ms>   wait <ms> before answering (headers included), then answer normally
//   close-mid-stream    stream: send 2 SSE events then destroy the socket;
//                       non-stream: send headers and half of the body, then destroy the socket
//   stall-mid-stream    stream: send 2 SSE events then send nothing more until the peer leaves
//   status:<code>       answer <code> with an OpenAI error JSON
//   split-events        stream: write each SSE event in two halves, 5 ms apart (a relay sees
//                       events cut anywhere, with CRLF line ends); non-stream: write the body in two
//                       halves, 20 ms apart
//   reset               destroy the socket at once (TCP RST), no response
// Stream delay between events: header `x-test-delay-ms`, else body `x_test_delay_ms`, else
// opts.delayMs (30).

import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const DEFAULT_API_KEY = 'sk-upstream-test';
export const DEFAULT_DELAY_MS = 30;
export const EMBEDDING_DIMS = 8;
export const DEFAULT_MODELS = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-3.5-turbo-instruct',
  'text-embedding-3-small',
  'text-embedding-3-large',
];

/** Headers put on every answer, so tests can prove which ones the gateway drops or keeps. */
export const UPSTREAM_RESPONSE_HEADERS = Object.freeze({
  'set-cookie': 'upstream=1',
  'openai-organization': 'upstream-org',
  'openai-project': 'proj_x',
  'x-ratelimit-limit-requests': '5000',
  'x-ratelimit-remaining-requests': '4999',
  'openai-processing-ms': '5',
  'x-request-id': 'req_upstream',
  'x-upstream-marker': 'yes',
});

const SYSTEM_FINGERPRINT = 'fp_keygate_upstream';
const MODEL_CREATED = 1686935002;

// ==== Deterministic content ====

/** Rough token count of a text, as the upstream reports it: ceil(length / 4), at least 1. */
export function countTokens(text) {
  return Math.max(1, Math.ceil(String(text).length / 4));
}

function partText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (typeof p === 'string' ? p : p && typeof p.text === 'string' ? p.text : ''))
      .join('');
  }
  return '';
}

/** The text of all messages, as counted for prompt_tokens (contents joined by "\n"). */
export function messagesText(messages) {
  return (Array.isArray(messages) ? messages : []).map((m) => partText(m && m.content)).join('\n');
}

/** The chat answer: "echo: <text of the last user message>". */
export function chatAnswer(messages) {
  const users = (Array.isArray(messages) ? messages : []).filter((m) => m && m.role === 'user');
  return `echo: ${users.length ? partText(users[users.length - 1].content) : ''}`;
}

/** The pieces an answer is streamed in: one per word, words after the first keep their space. */
export function answerPieces(answer) {
  return answer.split(' ').map((w, i) => (i === 0 ? w : ` ${w}`));
}

/**
 * The embedding of one input: `dims` floats k/128 (k in -128..127) from SHA-256 of the input
 * (a string, or a token array as JSON). Exactly representable as float32, so the float and the
 * base64 (float32 LE) answers decode to the same numbers.
 */
export function embeddingFor(input, dims = EMBEDDING_DIMS) {
  const text = typeof input === 'string' ? input : JSON.stringify(input);
  const out = [];
  let block = Buffer.alloc(0);
  for (let i = 0; out.length < dims; i++) {
    if (block.length === 0) block = crypto.createHash('sha256').update(`${i}:${text}`).digest();
    out.push((block[0] - 128) / 128);
    block = block.subarray(1);
  }
  return out;
}

/** float32 little-endian bytes of a vector, base64: OpenAI's `encoding_format: "base64"`. */
export function embeddingToBase64(vec) {
  const buf = Buffer.alloc(vec.length * 4);
  vec.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

/** Inverse of embeddingToBase64. */
export function embeddingFromBase64(b64) {
  const buf = Buffer.from(b64, 'base64');
  const out = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

// ==== Errors ====

const ERROR_DEFAULTS = {
  400: ['invalid_request_error', null, 'Bad request.'],
  401: ['invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.'],
  403: ['permission_error', 'unsupported_country_region_territory', 'Forbidden.'],
  404: ['invalid_request_error', 'not_found', 'Not found.'],
  408: ['invalid_request_error', 'request_timeout', 'Request timed out.'],
  409: ['invalid_request_error', 'conflict', 'Conflict.'],
  413: ['invalid_request_error', 'payload_too_large', 'Payload too large.'],
  422: ['invalid_request_error', null, 'Unprocessable entity.'],
  429: ['requests', 'rate_limit_exceeded', 'Rate limit reached for requests.'],
  500: ['server_error', null, 'The server had an error while processing your request. Sorry about that!'],
  502: ['server_error', 'bad_gateway', 'Bad gateway.'],
  503: ['server_error', 'engine_overloaded', 'The engine is currently overloaded, please try again later.'],
  504: ['server_error', 'timeout', 'Gateway timeout.'],
};

/** An OpenAI error body: all four members always present. */
export function errorBody(status, overrides = {}) {
  const [type, code, message] = ERROR_DEFAULTS[status] ||
    (status >= 500 ? ['server_error', null, 'Server error.'] : ['invalid_request_error', null, 'Request failed.']);
  return {
    error: {
      message: overrides.message ?? message,
      type: overrides.type ?? type,
      param: overrides.param ?? null,
      code: overrides.code === undefined ? code : overrides.code,
    },
  };
}

// ==== Server ====

function parseFault(spec) {
  if (spec == null || spec === '') return null;
  const s = String(spec).trim();
  let m;
  if ((m = /^slow-headers:(\d+)$/.exec(s))) return { kind: 'slow-headers', ms: Number(m[1]), spec: s };
  if ((m = /^status:(\d{3})$/.exec(s))) return { kind: 'status', status: Number(m[1]), spec: s };
  if (s === 'close-mid-stream' || s === 'stall-mid-stream' || s === 'reset' || s === 'split-events')
    return { kind: s, spec: s };
  return { kind: 'unknown', spec: s };
}

function loadPem(v) {
  if (v == null) return v;
  if (Buffer.isBuffer(v)) return v;
  const s = String(v);
  return s.includes('-----BEGIN') ? s : fs.readFileSync(s);
}

/**
 * Start the fake provider.
 * @param {object} [opts]
 * @param {string} [opts.host='127.0.0.1']
 * @param {number} [opts.port=0]
 * @param {string|null} [opts.apiKey='sk-upstream-test']  expected `Authorization: Bearer`; null: no check
 * @param {{key, cert, ca?}} [opts.tls]  PEM text, Buffer, or file path each: serve https
 * @param {number} [opts.delayMs=30]    default pause between streamed events
 * @param {string[]} [opts.models]      ids served by /v1/models (default DEFAULT_MODELS)
 * @param {number} [opts.keepAliveTimeoutMs=5000]
 * @param {boolean} [opts.log=false]    one line per request on stderr
 */
export async function startUpstream(opts = {}) {
  const host = opts.host ?? '127.0.0.1';
  const apiKey = opts.apiKey === undefined ? DEFAULT_API_KEY : opts.apiKey;
  const defaultDelay = opts.delayMs ?? DEFAULT_DELAY_MS;
  const models = [...(opts.models ?? DEFAULT_MODELS)];
  const received = [];
  const queuedFaults = []; // {fault, times, path}
  const sockets = new Set();
  const aborters = new Set();
  let seq = 0;
  let idSeq = 0;
  let connections = 0;

  const handler = (req, res) => {
    const chunks = [];
    let ended = false;
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      ended = true;
      dispatch(req, res, Buffer.concat(chunks)).catch((err) => {
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, errorBody(500, { message: String(err && err.stack) }));
        else res.destroy();
      });
    });
    req.on('close', () => {
      if (!ended) record(req, Buffer.concat(chunks), { incomplete: true });
    });
  };

  const server = opts.tls
    ? https.createServer({ key: loadPem(opts.tls.key), cert: loadPem(opts.tls.cert), ca: loadPem(opts.tls.ca) }, handler)
    : http.createServer(handler);
  server.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 5000;
  server.on('connection', (socket) => {
    connections++;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', () => {}); // a client refusing our certificate is a test case, not a crash

  function record(req, body, extra = {}) {
    const u = new URL(req.url, 'http://upstream.invalid');
    let json;
    try {
      json = body.length ? JSON.parse(body.toString('utf8')) : undefined;
    } catch {
      json = undefined;
    }
    const rec = {
      seq: ++seq,
      time: Date.now(),
      method: req.method,
      url: req.url,
      path: u.pathname,
      search: u.search,
      query: Object.fromEntries(u.searchParams),
      headers: { ...req.headers },
      headersDistinct: { ...req.headersDistinct },
      rawHeaders: [...req.rawHeaders],
      body: body.toString('utf8'),
      bodyBase64: body.toString('base64'),
      json,
      tls: Boolean(req.socket.encrypted),
      servername: req.socket.servername || null,
      remotePort: req.socket.remotePort,
      fault: null,
      status: null,
      finished: false,
      closedEarly: false,
      ...extra,
    };
    received.push(rec);
    return rec;
  }

  function setCommonHeaders(res) {
    for (const [k, v] of Object.entries(UPSTREAM_RESPONSE_HEADERS)) res.setHeader(k, v);
  }

  function sendJson(res, status, obj, extraHeaders = {}) {
    const body = Buffer.from(JSON.stringify(obj));
    setCommonHeaders(res);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...extraHeaders });
    res.end(body);
  }

  function takeQueuedFault(p) {
    const i = queuedFaults.findIndex((f) => !f.path || f.path === p);
    if (i < 0) return null;
    const f = queuedFaults[i];
    if (--f.times <= 0) queuedFaults.splice(i, 1);
    return f.fault;
  }

  async function dispatch(req, res, body) {
    const u = new URL(req.url, 'http://upstream.invalid');
    const p = u.pathname;

    // Control endpoints: no auth, not recorded.
    if (p === '/__received' && req.method === 'GET') return sendJson(res, 200, received);
    if (p === '/__last' && req.method === 'GET') return sendJson(res, 200, received[received.length - 1] ?? null);
    if (p === '/__reset' && req.method === 'POST') {
      reset();
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/__fault' && req.method === 'POST') {
      let spec = {};
      try {
        spec = JSON.parse(body.toString('utf8') || '{}');
      } catch {
        return sendJson(res, 400, errorBody(400, { message: 'invalid JSON' }));
      }
      if (spec.fault) setFault(spec.fault, { times: spec.times, path: spec.path });
      else clearFaults();
      return sendJson(res, 200, { ok: true, queued: queuedFaults.length });
    }

    const rec = record(req, body);
    const ac = new AbortController();
    aborters.add(ac);
    res.on('finish', () => {
      rec.finished = true;
    });
    res.on('close', () => {
      if (!res.writableFinished) rec.closedEarly = true;
      ac.abort();
      aborters.delete(ac);
    });
    const origWriteHead = res.writeHead;
    res.writeHead = function (status, ...rest) {
      rec.status = status;
      return origWriteHead.call(this, status, ...rest);
    };
    if (opts.log) process.stderr.write(`upstream: ${req.method} ${req.url}\n`);

    // Auth: the gateway must present the provider credential.
    if (apiKey != null) {
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
      if (!m || m[1].trim() !== apiKey) {
        const shown = m ? m[1].trim() : '';
        return sendJson(
          res,
          401,
          errorBody(401, {
            message: m
              ? `Incorrect API key provided: ${shown.length > 8 ? `${shown.slice(0, 3)}***${shown.slice(-4)}` : '***'}.`
              : "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code: 'invalid_api_key',
          }),
          { 'www-authenticate': 'Bearer' },
        );
      }
    }

    let parsed;
    if (req.method === 'POST' && body.length) {
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        return sendJson(
          res,
          400,
          errorBody(400, {
            message:
              "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
          }),
        );
      }
    }
    const bodyObj = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};

    const faultSpec = req.headers['x-test-fault'] ?? bodyObj.x_test_fault ?? takeQueuedFault(p);
    const fault = parseFault(faultSpec);
    rec.fault = fault ? fault.spec : null;
    const delayHeader = req.headers['x-test-delay-ms'] ?? bodyObj.x_test_delay_ms;
    const delayMs = delayHeader != null && Number.isFinite(Number(delayHeader)) ? Number(delayHeader) : defaultDelay;

    if (fault) {
      if (fault.kind === 'reset') {
        rec.closedEarly = true;
        if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
        else req.socket.destroy();
        return;
      }
      if (fault.kind === 'slow-headers') {
        try {
          await sleep(fault.ms, undefined, { signal: ac.signal });
        } catch {
          return; // the peer left, or close()
        }
      }
      if (fault.kind === 'status') return sendJson(res, fault.status, errorBody(fault.status));
      if (fault.kind === 'unknown') {
        return sendJson(res, 400, errorBody(400, { message: `unknown x-test-fault: ${fault.spec}`, code: 'invalid_value' }));
      }
    }

    const ctx = { req, res, rec, body: bodyObj, fault, delayMs, signal: ac.signal };
    const route = `${req.method} ${p}`;
    if (route === 'POST /v1/chat/completions') return chat(ctx);
    if (route === 'POST /v1/completions') return completions(ctx);
    if (route === 'POST /v1/embeddings') return embeddings(ctx);
    if (route === 'GET /v1/models') {
      return answer(ctx, 200, {
        object: 'list',
        data: models.map((id) => ({ id, object: 'model', created: MODEL_CREATED, owned_by: 'system' })),
      });
    }
    if (req.method === 'GET' && p.startsWith('/v1/models/')) {
      const id = decodeURIComponent(p.slice('/v1/models/'.length));
      if (!models.includes(id)) {
        return sendJson(
          res,
          404,
          errorBody(404, { message: `The model '${id}' does not exist`, param: 'model', code: 'model_not_found' }),
        );
      }
      return answer(ctx, 200, { id, object: 'model', created: MODEL_CREATED, owned_by: 'system' });
    }
    return sendJson(res, 404, errorBody(404, { message: `Invalid URL (${req.method} ${p})`, code: null }));
  }

  /** A JSON answer, honouring close-mid-stream (half the body, then the socket dies) and
   * split-events (the body in two halves, 20 ms apart: the gateway reads it in two pieces). */
  function answer(ctx, status, obj) {
    if (ctx.fault && ctx.fault.kind === 'split-events') {
      const body = Buffer.from(JSON.stringify(obj));
      setCommonHeaders(ctx.res);
      ctx.res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
      ctx.res.write(body.subarray(0, Math.floor(body.length / 2)));
      setTimeout(() => ctx.res.end(body.subarray(Math.floor(body.length / 2))), 20);
      return;
    }
    if (ctx.fault && ctx.fault.kind === 'close-mid-stream') {
      const body = Buffer.from(JSON.stringify(obj));
      setCommonHeaders(ctx.res);
      ctx.res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
      ctx.rec.closedEarly = true;
      ctx.res.write(body.subarray(0, Math.floor(body.length / 2)), () => ctx.req.socket.destroy());
      return;
    }
    sendJson(ctx.res, status, obj);
  }

  function missing(ctx, param) {
    sendJson(
      ctx.res,
      400,
      errorBody(400, { message: `Missing required parameter: '${param}'.`, param, code: 'missing_required_parameter' }),
    );
  }

  /** Write SSE events one by one, `delayMs` apart, honouring the stream faults. */
  async function stream(ctx, events) {
    const { res, req, fault, delayMs, signal } = ctx;
    setCommonHeaders(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    });
    res.flushHeaders();
    const all = [...events.map((e) => `data: ${JSON.stringify(e)}\n\n`), 'data: [DONE]\n\n'];
    for (let i = 0; i < all.length; i++) {
      if (i > 0 && delayMs > 0) {
        try {
          await sleep(delayMs, undefined, { signal });
        } catch {
          return;
        }
      }
      if (res.destroyed) return;
      if (fault && (fault.kind === 'close-mid-stream' || fault.kind === 'stall-mid-stream') && i === 2) {
        if (fault.kind === 'close-mid-stream') {
          if (req.socket.writableLength > 0) await new Promise((resolve) => req.socket.once('drain', resolve));
          ctx.rec.closedEarly = true;
          req.socket.destroy();
        }
        else await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        return;
      }
      if (fault && fault.kind === 'split-events') {
        const ev = all[i].replace(/\n/g, '\r\n');
        const half = Math.floor(ev.length / 2);
        res.write(ev.slice(0, half));
        try {
          await sleep(5, undefined, { signal });
        } catch {
          return;
        }
        if (res.destroyed) return;
        res.write(ev.slice(half));
        continue;
      }
      res.write(all[i]);
    }
    res.end();
  }

  function limitPieces(pieces, body) {
    const max = body.max_completion_tokens ?? body.max_tokens;
    if (Number.isInteger(max) && max >= 0 && max < pieces.length) return { pieces: pieces.slice(0, max), finish: 'length' };
    return { pieces, finish: 'stop' };
  }

  function usageOf(promptTokens, completionTokens) {
    return {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
  }

  function chat(ctx) {
    const b = ctx.body;
    if (typeof b.model !== 'string' || !b.model) return missing(ctx, 'model');
    if (!Array.isArray(b.messages)) return missing(ctx, 'messages');
    const id = `chatcmpl-upstream${++idSeq}`;
    const created = Math.floor(Date.now() / 1000);
    const promptTokens = countTokens(messagesText(b.messages));
    const { pieces, finish } = limitPieces(answerPieces(chatAnswer(b.messages)), b);
    const usage = usageOf(promptTokens, pieces.length);
    const base = { id, object: 'chat.completion.chunk', created, model: b.model, service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT };
    if (b.stream === true) {
      const withUsage = Boolean(b.stream_options && b.stream_options.include_usage === true);
      const u = withUsage ? { usage: null } : {};
      const choice = (delta, finishReason) => [{ index: 0, delta, logprobs: null, finish_reason: finishReason }];
      const events = [
        { ...base, choices: choice({ role: 'assistant', content: '', refusal: null }, null), ...u },
        ...pieces.map((c) => ({ ...base, choices: choice({ content: c }, null), ...u })),
        { ...base, choices: choice({}, finish), ...u },
      ];
      if (withUsage) events.push({ ...base, choices: [], usage });
      return stream(ctx, events);
    }
    return answer(ctx, 200, {
      id,
      object: 'chat.completion',
      created,
      model: b.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: pieces.join(''), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: finish,
        },
      ],
      usage,
      service_tier: 'default',
      system_fingerprint: SYSTEM_FINGERPRINT,
    });
  }

  function completions(ctx) {
    const b = ctx.body;
    if (typeof b.model !== 'string' || !b.model) return missing(ctx, 'model');
    if (b.prompt === undefined) return missing(ctx, 'prompt');
    const prompt = Array.isArray(b.prompt) && b.prompt.every((x) => typeof x === 'string') ? b.prompt.join('\n') : typeof b.prompt === 'string' ? b.prompt : JSON.stringify(b.prompt);
    const id = `cmpl-upstream${++idSeq}`;
    const created = Math.floor(Date.now() / 1000);
    const { pieces, finish } = limitPieces(answerPieces(`echo: ${prompt}`), b);
    const usage = { prompt_tokens: countTokens(prompt), completion_tokens: pieces.length, total_tokens: countTokens(prompt) + pieces.length };
    const base = { id, object: 'text_completion', created, model: b.model, system_fingerprint: SYSTEM_FINGERPRINT };
    if (b.stream === true) {
      const withUsage = Boolean(b.stream_options && b.stream_options.include_usage === true);
      const u = withUsage ? { usage: null } : {};
      const choice = (text, finishReason) => [{ text, index: 0, logprobs: null, finish_reason: finishReason }];
      const events = [...pieces.map((t) => ({ ...base, choices: choice(t, null), ...u })), { ...base, choices: choice('', finish), ...u }];
      if (withUsage) events.push({ ...base, choices: [], usage });
      return stream(ctx, events);
    }
    return answer(ctx, 200, { ...base, choices: [{ text: pieces.join(''), index: 0, logprobs: null, finish_reason: finish }], usage });
  }

  function embeddings(ctx) {
    const b = ctx.body;
    if (typeof b.model !== 'string' || !b.model) return missing(ctx, 'model');
    if (b.input === undefined || b.input === null || b.input === '') return missing(ctx, 'input');
    // string | string[] | number[] (one token array) | number[][]
    let inputs;
    if (typeof b.input === 'string') inputs = [b.input];
    else if (Array.isArray(b.input) && b.input.length && b.input.every((x) => typeof x === 'number')) inputs = [b.input];
    else if (Array.isArray(b.input)) inputs = b.input;
    else {
      return sendJson(ctx.res, 400, errorBody(400, { message: "'input' must be a string or an array", param: 'input', code: 'invalid_value' }));
    }
    const dims = Number.isInteger(b.dimensions) && b.dimensions > 0 ? b.dimensions : EMBEDDING_DIMS;
    const base64 = b.encoding_format === 'base64';
    let promptTokens = 0;
    const data = inputs.map((input, index) => {
      promptTokens += typeof input === 'string' ? countTokens(input) : Array.isArray(input) ? input.length : 1;
      const vec = embeddingFor(input, dims);
      return { object: 'embedding', index, embedding: base64 ? embeddingToBase64(vec) : vec };
    });
    return answer(ctx, 200, { object: 'list', data, model: b.model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } });
  }

  // ==== Handle ====

  function reset() {
    received.length = 0;
    queuedFaults.length = 0;
  }

  function setFault(fault, { times = Infinity, path: onlyPath } = {}) {
    queuedFaults.push({ fault: String(fault), times: times ?? Infinity, path: onlyPath ?? null });
  }

  function clearFaults() {
    queuedFaults.length = 0;
  }

  function last() {
    return received[received.length - 1];
  }

  /**
   * The first recorded request that matches `pred` (checked every 10 ms, so a predicate on a
   * field that changes later, such as `closedEarly` or `finished`, works too); rejects after
   * timeoutMs.
   */
  async function waitForRequest(pred = () => true, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = received.find(pred);
      if (found) return found;
      if (Date.now() >= deadline) throw new Error(`upstream: no matching request within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  let closing;
  function close() {
    if (closing) return closing;
    closing = new Promise((resolve) => {
      for (const ac of aborters) ac.abort();
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
      if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
    });
    return closing;
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = server.address().port;
  const protocol = opts.tls ? 'https' : 'http';
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `${protocol}://${urlHost}:${port}`,
    baseURL: `${protocol}://${urlHost}:${port}/v1`,
    host,
    port,
    protocol,
    apiKey,
    server,
    received,
    get connections() {
      return connections;
    },
    last,
    reset,
    setFault,
    clearFaults,
    waitForRequest,
    close,
  };
}

// ==== Command line ====

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') o.port = Number(next());
    else if (a === '--host') o.host = next();
    else if (a === '--api-key') o.apiKey = next();
    else if (a === '--no-auth') o.apiKey = null;
    else if (a === '--delay-ms') o.delayMs = Number(next());
    else if (a === '--tls-key') o.tlsKey = next();
    else if (a === '--tls-cert') o.tlsCert = next();
    else if (a === '--log') o.log = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  if ((o.tlsKey == null) !== (o.tlsCert == null)) throw new Error('--tls-key and --tls-cert go together');
  if (o.tlsKey) o.tls = { key: o.tlsKey, cert: o.tlsCert };
  delete o.tlsKey;
  delete o.tlsCert;
  return o;
}

const isMain = (() => {
  try {
    return process.argv[1] && fs.realpathSync(path.resolve(process.argv[1])) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (isMain) {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`server.mjs: ${e.message}\n`);
    process.exit(2);
  }
  const up = await startUpstream(o);
  process.stdout.write(`upstream listening on ${up.url}\n`);
  const stop = () => up.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
