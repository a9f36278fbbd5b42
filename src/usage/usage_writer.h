/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns moving usage records from the journal to the store (SPEC §8, issue 6): at
 * start, synchronously, whatever an earlier process left in the journal (replay); then, on its
 * own thread and connection, what the workers journal — read every KG_USAGE_FLUSH_MS (which also
 * keeps the workers supplied with spare segments), stored once KG_USAGE_COMMIT_MS after the
 * first record read or as soon as KG_USAGE_BATCH are waiting: one transaction per batch, each
 * request id stored once, the journal released only after the commit. It also seeds the
 * in-memory spend counters (budgets) from the stored usage at start.
 */
#ifndef KG_USAGE_USAGE_WRITER_H
#define KG_USAGE_USAGE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "keys/key_index.h"
#include "store/store.h"
#include "usage/journal.h"

#define KG_USAGE_FLUSH_MS 50
/* A batch's cost is mostly per record, plus one rollup upsert per key and minute in it: with the
 * load spread over 1,000 keys, committing every 50 ms cost the writer 7.5-9.6 µs per request,
 * every 500 ms 4.4-5.0 (bench/run's spread pass set-up, one pinned core). */
#define KG_USAGE_COMMIT_MS 500
#define KG_USAGE_BATCH 8192 /* records held at most (~3.7 MB): a busier gateway commits sooner */

typedef struct kg_usage_writer kg_usage_writer_t;

/** Writes every committed journal record to st (batches, request ids once); *n_out = records read. */
kg_err_t kg_usage_drain(kg_journal_t *j, kg_store_t *st, size_t *n_out) KG_MUST_CHECK;

/**
 * Sets every key's and team's spend counters (all time, today, this month as of now_s) from
 * the usage in st. Call after the journal is drained and before requests are served.
 */
kg_err_t kg_usage_seed_spend(kg_store_t *st, kg_key_index_t *idx, int64_t now_s) KG_MUST_CHECK;

/** Starts the flushing thread with its own connection to db_path. NULL (err filled) on failure. */
kg_usage_writer_t *kg_usage_writer_start(kg_journal_t *j, const char *db_path, char *err, size_t err_cap);

/** Stops the thread after one last flush (the workers have stopped appending). */
void kg_usage_writer_stop(kg_usage_writer_t *w);

#endif
