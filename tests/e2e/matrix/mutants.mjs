// SPDX-License-Identifier: Apache-2.0
//
// Shows that the authorization matrix can fail: for each rule of meson_options.txt's
// `break_rule` (scope allowlist environment status org type) it builds a mutant keygate with that
// rule switched off, runs the whole matrix against it and reports which rows failed.
//
//   node tests/e2e/matrix/mutants.mjs [--rules scope,org] [--baseline build/keygate]
//                                     [--out /tmp] [--list-uncaught]
//
// A row "catches" a rule when it passes on the baseline binary and fails on the mutant.
// Exit status: 0 when every mutant is caught by at least one row; 1 when some mutant leaves
// every row passing (a rule no row checks); 2 when a mutant could not be built.
// Not part of `node --test tests/e2e/` (it builds six binaries); see README.md here.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runMatrix } from './run.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '../../..');
export const RULES = ['scope', 'allowlist', 'environment', 'status', 'org', 'type'];

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

/** meson setup (or configure) + ninja of /tmp/kg-mutant-<rule>; returns the binary's path. */
export function buildMutant(rule, outDir = '/tmp') {
  const dir = path.join(outDir, `kg-mutant-${rule}`);
  const sh = (cmd, args) => {
    const r = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) {
      const lines = `${r.stdout}\n${r.stderr}`.split('\n');
      const errors = lines.filter((l) => /error|FAILED/.test(l));
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n  ${(errors.length ? errors : lines.slice(-20)).slice(0, 12).join('\n  ')}`);
    }
  };
  if (fs.existsSync(path.join(dir, 'build.ninja'))) sh('meson', ['configure', dir, `-Dbreak_rule=${rule}`]);
  else sh('meson', ['setup', dir, `-Dbreak_rule=${rule}`]);
  sh('ninja', ['-C', dir, 'keygate']);
  return path.join(dir, 'keygate');
}

/** The ids of the strict rows (not `todo`) that failed in one run. */
async function failedIds(bin) {
  const r = await runMatrix(bin);
  return { ids: new Set(r.failures.map((f) => f.row.id)), run: r };
}

async function main() {
  const rules = (arg('rules', RULES.join(','))).split(',').filter(Boolean);
  const baselineBin = path.resolve(REPO_ROOT, arg('baseline', 'build/keygate'));
  const outDir = arg('out', '/tmp');
  const t0 = performance.now();

  const base = await failedIds(baselineBin);
  const strict = base.run.rows.filter((r) => !r.todo);
  console.log(`baseline ${path.relative(REPO_ROOT, baselineBin) || baselineBin}: ${strict.length} strict rows, ${base.ids.size} failing`);
  for (const id of base.ids) console.log(`  baseline failure: ${id}`);

  const caughtBy = new Map(strict.map((r) => [r.id, []]));
  const table = [];
  let buildFailed = false;
  for (const rule of rules) {
    let bin;
    try {
      bin = buildMutant(rule, outDir);
    } catch (e) {
      console.log(`mutant ${rule}: BUILD FAILED\n${e.message}`);
      table.push({ rule, count: null, examples: [] });
      buildFailed = true;
      continue;
    }
    const m = await failedIds(bin);
    const caught = [...m.ids].filter((id) => !base.ids.has(id));
    for (const id of caught) caughtBy.get(id)?.push(rule);
    const byCode = {};
    for (const f of m.run.failures) if (!base.ids.has(f.row.id)) {
      const k = `${f.row.expect.status} ${f.row.expect.code ?? f.row.expect.object}`;
      byCode[k] = (byCode[k] ?? 0) + 1;
    }
    table.push({ rule, count: caught.length, byCode, examples: caught.slice(0, 3), gatewayExit: m.run.gatewayLog.match(/AddressSanitizer|Segmentation|SIGSEGV/)?.[0] });
  }

  const w = Math.max(...rules.map((r) => r.length), 4);
  console.log(`\n${'rule'.padEnd(w)} | rows that failed | by expected answer`);
  console.log(`${'-'.repeat(w)}-|------------------|-------------------`);
  for (const t of table) {
    const what = t.count === null ? 'BUILD FAILED' : String(t.count);
    const codes = Object.entries(t.byCode ?? {}).map(([k, n]) => `${k} ×${n}`).join(', ');
    console.log(`${t.rule.padEnd(w)} | ${what.padStart(16)} | ${codes}`);
  }
  for (const t of table) if (t.examples.length) console.log(`  e.g. ${t.rule}: ${t.examples.join(' · ')}`);

  const uncaught = strict.filter((r) => caughtBy.get(r.id).length === 0 && !base.ids.has(r.id));
  const groups = {};
  for (const r of uncaught) {
    const k = `${r.expect.status} ${r.expect.code ?? r.expect.object}`;
    groups[k] = (groups[k] ?? 0) + 1;
  }
  console.log(`\nrows caught by no mutant: ${uncaught.length} of ${strict.length}`);
  for (const [k, n] of Object.entries(groups).sort((a, b) => b[1] - a[1])) console.log(`  ${k}: ${n}`);
  if (process.argv.includes('--list-uncaught')) for (const r of uncaught) console.log(`  · ${r.id}`);
  console.log(`\n${rules.length} mutants in ${Math.round((performance.now() - t0) / 1000)} s`);

  const silent = table.filter((t) => t.count === 0).map((t) => t.rule);
  if (silent.length) console.log(`NOT CAUGHT BY ANY ROW: ${silent.join(', ')}`);
  process.exitCode = buildFailed ? 2 : silent.length ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
