/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns reading the token table ahead of its consumer: kg_store_token_scan run on a
 * thread of its own, its rows copied into blocks that the caller's thread takes in storage
 * order. At a million keys the scan's SQLite work and the key index's own work on each row were
 * each about half of the token pass; a stream lets them run on two cores, and lets the caller
 * do other work (the secrets' join table) while the first rows are read.
 */
#ifndef KG_STORE_TOKEN_STREAM_H
#define KG_STORE_TOKEN_STREAM_H

#include "store/store.h"

typedef struct kg_token_stream kg_token_stream_t;

/**
 * Starts the scan. `st` must be inside a read transaction, and is the stream's alone until
 * kg_token_stream_finish returns: its one connection is used by the stream's thread meanwhile.
 * If no thread can be started, the scan runs inside kg_token_stream_finish instead.
 */
kg_token_stream_t *kg_token_stream_start(kg_store_t *st);

/** What a stream did: the rows its reader copied, the most blocks that existed at once. */
typedef struct kg_token_stream_counts {
    size_t rows_copied, most_blocks;
} kg_token_stream_counts_t;

/** As kg_token_stream_start, with blocks of `block_bytes` and at most `max_blocks` of them read
 * ahead (the defaults: 1 MiB and 32), and `counts` (if not NULL) filled in when the stream
 * finishes; for tests. */
kg_token_stream_t *kg_token_stream_start_sized(kg_store_t *st, size_t block_bytes, size_t max_blocks,
                                               kg_token_stream_counts_t *counts);

/**
 * Gives every token to fn on the calling thread, in storage order and as kg_store_token_scan
 * would (strings borrowed for the call only; fn returning false stops the scan), then waits for
 * the stream's thread and frees the stream. Returns the scan's result.
 */
kg_err_t kg_token_stream_finish(kg_token_stream_t *s, kg_token_scan_fn fn, void *ctx) KG_MUST_CHECK;

#endif
