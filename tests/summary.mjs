// Prints one closing line, "tests: N passed, N failed", from meson's testlog.json: the unit
// harness reports "N passed, N failed" and node's test runner "# pass N" / "# fail N".
import { readFileSync } from 'node:fs';

let passed = 0, failed = 0;
const lines = readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean);
for (const line of lines) {
  const t = JSON.parse(line);
  const out = t.stdout || '';
  const unit = [...out.matchAll(/^(\d+) passed, (\d+) failed$/gm)].pop();
  const pass = [...out.matchAll(/^# pass (\d+)$/gm)].pop();
  const fail = [...out.matchAll(/^# fail (\d+)$/gm)].pop();
  if (unit) {
    passed += Number(unit[1]);
    failed += Number(unit[2]);
  } else if (pass) {
    passed += Number(pass[1]);
    failed += Number(fail ? fail[1] : 0);
  } else {
    // A runner that died before reporting counts as one failure, never as silence.
    if (t.result !== 'OK') failed += 1;
  }
  if (t.result !== 'OK' && !unit && !pass) console.error(`${t.name}: ${t.result}`);
}
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
