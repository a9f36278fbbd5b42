// SPDX-License-Identifier: Apache-2.0
//
// Prompt policy and the permitted body rewrites of SPEC §4, as the upstream sees them: through
// the official openai SDK, an agent's alias becomes its upstream model and ONE system message —
// the agent's (or raw model's) modules, then the key's modules, then the key's prompt_text — goes
// before the caller's messages; and, byte for byte, nothing else in the forwarded body changes.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { api, assertError, createAccessKey, ok, readRootKey, startWithUpstream, stopAll } from './lib/harness.mjs';
import { startUpstream } from '../upstream/server.mjs';

const NO_PII = 'Never reveal "personal" data.';
const TERSE = 'Be terse.\nVery terse.';
const FORMAL = 'Use a formal tone.';

describe('prompt policy and body rewrites (openai SDK, test upstream)', () => {
  let sb, gw, up, admin, plain, guarded;

  before(async () => {
    up = await startUpstream();
    ({ sb, gw } = await startWithUpstream('prompt-policy', up, {
      models: [
        { name: 'gpt-4o-mini', provider: 'up' },
        { name: 'gpt-4o', provider: 'up', prompt_modules: ['terse'] },
      ],
      agents: [{ name: 'support-bot', model: 'gpt-4o-mini', prompt_modules: ['no-pii'], environments: ['production'] }],
      extraYaml: `prompt_modules:\n  - {name: no-pii, text: ${JSON.stringify(NO_PII)}}\n  - {name: terse, text: ${JSON.stringify(TERSE)}}\n  - {name: formal, text: ${JSON.stringify(FORMAL)}}\n`,
    }));
    admin = readRootKey(sb);
    plain = (await createAccessKey(gw, admin, 'plain')).key;
    guarded = (await createAccessKey(gw, admin, 'guarded', { prompt_modules: ['formal'], prompt_text: 'Answer in French.' })).key;
  });

  after(async () => {
    await stopAll();
    await up?.close();
    sb?.remove();
  });

  const client = (key) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0, fetch: globalThis.fetch });

  test('an agent through the SDK: its upstream model, and its module as the one system message', async () => {
    up.reset();
    const c = await client(plain).chat.completions.create({ model: 'support-bot', messages: [{ role: 'user', content: 'hello' }] });
    assert.equal(c.object, 'chat.completion');
    const got = up.last().json;
    assert.equal(got.model, 'gpt-4o-mini', 'the alias became its upstream model');
    assert.deepEqual(got.messages, [{ role: 'system', content: NO_PII }, { role: 'user', content: 'hello' }]);
  });

  test('order: the model\'s modules, then the key\'s modules, then the key\'s text, in one message first', async () => {
    up.reset();
    const caller = [{ role: 'system', content: 'I am the caller\'s system prompt.' }, { role: 'user', content: 'hi' }];
    await client(guarded).chat.completions.create({ model: 'gpt-4o', messages: caller });
    const got = up.last().json;
    assert.equal(got.model, 'gpt-4o', 'a raw model keeps its name');
    assert.deepEqual(got.messages[0], { role: 'system', content: `${TERSE}\n\n${FORMAL}\n\nAnswer in French.` });
    assert.deepEqual(got.messages.slice(1), caller, 'the caller\'s messages follow, untouched and in order');
    up.reset();
    await client(guarded).chat.completions.create({ model: 'support-bot', messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual(up.last().json.messages[0], { role: 'system', content: `${NO_PII}\n\n${FORMAL}\n\nAnswer in French.` });
  });

  test('a call without any prompt policy reaches the upstream byte for byte', async () => {
    up.reset();
    const raw = '{ "model" :"gpt-4o-mini",\n\t"messages":[ {"role":"user","content":"h\\u00e9llo"} ],"n": 12345678901234567890 , "x":1e400, "unknown":{"nested":[1,2]} }';
    ok(await api(gw, 'POST', '/v1/chat/completions', { key: plain, raw, headers: { 'content-type': 'application/json' } }));
    assert.equal(up.last().body, raw);
  });

  test('with policy: exactly the permitted rewrites, every other byte as sent', async () => {
    up.reset();
    const before = '{ "messages" :  [\n  {"role":"user","content":"hi"} ] ,"model" :  "support-bot", "temperature": 0.70, "z": [ ] }';
    ok(await api(gw, 'POST', '/v1/chat/completions', { key: guarded, raw: before, headers: { 'content-type': 'application/json' } }));
    const system = JSON.stringify({ role: 'system', content: `${NO_PII}\n\n${FORMAL}\n\nAnswer in French.` });
    const expected = before.replace('[\n  {', `[${system},\n  {`).replace('"support-bot"', '"gpt-4o-mini"');
    assert.equal(up.last().body, expected);
    up.reset();
    const empty = '{"model":"gpt-4o","messages":[  ]}';
    ok(await api(gw, 'POST', '/v1/chat/completions', { key: plain, raw: empty, headers: { 'content-type': 'application/json' } }));
    assert.equal(up.last().body, `{"model":"gpt-4o","messages":[${JSON.stringify({ role: 'system', content: TERSE })}  ]}`);
  });

  test('streaming through an agent: the rewrite applies, chunks relay', async () => {
    up.reset();
    const stream = await client(plain).chat.completions.create({ model: 'support-bot', messages: [{ role: 'user', content: 'one two' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.ok(text.length > 0);
    assert.equal(up.last().json.messages[0].role, 'system');
  });

  test('prompt policy on /v1/completions → 403 policy_unsupported_route; without policy it passes', async () => {
    up.reset();
    assertError(await api(gw, 'POST', '/v1/completions', { key: guarded, body: { model: 'gpt-4o-mini', prompt: 'x' } }), 403, 'policy_unsupported_route');
    assertError(await api(gw, 'POST', '/v1/completions', { key: plain, body: { model: 'support-bot', prompt: 'x' } }), 403, 'policy_unsupported_route');
    assert.equal(up.received.length, 0, 'refused calls never reach the upstream');
    await assert.rejects(client(guarded).completions.create({ model: 'gpt-4o-mini', prompt: 'x' }), (e) => e.status === 403);
  });
});
