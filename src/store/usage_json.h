/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the text form in which the store keeps usage records: one JSON array per
 * batch, each record an array of its sixteen fields in the order of USAGE_JSON_COLUMNS (the
 * `usage` view of migrate.c reads them back by position). Written by hand, not with yajl_gen:
 * a generator call per field, and sprintf for every integer, cost 1.85 µs a record, more than
 * SQLite's own work for the batch (docs/decisions.md, "Stored as batches of records").
 */
#ifndef KG_STORE_USAGE_JSON_H
#define KG_STORE_USAGE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "usage/usage.h"

/* The fields, by position, as the `usage` view names them. */
#define USAGE_JSON_COLUMNS                                                                                             \
    "request_id, at_ms, key_id, org_id, team_id, model, upstream_model, route, status, input_tokens,"                  \
    " output_tokens, cost_micro, latency_us, upstream_latency_us, stream, estimated"

/**
 * Writes the records whose `keep` entry is true (all of them when keep is NULL) into *buf as one
 * JSON array of arrays and returns its length (no NUL). *buf (malloc'd or NULL) of *cap bytes is
 * grown as needed and kept by the caller for the next call. Strings are read within their
 * arrays, so a record without a terminator is cut, not overrun.
 */
size_t kg_usage_json_encode(char **buf, size_t *cap, const kg_usage_record_t *recs, const bool *keep, size_t n);

#endif
