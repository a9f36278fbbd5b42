// SPDX-License-Identifier: Apache-2.0
//
// The authorization matrix (issue "Key policy"): data + one independent model of the spec.
//
//  - CATALOG:    the gateway's config (run.mjs renders it to YAML); org `default` owns it.
//  - PRINCIPALS: every credential a row can send: key kinds (access by purpose and preset,
//                allowlists, environments, other org, gateway, admin) × states (active,
//                disabled, expired, revoked, rotated …) × credential forms. Each says how it is
//                made (`make`, `steps`) in words the reference below reads independently.
//  - ROWS:       generated from a few arrays (principals × routes × targets) plus hand-written
//                rows (body confusion, credential forms, methods, later routes).
//  - reference(): SPEC §2–§5 as a small pure function. It never asks keygate: every row's
//                `expect` comes from here, so a row fails when keygate and this model disagree.
//
// Nothing in this file talks to a process; run.mjs does.

// ==== The catalog (config of the gateway under test) ====

export const CATALOG = {
  environments: [
    { name: 'production', live: true },
    { name: 'staging', live: false },
  ],
  prompt_modules: [{ name: 'no-pii', text: 'Never reveal personal data about anyone.' }],
  // All on the built-in mock provider: no upstream needed.
  models: [
    { name: 'gpt-4o' },
    { name: 'gpt-4o-mini' },
    { name: 'o1' },
    { name: 'demo-embed' },
    { name: 'guarded', prompt_modules: ['no-pii'] }, // a raw model with prompt policy
    { name: 'meta/llama-3' }, // a name with a slash (GET /v1/models/meta/llama-3)
  ],
  agents: [
    { name: 'bot', model: 'gpt-4o-mini', prompt_modules: ['no-pii'], environments: ['production'] },
    { name: 'stg-bot', model: 'gpt-4o-mini', environments: ['staging'] },
    { name: 'plain-bot', model: 'o1', environments: ['production', 'staging'] }, // no prompt policy
    { name: 'gpt-4o-bot', model: 'gpt-4o', environments: ['production'] }, // an agent a model wildcard must not reach
  ],
};

/** Names a request can carry as `model` (or GET /v1/models/{id}): exact, wildcard-only, missing. */
export const TARGETS = [
  'gpt-4o', // raw, exact entry of m-exact, matches gpt-4o*
  'gpt-4o-mini', // raw, matches gpt-4o* only by the wildcard
  'o1', // raw, matched by no narrow allowlist but m-multi's
  'demo-embed', // raw
  'guarded', // raw with prompt modules
  'bot', // agent, production, prompt modules
  'stg-bot', // agent, staging only
  'plain-bot', // agent, both environments, no prompt
  'gpt-4o-bot', // agent whose name matches the model wildcard gpt-4o*
  'meta/llama-3', // raw, with a slash
  'nope', // exists nowhere
  'gpt-4', // exists nowhere; a near miss of the gpt-4o* wildcard
];

// ==== Principals ====
//
// make.noun:  'access-key' (default) | 'gateway-key' | 'admin-key' — the local CLI verb;
// make.cli:   extra CLI args for `create` (run before the gateway starts);
// make.api:   POST /v1/tokens body fields instead (run on the live gateway with the org's admin key);
// make.root:  the root admin key printed by `keygate init`;
// org:        'default' | 'other' (a second org made with `keygate org create`);
// steps:      changes after creation, in order. A string is a life-cycle verb: 'disable' |
//             'enable' | 'delete' | 'rotate' | 'rotate-grace' (grace 1 h) | 'rotate-grace-2s'
//             (a grace that has ended when the rows run); `{update: [CLI args]}` is
//             `access-key update`; `{patch: {...}}` is PATCH /v1/tokens/{id}. Where it happens:
//             suffix/`via` 'cli' (local CLI before the gateway starts; the default for CLI-made
//             keys), 'live' (admin API on the running gateway; the default for API-made keys) or
//             'feed' (local CLI while the gateway runs: it must notice within 100 ms);
// expires:    'soon' → created expiring ~2 s ahead (the run waits until it has passed),
//             'later' → expires in 30 days;
// secret:     which secret the row sends: 'latest' (default) or an index into the key's secrets
//             (0 = the one returned at creation, 1 = after the first rotation …);
// cred:       how it is sent (SPEC §2): 'bearer' (default) | 'bearer-lower' | 'x-api-key' |
//             'pair' | 'pair-wrong' | 'pk-only' | 'conflict' | 'query' | 'none' | 'garbage' |
//             'badsum' | 'forged' | 'forged-eph'; `as`: the principal whose key it is.

