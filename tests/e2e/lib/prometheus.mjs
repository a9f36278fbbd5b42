// SPDX-License-Identifier: Apache-2.0
//
// Parses Prometheus' text exposition format with the Prometheus project's own parser (the
// official Python client, Debian's python3-prometheus-client), so the tests read /metrics the
// way a Prometheus-compatible scraper does, not with a hand-written regex.

import { execFileSync } from 'node:child_process';

const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "documentation": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;

/**
 * Families by name: {name, type, documentation, samples: [{name, labels, value}]}. Throws when
 * the text does not parse. A counter's family name drops its `_total` suffix, as the parser does.
 */
export function parsePrometheus(text) {
  const json = execFileSync('/usr/bin/python3', ['-c', PARSE], { input: text, encoding: 'utf8', timeout: 10000 });
  return Object.fromEntries(JSON.parse(json).map((f) => [f.name, f]));
}

/** The value of the one sample named `name` whose labels include `labels`; undefined if none. */
export function sampleValue(family, name, labels = {}) {
  const s = family?.samples.find(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)
  );
  return s?.value;
}
