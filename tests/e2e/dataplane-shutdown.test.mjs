// SPDX-License-Identifier: Apache-2.0
//
// SIGTERM while a client is streaming through the gateway (docs/architecture.md "Shutdown"): the
// listeners close at once (new connections refused), the streams in flight run to their end
// (every chunk, then [DONE]), and only then does the process exit 0. A stream still running when
// the drain time (limits.drain_ms) is up is cut, and its usage is recorded all the same.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import OpenAI from 'openai';

import {
  connectRefused,
  createAccessKey,
  readRootKey,
  readTimed,
  sseData,
  startGateway,
  startWithUpstream,
  stopAll,
  waitFor,
} from './lib/harness.mjs';
import { answerPieces, chatAnswer, startUpstream } from '../upstream/server.mjs';

const DELAY = 100; // ms between the upstream's events
const CONTENT = 'please keep streaming while the gateway is asked to stop now';

describe('SIGTERM during a stream', () => {
  let up;
  let sb;
  let gw;
  let key;

  before(async () => {
    up = await startUpstream();
    ({ sb, gw } = await startWithUpstream('dp-shutdown', up));
    key = await createAccessKey(gw, readRootKey(sb), 'shutdown');
  });
  after(async () => {
    await stopAll();
    await up?.close();
  });

  test('the streams in flight complete, new connections are refused, exit 0 after the last chunk', async () => {
    const messages = [{ role: 'user', content: CONTENT }];
    const expected = chatAnswer(messages);
    const nEvents = answerPieces(expected).length + 3; // role, words, finish, [DONE]

    // 1. The openai SDK, streaming.
    const client = new OpenAI({
      apiKey: key.key,
      baseURL: `${gw.url}/v1`,
      maxRetries: 0,
      timeout: 20000,
      fetch: globalThis.fetch,
    });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      stream: true,
      x_test_delay_ms: DELAY,
    });
    const sdk = { chunks: [], finish: null, endedAt: 0 };
    let firstChunk;
    const gotFirst = new Promise((resolve) => (firstChunk = resolve));
    const sdkDone = (async () => {
      for await (const chunk of stream) {
        sdk.chunks.push(chunk);
        if (chunk.choices[0]?.finish_reason) sdk.finish = chunk.choices[0].finish_reason;
        firstChunk();
      }
      sdk.endedAt = performance.now();
    })();

    // 2. The same with raw fetch, to see the literal SSE ending.
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages, stream: true, x_test_delay_ms: DELAY }),
      signal: AbortSignal.timeout(20000),
    });
    assert.equal(res.status, 200);
    const rawDone = readTimed(res).then((r) => ({ ...r, endedAt: performance.now() }));

    await gotFirst;
    const signalledAt = performance.now();
    gw.proc.kill('SIGTERM');

    // New connections are refused shortly after the signal, while the streams still run. (While
    // the SO_REUSEPORT listeners close one by one, a connect may still be accepted, or reset.)
    const refused = await waitFor(async () => connectRefused(gw.port).catch(() => false), {
      timeoutMs: 1000,
      intervalMs: 20,
      what: 'the port to refuse new connections',
    });
    const refusedAt = performance.now();
    assert.ok(refused.value);
    assert.equal(sdk.endedAt, 0, 'new connections were refused while the SDK stream was still running');

    const exitPromise = gw.exited.then((e) => ({ ...e, at: performance.now() }));
    await sdkDone;
    const raw = await rawDone;

    // Every chunk, then the end of the stream.
    const text = sdk.chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, expected, 'the SDK received every word');
    assert.equal(sdk.finish, 'stop');
    assert.equal(sdk.chunks.length, nEvents - 1, 'every chunk ([DONE] ends the iteration)');
    const data = sseData(raw.text);
    assert.equal(data.length, nEvents, 'the raw stream got every event');
    assert.equal(data.at(-1), '[DONE]', 'and ends with data: [DONE]');
    assert.ok(
      sdk.endedAt - signalledAt >= (nEvents - 3) * DELAY * 0.7,
      `the stream kept going after SIGTERM (${(sdk.endedAt - signalledAt).toFixed(0)} ms)`
    );
    assert.ok(refusedAt < sdk.endedAt, 'the listener closed before the stream ended');

    let timer;
    const exit = await Promise.race([
      exitPromise,
      new Promise((resolve) => (timer = setTimeout(() => resolve(null), 10000))),
    ]);
    clearTimeout(timer);
    assert.ok(exit, `keygate serve exits after the streams end; log:\n${gw.output}`);
    assert.equal(exit.code, 0, `exit status 0; log:\n${gw.output}`);
    assert.equal(exit.signal, null);
    assert.ok(exit.at >= Math.max(sdk.endedAt, raw.endedAt) - 50, 'the process outlived its streams');
    assert.ok(exit.at - Math.max(sdk.endedAt, raw.endedAt) < 5000, 'and exited promptly after them');
    assert.ok(await connectRefused(gw.port), 'the port stays closed');
  });

  test('a stream still running when the drain time is up is cut, and its usage recorded', async () => {
    const { sb: sb2, gw: gw2 } = await startWithUpstream('dp-drain', up);
    await gw2.stop();
    const cfg = fs.readFileSync(sb2.config, 'utf8').replace(/^limits: \{/m, 'limits: {drain_ms: 300, ');
    fs.writeFileSync(sb2.config, cfg);
    const gw3 = await startGateway(sb2, { env: { TEST_UPSTREAM_KEY: up.apiKey } });
    const k = await createAccessKey(gw3, readRootKey(sb2), 'drained');
    const res = await fetch(`${gw3.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: CONTENT }], stream: true, x_test_delay_ms: 1000 }),
      signal: AbortSignal.timeout(20000),
    });
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const reading = readTimed(res).catch(() => null);
    gw3.proc.kill('SIGTERM');
    const exit = await gw3.exited;
    assert.equal(exit.code, 0, gw3.output);
    await reading;
    const rows = execFileSync('sqlite3', [sb2.db, `SELECT status, estimated FROM usage WHERE request_id = '${requestId}';`], {
      encoding: 'utf8',
    }).trim();
    assert.equal(rows, '200|1', 'the cut stream has its record: status as sent, billed its reservation');
  });
});