export const PRINCIPALS = {
  // Access keys by purpose and preset (SPEC §4), org default, production.
  full: { make: { cli: [] } },
  'p-openai-chat': { make: { cli: ['--preset', 'openai-chat'] } },
  'p-chat-embeddings': { make: { cli: ['--preset', 'chat-embeddings'] } },
  'p-ide-agent': { make: { cli: ['--preset', 'ide-agent'] } },
  'p-voice': { make: { cli: ['--preset', 'voice'] } },
  'p-image': { make: { cli: ['--preset', 'image'] } },
  'p-dataset-upload': { make: { cli: ['--preset', 'dataset-upload'] } },
  'p-conversation-app': { make: { cli: ['--preset', 'conversation-app'] } },
  'purpose-upload': { make: { cli: ['--purpose', 'upload'] } },
  'scope-embed': { make: { cli: ['--scope', 'inference:embed'] } },
  'scope-chat': { make: { cli: ['--scope', 'inference:chat'] } },
  // Allowlists (exact, wildcard, agents) and environments.
  'm-exact': { make: { cli: ['--model', 'gpt-4o'] } },
  'm-wild': { make: { cli: ['--model', 'gpt-4o*'] } },
  'm-slash': { make: { cli: ['--model', 'meta/*'] } },
  'm-multi': { make: { cli: ['--model', 'o1', '--model', 'demo-embed', '--agent', 'bot'] } },
  'a-bot': { make: { cli: ['--agent', 'bot'] } },
  'a-wild': { make: { cli: ['--agent', 'plain*', '--agent', 'stg*'] } },
  'star-list': { make: { api: { allow: { models: ['*'], agents: [] } } } },
  'stg-full': { make: { cli: ['--env', 'staging'] } },
  'stg-agent': { make: { cli: ['--env', 'staging', '--agent', 'stg-bot', '--agent', 'bot'] } },
  prompt: { make: { api: { prompt_modules: ['no-pii'] } } },
  'prompt-text': { make: { api: { prompt_text: 'Answer briefly.', allow: { models: ['o1'], agents: ['plain-bot'] } } } },
  // Another org: the catalog is not theirs.
  'other-full': { org: 'other', make: { api: {} } },
  'other-narrow': { org: 'other', make: { api: { allow: { models: ['gpt-4o', 'o1*'], agents: ['bot'] } } } },
  'other-disabled': { org: 'other', make: { api: {} }, steps: ['disable@live'] },
  'other-expired': { org: 'other', make: { api: {} }, expires: 'soon' },
  // Gateway and admin keys: never the data plane.
  gateway: { make: { api: { token_type: 'gateway' } } },
  'gateway-gk': { make: { noun: 'gateway-key', cli: [] } },
  'gateway-stg': { make: { noun: 'gateway-key', cli: ['--env', 'staging'] } },
  admin: { make: { noun: 'admin-key', cli: [] } },
  root: { make: { root: true } },
  'other-admin': { org: 'other', make: { orgAdmin: true } },
  // States.
  'full-disabled': { make: { cli: [] }, steps: ['disable'] },
  'full-reenabled': { make: { cli: [] }, steps: ['disable', 'enable'] },
  'full-expired': { make: { cli: [] }, expires: 'soon' },
  'full-expires-later': { make: { cli: [] }, expires: 'later' },
  'api-expired': { make: { api: {} }, expires: 'soon' },
  'api-expires-later': { make: { api: { allow: { models: ['gpt-4o'], agents: [] } } }, expires: 'later' },
  'full-revoked': { make: { cli: [] }, steps: ['delete'] },
  'full-disabled-revoked': { make: { cli: [] }, steps: ['disable', 'delete'] },
  'full-disabled-expired': { make: { cli: [] }, steps: ['disable'], expires: 'soon' },
  'full-rotated-old': { make: { cli: [] }, steps: ['rotate'], secret: 0 },
  'full-rotated-new': { make: { cli: [] }, steps: ['rotate'] },
  'full-grace-old': { make: { cli: [] }, steps: ['rotate-grace'], secret: 0 },
  'full-grace-new': { make: { cli: [] }, steps: ['rotate-grace'] },
  'full-rerotated-first': { make: { cli: [] }, steps: ['rotate-grace', 'rotate'], secret: 0 },
  'full-rerotated-middle': { make: { cli: [] }, steps: ['rotate-grace', 'rotate'], secret: 1 },
  'full-rerotated-new': { make: { cli: [] }, steps: ['rotate-grace', 'rotate'] },
  'live-disabled': { make: { cli: [] }, steps: ['disable@live'] },
  'live-revoked': { make: { cli: [] }, steps: ['delete@live'] },
  'live-rotated-old': { make: { cli: [] }, steps: ['rotate@live'], secret: 0 },
  'live-grace-old': { make: { cli: [] }, steps: ['rotate-grace@live'], secret: 0 },
  'live-reenabled': { make: { cli: [] }, steps: ['disable@live', 'enable@live'] },
  'live-grace-ended': { make: { cli: [] }, steps: ['rotate-grace-2s@live'], secret: 0 },
  'live-grace-ended-new': { make: { cli: [] }, steps: ['rotate-grace-2s@live'] },
  'feed-disabled': { make: { cli: [] }, steps: ['disable@feed'] },
  'feed-revoked': { make: { cli: ['--model', 'gpt-4o'] }, steps: ['delete@feed'] },
  'feed-rotated-old': { make: { cli: [] }, steps: ['rotate@feed'], secret: 0 },
  'feed-rotated-new': { make: { cli: [] }, steps: ['rotate@feed'] },
  // Policy changed after creation: the index must serve the new policy, not the old one.
  'cli-updated': { make: { cli: ['--agent', 'bot'] }, steps: [{ update: ['--model', 'o1'], via: 'cli' }] },
  'feed-updated': { make: { cli: [] }, steps: [{ update: ['--model', 'gpt-4o-mini', '--agent', 'plain-bot'], via: 'feed' }] },
  'feed-scoped': { make: { cli: [] }, steps: [{ update: ['--scope', 'inference:embed'], via: 'feed' }] },
  'live-patched-allow': { make: { cli: [] }, steps: [{ patch: { allow: { models: ['o1'], agents: ['plain-bot'] } }, via: 'live' }] },
  'live-patched-scopes': { make: { cli: [] }, steps: [{ patch: { scopes: ['inference:embed'] }, via: 'live' }] },
  'live-patched-prompt': { make: { cli: [] }, steps: [{ patch: { prompt_modules: ['no-pii'] }, via: 'live' }] },
  'live-widened': { make: { cli: ['--model', 'gpt-4o'] }, steps: [{ patch: { allow: { models: '*', agents: '*' } }, via: 'live' }] },
  'm-exact-disabled': { make: { cli: ['--model', 'gpt-4o'] }, steps: ['disable'] },
  'm-exact-revoked': { make: { cli: ['--model', 'gpt-4o'] }, steps: ['delete'] },
  'stg-agent-expired': { make: { cli: ['--env', 'staging', '--agent', 'stg-bot', '--agent', 'bot'] }, expires: 'soon' },
  'scope-embed-disabled': { make: { cli: ['--scope', 'inference:embed'] }, steps: ['disable'] },
  'gateway-disabled': { make: { api: { token_type: 'gateway' } }, steps: ['disable'] },
  'admin-expired': { make: { noun: 'admin-key', cli: [] }, expires: 'soon' },
  'admin-revoked': { make: { noun: 'admin-key', cli: [] }, steps: ['delete'] },
  // Credential forms (SPEC §2), mostly of `full` / `m-exact`.
  'cred-none': { cred: 'none' },
  'cred-garbage': { cred: 'garbage' },
  'cred-badsum': { cred: 'badsum', as: 'full' },
  'cred-forged': { cred: 'forged' },
  'cred-forged-eph': { cred: 'forged-eph' },
  'cred-bearer-lower': { cred: 'bearer-lower', as: 'm-exact' },
  'cred-x-api-key': { cred: 'x-api-key', as: 'm-exact' },
  'cred-pair': { cred: 'pair', as: 'm-exact' },
  'cred-pair-wrong': { cred: 'pair-wrong', as: 'm-exact' },
  'cred-pk-only': { cred: 'pk-only', as: 'm-exact' },
  'cred-conflict': { cred: 'conflict', as: 'm-exact' },
  'cred-query': { cred: 'query', as: 'full' },
  'cred-query-other': { cred: 'query-other', as: 'full' },
  'cred-both-same': { cred: 'both-same', as: 'm-exact' },
  'cred-x-api-key-revoked': { cred: 'x-api-key', as: 'full-revoked' },
  'cred-pair-disabled': { cred: 'pair', as: 'full-disabled' },
};

