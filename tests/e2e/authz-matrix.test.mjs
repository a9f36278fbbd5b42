// SPDX-License-Identifier: Apache-2.0
//
// The authorization matrix (issue "Key policy"), one subtest per row, against KEYGATE_BIN (or
// build/keygate). The table and its reference model live in matrix/rows.mjs, the runner in
// matrix/run.mjs; matrix/prove-rows-can-fail.sh shows each rule is caught by some row.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BIN } from './lib/harness.mjs';
import { runMatrix } from './matrix/run.mjs';

test('authorization matrix: key kinds × routes × models/agents × environments × states', async (t) => {
  const r = await runMatrix(BIN);
  const strict = r.rows.length - r.todo.length;
  t.diagnostic(`${r.rows.length} rows (${strict} strict, ${r.todo.length} todo), ${r.failures.length} failed, ${Math.round(r.durationMs)} ms`);
  assert.ok(strict >= 150, `at least 150 strict rows (got ${strict})`);
  for (const res of r.results) {
    await t.test(res.row.id, { todo: res.row.todo }, () => {
      if (!res.ok) assert.fail(`${res.row.method} ${res.row.path} as ${res.row.key}: ${res.reason}`);
    });
  }
});
