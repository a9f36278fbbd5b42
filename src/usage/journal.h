/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the crash-safe usage journal of SPEC §8: each worker copies its usage records
 * into slots of its own mmap'd segment file and publishes each with one release store, so a
 * request costs no syscall, lock or allocation, and a killed process loses nothing it had
 * returned from kg_journal_append for (the page cache keeps a MAP_SHARED mapping's writes).
 * One reader thread (the usage writer) drains the segments into the store in batches and
 * releases what the store holds; the next process adopts whatever was not released. A record
 * may thus be read again after a crash or a rewind, never lost: the store keeps it once by its
 * request id.
 *
 * A segment file is a header slot (magic, version, sizes, a nonce, the reader's last release, the
 * order in which a writer took it) and KG_JOURNAL_SLOTS record slots, each a commit word
 * (nonce << 32 | slot index, stored last), a checksum, then the record.
 *
 * No segment is made on a worker's loop in the normal course: the reader thread calls
 * kg_journal_prepare every round, which gives each writer a spare segment made ready in full
 * (created, allocated on disk, mapped and pre-faulted writable); a writer whose segment is full
 * takes its spare with one atomic exchange.
 */
#ifndef KG_USAGE_JOURNAL_H
#define KG_USAGE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usage/usage.h"

/* Record slots per segment: 8 MiB of 512-byte slots. A writer takes its spare when its segment is
 * full and the reader thread makes the next one within a round (KG_USAGE_FLUSH_MS = 50 ms, plus
 * the round's store writes, plus ~10 ms to create and pre-fault 8 MiB, measured on ext4). So a
 * segment must outlast a few rounds at the busiest worker's rate, else the writer makes one on its
 * loop: 16,384 slots last 164 ms at 100,000 appends/s, three rounds; 4,096 (41 ms) would not last
 * one. The cost is memory: a worker maps 16 MiB (its segment and its spare), plus full segments
 * until the store has them. */
#define KG_JOURNAL_SLOTS 16384
#define KG_JOURNAL_SLOT_SIZE 512 /* bytes per slot (a power of two), the header slot too */
/* How long a released full segment is kept for reuse as a spare (journal.c) before it is unlinked:
 * long enough to span a lull in traffic, short enough that an idle gateway soon maps only what its
 * workers are writing to. */
#define KG_JOURNAL_POOL_IDLE_MS 10000

typedef struct kg_journal kg_journal_t;               /* a directory of segment files, process-wide */
typedef struct kg_journal_writer kg_journal_writer_t; /* one per worker thread; only that thread appends */

/**
 * Opens (mkdir -p, mode 0700) the journal directory and locks it against a second process.
 * Segments left there by an earlier process (killed or not) are adopted for replay: the reader
 * returns their committed records first, each writer's in order; segments with nothing to
 * replay (an unused spare, or one released in full) are deleted. Files that are not segments of this format are logged
 * and left alone. NULL + err on failure.
 */
kg_journal_t *kg_journal_open(const char *dir, char *err, size_t err_cap);
/**
 * Frees everything (writers must be freed first). Segments whose records were all released are
 * unlinked; others stay for the next start.
 */
void kg_journal_close(kg_journal_t *j);

/**
 * A writer owns one current segment (a file of KG_JOURNAL_SLOTS fixed-size slots, allocated on
 * disk and mmap'd MAP_SHARED, pre-faulted: call this before the worker's loop runs) and at most
 * one spare. NULL (logged) when the segment cannot be made.
 */
kg_journal_writer_t *kg_journal_writer_new(kg_journal_t *j);
/**
 * Leaves the current segment to the reader (it is released like a full one), its unused spare to
 * be deleted, and frees w. Not concurrently with appends to w.
 */
void kg_journal_writer_free(kg_journal_writer_t *w);
/**
 * Copies r into the next slot and then publishes it with a release store of the slot's commit
 * word: no syscall, no lock, no allocation. When the segment is full the writer takes its spare
 * (an atomic exchange; the full segment stays for the reader), or, if kg_journal_prepare has not
 * given it one, creates a segment itself, on the caller's thread (counted by
 * kg_journal_sync_rollovers). Returns false only when no new segment can be made (disk full...):
 * the caller counts/logs it.
 */
bool kg_journal_append(kg_journal_writer_t *w, const kg_usage_record_t *r);
/** Rollovers that found no spare and made their segment on the writer's thread; any thread. */
uint64_t kg_journal_sync_rollovers(kg_journal_t *j);

/* Reader side: exactly ONE thread (the usage writer) calls these. */

/**
 * Gives every writer that has no spare segment one, made ready in full (this takes the file
 * system's time: ~10 ms per segment, on this thread, with no lock held that a writer takes).
 * Cheap when every writer has one. A spare is deleted unused when its writer is freed, or by the
 * next kg_journal_open if the process is killed.
 */
void kg_journal_prepare(kg_journal_t *j);
/**
 * Copies up to cap committed records not yet read into out[] (oldest segments first; each
 * writer's records in the order it appended them) and advances the read cursor.
 */
size_t kg_journal_read(kg_journal_t *j, kg_usage_record_t *out, size_t cap);
/**
 * Whether the next kg_journal_read may return records that are in the store already: records an
 * earlier process left (it may have stored them before it stopped without releasing them), and
 * records read again after kg_journal_rewind (the failed write may yet have landed). When false,
 * every record the next read returns is read for the first time.
 */
bool kg_journal_replaying(kg_journal_t *j);
/**
 * Everything read so far is safely in the store: segments that are finished (full, left by a
 * freed writer, or adopted from an earlier process) and fully read are unmapped and unlinked, or,
 * if full, kept (one per writer at most) for kg_journal_prepare to reuse.
 */
void kg_journal_release(kg_journal_t *j);
/** The store write failed: the next read starts again from the last release. */
void kg_journal_rewind(kg_journal_t *j);
/** Committed records not yet released (the /metrics journal backlog gauge); any thread. */
uint64_t kg_journal_backlog(kg_journal_t *j);

#endif