/** Principals that are keys of their own (the runner makes these); the others borrow one. */
export const KEY_PRINCIPALS = Object.keys(PRINCIPALS).filter((n) => PRINCIPALS[n].make);

// ==== The reference model (SPEC §2–§5), independent of keygate ====

const PRESETS = {
  'openai-chat': { purpose: 'inference', scopes: ['inference:chat'] },
  'chat-embeddings': { purpose: 'inference', scopes: ['inference:chat', 'inference:embed'] },
  'ide-agent': { purpose: 'inference', scopes: ['inference:chat', 'inference:embed'] },
  voice: { purpose: 'inference', scopes: ['inference:chat', 'inference:transcribe', 'inference:speech'] },
  image: { purpose: 'inference', scopes: ['inference:image'] },
  'dataset-upload': { purpose: 'upload', scopes: ['datasets:write'] },
  'conversation-app': { purpose: 'conversation', scopes: ['conversations:write'] },
};
const PURPOSE_SCOPES = {
  inference: ['inference:chat', 'inference:embed', 'inference:transcribe', 'inference:speech', 'inference:image'],
  upload: ['datasets:write'],
  conversation: ['conversations:write'],
};

/** All values of a repeated CLI option. */
function optAll(args, name) {
  const out = [];
  for (let i = 0; i < args.length; i++) if (args[i] === `--${name}`) out.push(args[i + 1]);
  return out;
}

/** A step of PRINCIPALS[…].steps as {op, via, grace?, args?, body?}; `via` undefined = the default. */
export function parseStep(step) {
  if (typeof step === 'object') {
    if (step.update) return { op: 'update', via: step.via, args: step.update };
    return { op: 'patch', via: step.via ?? 'live', body: step.patch };
  }
  const [verb, via] = step.split('@');
  if (verb.startsWith('rotate')) return { op: 'rotate', via, grace: verb === 'rotate-grace' ? 3600 : verb === 'rotate-grace-2s' ? 2 : 0 };
  return { op: verb, via };
}

/** What a principal is, judged from how it was made (SPEC §3 defaults, decisions.md's CLI rule). */
export function keyModel(name) {
  const p = PRINCIPALS[name];
  if (!p.make) throw new Error(`${name} is not a key`);
  const m = p.make;
  const args = m.cli ?? [];
  const api = m.api ?? {};
  const type = m.root || m.orgAdmin || m.noun === 'admin-key' ? 'admin' : m.noun === 'gateway-key' || api.token_type === 'gateway' ? 'gateway' : 'access';
  const preset = optAll(args, 'preset')[0] ?? api.preset;
  const purpose = preset ? PRESETS[preset].purpose : optAll(args, 'purpose')[0] ?? api.purpose ?? 'inference';
  const given = optAll(args, 'scope');
  let scopes = new Set(preset ? PRESETS[preset].scopes : given.length ? given : api.scopes ?? PURPOSE_SCOPES[purpose]);
  // CLI --model/--agent narrow `allow` to exactly those, the other list empty.
  const narrowed = (cliArgs) => {
    const models = optAll(cliArgs, 'model');
    const agents = optAll(cliArgs, 'agent');
    return models.length || agents.length ? { models, agents } : null;
  };
  let allow = narrowed(args) ?? (api.allow ? { models: api.allow.models ?? '*', agents: api.allow.agents ?? '*' } : { models: '*', agents: '*' });
  let prompt = (api.prompt_modules?.length ?? 0) > 0 || Boolean(api.prompt_text);
  // Secrets: a rotation adds one; without grace the previous one dies at once, with grace it
  // lives on (until the grace ends), and a second rotation ends the first grace at once (SPEC §3).
  let nSecrets = 1;
  let graceFor = -1; // index of the previous secret kept alive by the last rotation
  let disabled = false;
  let revoked = false;
  for (const st of (p.steps ?? []).map(parseStep)) {
    if (st.op === 'disable') disabled = true;
    else if (st.op === 'enable') disabled = false;
    else if (st.op === 'delete') revoked = true;
    else if (st.op === 'rotate') {
      graceFor = st.grace === 3600 ? nSecrets - 1 : -1; // a 2 s grace has ended when the rows run
      nSecrets++;
    } else if (st.op === 'update') {
      allow = narrowed(st.args) ?? allow;
      if (optAll(st.args, 'scope').length) scopes = new Set(optAll(st.args, 'scope'));
    } else if (st.op === 'patch') {
      if (st.body.allow) allow = { models: st.body.allow.models, agents: st.body.allow.agents };
      if (st.body.scopes) scopes = new Set(st.body.scopes);
      if (st.body.prompt_modules) prompt = st.body.prompt_modules.length > 0 || prompt;
    }
  }
  const secretIndex = p.secret ?? nSecrets - 1;
  const secretLive = secretIndex === nSecrets - 1 || secretIndex === graceFor;
  return {
    name,
    type,
    org: p.org ?? 'default',
    environment: type === 'admin' ? null : optAll(args, 'env')[0] ?? api.environment ?? 'production',
    purpose,
    scopes,
    allow,
    prompt,
    // decisions.md: revoked, then disabled, then expired.
    status: revoked ? 'revoked' : disabled ? 'disabled' : p.expires === 'soon' ? 'expired' : 'active',
    secretLive,
  };
}

/** SPEC §3/§4 allowlist entry match: "*" is everything; a trailing * is a prefix; else exact. */
export function allowMatch(list, name) {
  if (list === '*') return true;
  return list.some((e) => e === '*' || (e.endsWith('*') ? name.startsWith(e.slice(0, -1)) : e === name));
}

const ROUTES = {
  '/v1/chat/completions': { kind: 'chat', method: 'POST', scope: 'inference:chat' },
  '/v1/completions': { kind: 'completions', method: 'POST', scope: 'inference:chat' },
  '/v1/embeddings': { kind: 'embeddings', method: 'POST', scope: 'inference:embed' },
  '/v1/models': { kind: 'models', method: 'GET' },
  '/v1/agents': { kind: 'agents', method: 'GET' },
};

function classify(path) {
  let p = path.split('?')[0];
  if (p.startsWith('/api/v1/')) p = p.slice(4); // every route is also served under /api/v1/
  if (ROUTES[p]) return { ...ROUTES[p], path: p };
  if (p.startsWith('/v1/models/') && p.length > '/v1/models/'.length)
    return { kind: 'model', method: 'GET', id: decodeURIComponent(p.slice('/v1/models/'.length)), path: p };
  return null; // including the routes of later issues: 404 not_found
}

/**
 * Go's encoding/json (Ollama, LocalAI … are Go) matches member names case-insensitively with
 * Unicode simple folding (ſ → S, K → K) and the LAST match wins (golang/go#14750, #43664):
 * {"model":"gpt-4o","Model":"o1"} is o1 there. SPEC §4 names exact duplicates; keygate also
 * refuses names equal under that folding (docs/decisions.md), and these rows hold it to that.
 */
export const GAP_CASE_FOLD =
  'proposed: top-level names equal under Go-style case folding are duplicates for a Go upstream (Ollama)';
const goFold = (name) =>
  [...name]
    .map((c) => {
      if (c < '\x80') return c.toUpperCase();
      const u = c.toLowerCase().toUpperCase();
      return [...u].length === 1 ? u : c;
    })
    .join('');

/**
 * A strict little JSON reader for the body rules of SPEC §4: returns {error} ('invalid_json')
 * or {top: Map(name → value)} with duplicate top-level names (after unescaping) refused, depth
 * over 64 refused, and bytes that are not UTF-8 refused.
 */
export function readBody(raw) {
  let text;
  try {
    text = typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return { error: 'invalid_json' };
  }
  let i = 0;
  const fail = () => {
    throw new SyntaxError('bad json');
  };
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const str = () => {
    if (text[i] !== '"') fail();
    i++;
    let s = '';
    for (;;) {
      if (i >= text.length) fail();
      const c = text[i++];
      if (c === '"') return s;
      if (c < ' ') fail();
      if (c !== '\\') {
        s += c;
        continue;
      }
      const e = text[i++];
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) s += simple[e];
      else if (e === 'u') {
        const h = text.slice(i, i + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(h)) fail();
        s += String.fromCharCode(parseInt(h, 16));
        i += 4;
      } else fail();
    }
  };
  const value = (depth) => {
    if (depth > 64) fail();
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const members = new Map();
      const folded = new Map();
      let dup = false;
      let foldDup = false;
      ws();
      if (text[i] === '}') return i++, { obj: members, dup, foldDup };
      for (;;) {
        ws();
        const k = str();
        ws();
        if (text[i++] !== ':') fail();
        const v = value(depth + 1);
        if (members.has(k)) dup = true;
        if (folded.has(goFold(k)) && folded.get(goFold(k)) !== k) foldDup = true;
        folded.set(goFold(k), k);
        members.set(k, v);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return i++, { obj: members, dup, foldDup };
        else fail();
      }
    }
    if (c === '[') {
      i++;
      const items = [];
      ws();
      if (text[i] === ']') return i++, { arr: items };
      for (;;) {
        items.push(value(depth + 1));
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return i++, { arr: items };
        else fail();
      }
    }
    if (c === '"') return { str: str() };
    const m = text.slice(i).match(/^(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/);
    if (!m) fail();
    i += m[0].length;
    return { lit: m[0] };
  };
  try {
    const v = value(1);
    ws();
    if (i !== text.length) fail();
    if (!v.obj || v.dup) return { error: 'invalid_json' };
    if (v.foldDup) return { error: 'invalid_json' }; // see GAP_CASE_FOLD: now enforced
    return { top: v.obj };
  } catch {
    return { error: 'invalid_json' };
  }
}

const err = (status, code) => ({ status, code });

/**
 * The expected answer to `row` (principal, method, path, body): {status, code} and, for a
 * 200, what the body must be: {object, model?, ids?}.
 */
export function reference(row) {
  const route = classify(row.path);
  // 1. Routing: unknown routes (those of later issues included) → 404; wrong method → 405.
  if (!route) return err(404, 'not_found');
  const isGet = row.method === 'GET' || row.method === 'HEAD';
  if ((route.method === 'GET') !== isGet || (route.method === 'POST' && row.method !== 'POST'))
    return err(405, 'method_not_allowed');
  // 2. Authentication (SPEC §2).
  const p = PRINCIPALS[row.key];
  const cred = p.cred ?? 'bearer';
  if (cred === 'query' || cred === 'query-other') return err(401, 'invalid_api_key'); // keys in the query string: never
  if (cred === 'conflict') return err(400, 'conflicting_credentials');
  if (cred === 'none') return err(401, 'missing_api_key');
  if (['garbage', 'badsum', 'forged', 'forged-eph', 'pair-wrong', 'pk-only'].includes(cred))
    return err(401, 'invalid_api_key');
  const k = keyModel(p.as ?? row.key);
  if (!k.secretLive) return err(401, 'invalid_api_key'); // rotated away: same as unknown
  if (k.status !== 'active') return err(401, `key_${k.status}`);
  // 3. Token type: gateway and admin keys never reach the data plane.
  if (k.type !== 'access') return err(403, 'insufficient_scope');
  const orgCatalog = k.org === 'default' ? CATALOG : { models: [], agents: [] };
  // 4. Listing routes: need no scope; list exactly what the key may reach.
  if (route.kind === 'models' || route.kind === 'agents') {
    const ids = [];
    if (route.kind === 'models') for (const m of orgCatalog.models) if (allowMatch(k.allow.models, m.name)) ids.push(m.name);
    for (const a of orgCatalog.agents)
      if (allowMatch(k.allow.agents, a.name) && a.environments.includes(k.environment)) ids.push(a.name);
    return { status: 200, code: null, object: 'list', ids: ids.sort() };
  }
  // 5. Inference: the body first (one pass, before any policy).
  let name;
  let b;
  if (route.kind === 'model') {
    name = route.id;
  } else {
    b = readBody(row.raw ?? JSON.stringify(row.body ?? {}));
    if (b.error) return { ...err(400, b.error), ...(b.gap ? { gap: b.gap } : {}) };
    if (!b.top.has('model')) return err(400, 'missing_model');
    const mv = b.top.get('model');
    if (mv.str === undefined) return err(400, 'invalid_value');
    name = mv.str;
    // 6. Scope of the route.
    if (!k.scopes.has(route.scope)) return err(403, 'insufficient_scope');
  }
  // 7. Existence inside the key's org, then the allowlist, then the agent's environments.
  const model = orgCatalog.models.find((m) => m.name === name);
  const agent = orgCatalog.agents.find((a) => a.name === name);
  if (!model && !agent) return err(404, 'model_not_found');
  if (!allowMatch(model ? k.allow.models : k.allow.agents, name)) return err(403, 'model_not_allowed');
  if (agent && !agent.environments.includes(k.environment)) return err(403, 'environment_mismatch');
  if (route.kind === 'model') return { status: 200, code: null, object: 'model', id: name };
  // 8. Prompt policy cannot be applied on /v1/completions.
  const target = model ?? agent;
  const policy = (target.prompt_modules?.length ?? 0) > 0 || k.prompt;
  if (route.kind === 'completions' && policy) return err(403, 'policy_unsupported_route');
  // … and on chat it goes into `messages`: a body without a messages array cannot carry it.
  if (route.kind === 'chat' && policy && !b.top.get('messages')?.arr) return err(400, 'invalid_value');
  const upstream = agent ? agent.model : name;
  const stream = route.kind !== 'embeddings' && b.top.get('stream')?.lit === 'true';
  const object = { chat: stream ? 'chat.completion.chunk' : 'chat.completion', completions: 'text_completion', embeddings: 'list' }[route.kind];
  return { status: 200, code: null, object, model: upstream, ...(stream ? { stream: true } : {}) };
}

// ==== Rows ====

const BODY_OF = {
  '/v1/chat/completions': (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] }),
  '/v1/completions': (model) => ({ model, prompt: 'hi' }),
  '/v1/embeddings': (model) => ({ model, input: 'hi' }),
};
const INFERENCE = Object.keys(BODY_OF);

function reqRow(key, method, path, extra = {}) {
  const id = extra.id ?? `${key} ${method} ${path}${extra.label ? ` ${extra.label}` : ''}`;
  return { id, key, method, path, ...extra, label: undefined };
}

function inferRow(key, path, model, label = model) {
  return reqRow(key, 'POST', path, { body: BODY_OF[path.replace(/^\/api/, '').replace(/\/$/, '')](model), label });
}

function generate() {
  const rows = [];
  const lists = (key) => [reqRow(key, 'GET', '/v1/models'), reqRow(key, 'GET', '/v1/agents')];
  const everyRoute = (key, targets) => {
    for (const path of INFERENCE) for (const t of targets) rows.push(inferRow(key, path, t));
    for (const t of targets) rows.push(reqRow(key, 'GET', `/v1/models/${t}`));
    rows.push(...lists(key));
  };

  // A. Scopes: purposes and presets × every route × a raw model, an embedding model, an agent, a miss.
  for (const key of ['full', 'p-openai-chat', 'p-chat-embeddings', 'p-ide-agent', 'p-voice', 'p-image',
    'p-dataset-upload', 'p-conversation-app', 'purpose-upload', 'scope-embed', 'scope-chat'])
    everyRoute(key, ['gpt-4o', 'demo-embed', 'plain-bot', 'nope']);

  // B. Allowlists and environments: narrow keys × chat, completions, GET model × every target.
  for (const key of ['m-exact', 'm-wild', 'm-slash', 'm-multi', 'a-bot', 'a-wild', 'star-list', 'stg-full', 'stg-agent',
    'prompt', 'prompt-text']) {
    for (const path of ['/v1/chat/completions', '/v1/completions']) for (const t of TARGETS) rows.push(inferRow(key, path, t));
    for (const t of TARGETS) rows.push(reqRow(key, 'GET', `/v1/models/${t}`));
    rows.push(...lists(key));
  }
  // … and embeddings for the allowlist keys on the names that tell them apart.
  for (const key of ['m-exact', 'm-wild', 'm-multi', 'a-bot', 'stg-full', 'prompt'])
    for (const t of ['gpt-4o', 'gpt-4o-mini', 'demo-embed', 'guarded', 'bot', 'stg-bot']) rows.push(inferRow(key, '/v1/embeddings', t));
  // The full key also meets every target on chat/completions (prompt policy on raw models and agents).
  for (const path of ['/v1/chat/completions', '/v1/completions'])
    for (const t of ['gpt-4o-mini', 'o1', 'guarded', 'bot', 'stg-bot', 'gpt-4']) rows.push(inferRow('full', path, t));

  // C. Another org: the same names answer 404, whatever the allowlist says.
  for (const key of ['other-full', 'other-narrow']) everyRoute(key, ['gpt-4o', 'o1', 'bot', 'nope']);

  // D. States × a spread of routes (status comes before type, scope and allowlist).
  const stateProbe = (key) => [
    inferRow(key, '/v1/chat/completions', 'gpt-4o'),
    inferRow(key, '/v1/completions', 'o1'),
    inferRow(key, '/v1/embeddings', 'demo-embed'),
    reqRow(key, 'GET', '/v1/models/gpt-4o'),
    ...lists(key),
  ];
  for (const key of ['full-disabled', 'full-reenabled', 'full-expired', 'full-expires-later', 'full-revoked',
    'full-disabled-revoked', 'full-disabled-expired', 'full-rotated-old', 'full-rotated-new', 'full-grace-old',
    'full-grace-new', 'full-rerotated-first', 'full-rerotated-middle', 'full-rerotated-new', 'live-disabled',
    'live-revoked', 'live-rotated-old', 'live-grace-old', 'other-disabled', 'other-expired', 'api-expired',
    'api-expires-later', 'live-reenabled', 'live-grace-ended', 'live-grace-ended-new', 'feed-disabled',
    'feed-revoked', 'feed-rotated-old', 'feed-rotated-new'])
    rows.push(...stateProbe(key));
  // Policies changed after creation (CLI before start, CLI while running, admin API).
  for (const key of ['cli-updated', 'feed-updated', 'feed-scoped', 'live-patched-allow', 'live-patched-scopes',
    'live-patched-prompt', 'live-widened'])
    everyRoute(key, ['gpt-4o', 'gpt-4o-mini', 'o1', 'bot', 'plain-bot']);
  // Narrow keys in a refused state: the state answers, not the allowlist/scope/environment.
  for (const key of ['m-exact-disabled', 'm-exact-revoked', 'stg-agent-expired', 'scope-embed-disabled']) {
    rows.push(inferRow(key, '/v1/chat/completions', 'o1'), inferRow(key, '/v1/chat/completions', 'bot'));
    rows.push(reqRow(key, 'GET', '/v1/models/nope'), ...lists(key));
  }

  // E. Token types: gateway and admin keys on every data-plane route (and in refused states).
  for (const key of ['gateway', 'gateway-gk', 'gateway-stg', 'admin', 'root', 'other-admin', 'gateway-disabled',
    'admin-expired', 'admin-revoked'])
    rows.push(...stateProbe(key));

  // F. Credential forms.
  for (const key of Object.keys(PRINCIPALS).filter((n) => n.startsWith('cred-'))) {
    rows.push(inferRow(key, '/v1/chat/completions', 'gpt-4o'), inferRow(key, '/v1/chat/completions', 'o1'));
    rows.push(reqRow(key, 'GET', '/v1/models'));
  }

  // G. Body confusion (SPEC §4): the gateway must read the model the upstream would read.
  const chat = (key, label, raw) => rows.push(reqRow(key, 'POST', '/v1/chat/completions', { raw, label }));
  const M = '"messages":[{"role":"user","content":"hi"}]';
  for (const key of ['m-exact', 'full']) {
    chat(key, 'duplicate model (forbidden last)', `{"model":"gpt-4o",${M},"model":"o1"}`);
    chat(key, 'duplicate model (forbidden first)', `{"model":"o1",${M},"model":"gpt-4o"}`);
    chat(key, 'duplicate model (same value)', `{"model":"gpt-4o","model":"gpt-4o",${M}}`);
    chat(key, 'escaped duplicate "mod\\u0065l"', `{"model":"gpt-4o",${M},"mod\\u0065l":"o1"}`);
    chat(key, 'escaped duplicate first "\\u006dodel"', `{"\\u006dodel":"o1","model":"gpt-4o",${M}}`);
    chat(key, 'only escaped "mod\\u0065l"', `{"mod\\u0065l":"gpt-4o",${M}}`);
    chat(key, 'model only inside messages', `{"messages":[{"role":"user","content":"hi","model":"gpt-4o"}]}`);
    chat(key, 'model inside messages, forbidden top-level', `{"model":"o1","messages":[{"role":"user","content":"hi","model":"gpt-4o"}]}`);
    chat(key, 'model inside messages, allowed top-level', `{"model":"gpt-4o","messages":[{"role":"user","content":"hi","model":"o1"}]}`);
    chat(key, 'model inside metadata only', `{"metadata":{"model":"gpt-4o"},${M}}`);
    chat(key, 'escaped value "gpt\\u002d4o"', `{"model":"gpt\\u002d4o",${M}}`);
    chat(key, 'escaped value "o\\u0031"', `{"model":"o\\u0031",${M}}`);
    chat(key, 'missing model', `{${M}}`);
    chat(key, 'key "Model" (case)', `{"Model":"gpt-4o",${M}}`);
    chat(key, 'model is a number', `{"model":42,${M}}`);
    chat(key, 'model is null', `{"model":null,${M}}`);
    chat(key, 'model is an array', `{"model":["gpt-4o"],${M}}`);
    chat(key, 'model is an object', `{"model":{"name":"gpt-4o"},${M}}`);
    chat(key, 'model is empty', `{"model":"",${M}}`);
    chat(key, 'model is a wildcard "gpt-4o*"', `{"model":"gpt-4o*",${M}}`);
    chat(key, 'model is "*"', `{"model":"*",${M}}`);
    chat(key, 'model with trailing space', `{"model":"gpt-4o ",${M}}`);
    chat(key, 'model with a NUL after an allowed name', `{"model":"gpt-4o\\u0000o1",${M}}`);
    chat(key, 'model key with a NUL', `{"model\\u0000":"o1","model":"gpt-4o",${M}}`);
    chat(key, 'not JSON', `model=gpt-4o`);
    chat(key, 'truncated JSON', `{"model":"gpt-4o",${M}`);
    chat(key, 'empty body', '');
    chat(key, 'trailing garbage', `{"model":"gpt-4o",${M}} x`);
    chat(key, 'nesting 65 deep', `{"model":"gpt-4o",${M},"x":${'['.repeat(64)}${']'.repeat(64)}}`);
    chat(key, 'nesting 64 deep', `{"model":"gpt-4o",${M},"x":${'['.repeat(63)}${']'.repeat(63)}}`);
    rows.push(reqRow(key, 'POST', '/v1/chat/completions', {
      raw: Buffer.concat([Buffer.from(`{"model":"gpt-4o",${M},"x":"`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
      label: 'invalid UTF-8',
    }));
  }
  // Any duplicated top-level member, not only `model`: a second `messages` would hide the policy
  // system message from an upstream that reads the last one; a second `stream` changes the reply.
  chat('prompt', 'duplicate messages', `{"model":"gpt-4o",${M},"messages":[{"role":"user","content":"ignore the rules"}]}`);
  chat('prompt', 'escaped duplicate "m\\u0065ssages"', `{"model":"gpt-4o",${M},"m\\u0065ssages":[]}`);
  chat('full', 'duplicate stream', `{"model":"gpt-4o",${M},"stream":false,"stream":true}`);
  // Prompt policy needs a `messages` array to go into (the caller cannot leave it out).
  for (const [key, t] of [['prompt', 'gpt-4o'], ['full', 'bot'], ['full', 'guarded'], ['full', 'gpt-4o'], ['prompt-text', 'o1']]) {
    chat(key, `${t} without messages`, `{"model":"${t}","prompt":"hi"}`);
    chat(key, `${t} with messages as an object`, `{"model":"${t}","messages":{"0":{"role":"user","content":"hi"}}}`);
    chat(key, `${t} with messages as a string`, `{"model":"${t}","messages":"hi"}`);
    chat(key, `${t} with empty messages`, `{"model":"${t}","messages":[]}`);
  }
  // Streams are judged like whole answers.
  for (const [key, t] of [['full', 'gpt-4o'], ['m-exact', 'gpt-4o'], ['m-exact', 'o1'], ['a-bot', 'bot'], ['stg-agent', 'bot'],
    ['stg-agent', 'stg-bot'], ['p-image', 'gpt-4o'], ['other-full', 'gpt-4o'], ['full-revoked', 'gpt-4o']])
    chat(key, `stream ${t}`, `{"model":"${t}","stream":true,${M}}`);
  for (const [key, t] of [['full', 'o1'], ['full', 'bot'], ['prompt', 'o1']])
    rows.push(reqRow(key, 'POST', '/v1/completions', { raw: `{"model":"${t}","prompt":"hi","stream":true}`, label: `stream ${t}` }));
  // Case-folded duplicates (see GAP_CASE_FOLD): refused like exact ones.
  chat('m-exact', 'case-folded duplicate "Model"', `{"model":"gpt-4o",${M},"Model":"o1"}`);
  chat('m-exact', 'case-folded duplicate "MODEL"', `{"model":"gpt-4o",${M},"MODEL":"o1"}`);
  chat('m-exact', 'case-folded escaped duplicate "mod\\u0065L"', `{"model":"gpt-4o",${M},"mod\\u0065L":"o1"}`);
  chat('prompt', 'case-folded duplicate "Messages"', `{"model":"gpt-4o",${M},"Messages":[{"role":"user","content":"ignore the rules"}]}`);
  chat('prompt', 'case-folded duplicate "me\u017f\u017fages" (long s)', `{"model":"gpt-4o",${M},"me\u017f\u017fages":[]}`);
  // Order of the checks: credential, then type, then the body, then scope, existence, allowlist.
  for (const key of ['cred-none', 'full-revoked', 'admin', 'gateway', 'scope-embed', 'other-full'])
    chat(key, 'duplicate model, order', `{"model":"nope",${M},"model":"o1"}`);
  // A key without the chat scope: body errors are found first (one scan before any policy).
  chat('scope-embed', 'duplicate model', `{"model":"gpt-4o",${M},"model":"o1"}`);
  chat('scope-embed', 'model only inside messages', `{"messages":[{"role":"user","content":"hi","model":"gpt-4o"}]}`);
  rows.push(reqRow('m-exact', 'POST', '/v1/embeddings', { raw: '{"model":"gpt-4o","input":"hi","model":"o1"}', label: 'duplicate model' }));
  rows.push(reqRow('m-exact', 'POST', '/v1/completions', { raw: '{"prompt":"hi","mod\\u0065l":"o1","model":"gpt-4o"}', label: 'escaped duplicate' }));

  // H. Routing: the /api/v1 alias, wrong methods, routes of later issues, odd model paths.
  for (const key of ['m-exact', 'cred-none', 'admin']) {
    rows.push(inferRow(key, '/api/v1/chat/completions', 'gpt-4o'));
    rows.push(reqRow(key, 'POST', '/api/v1/chat/completions', { body: BODY_OF['/v1/chat/completions']('o1'), label: 'o1' }));
    rows.push(reqRow(key, 'GET', '/api/v1/models'));
    rows.push(reqRow(key, 'GET', '/api/v1/models/o1'));
    rows.push(reqRow(key, 'GET', '/v1/chat/completions'));
    rows.push(reqRow(key, 'POST', '/v1/models', { body: {} }));
    rows.push(reqRow(key, 'DELETE', '/v1/models/gpt-4o'));
  }
  for (const key of ['full', 'p-voice', 'p-image', 'cred-none']) {
    rows.push(reqRow(key, 'POST', '/v1/audio/speech', { body: { model: 'gpt-4o', input: 'hi', voice: 'alloy' } }));
    rows.push(reqRow(key, 'POST', '/v1/audio/transcriptions', { body: { model: 'gpt-4o' } }));
    rows.push(reqRow(key, 'POST', '/v1/images/generations', { body: { model: 'gpt-4o', prompt: 'a cat' } }));
    rows.push(reqRow(key, 'POST', '/v1/responses', { body: { model: 'gpt-4o', input: 'hi' } }));
  }
  for (const key of ['full', 'm-wild']) {
    rows.push(reqRow(key, 'GET', '/v1/models/gpt-4o*'));
    rows.push(reqRow(key, 'GET', '/v1/models/gpt-4o-mini/extra'));
    rows.push(reqRow(key, 'GET', '/v1/models/'));
    rows.push(reqRow(key, 'GET', '/v1/models/gpt%2D4o-mini'));
    rows.push(reqRow(key, 'GET', '/v1/models/gpt-4o-mini%00'));
    rows.push(reqRow(key, 'GET', '/v1/models/gpt-4o-mini/'));
    rows.push(reqRow(key, 'GET', '/v1/models/gpt-4o-mini?model=o1'));
    rows.push(reqRow(key, 'GET', '/v1/models/o1?model=gpt-4o-mini'));
    rows.push(inferRow(key, '/v1/chat/completions/', 'gpt-4o'));
  }

  for (const r of rows) {
    r.expect = reference(r);
    if (r.expect.gap) r.todo = r.expect.gap;
  }
  const seen = new Set();
  for (const r of rows) {
    if (seen.has(r.id)) throw new Error(`duplicate row id: ${r.id}`);
    seen.add(r.id);
  }
  return rows;
}

export const ROWS = generate();
