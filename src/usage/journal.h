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
 * A segment file is a header slot (magic, version, sizes, a nonce, the reader's last release)
 * and KG_JOURNAL_SLOTS record slots, each a commit word (nonce << 32 | slot index, stored last),
 * a checksum, then the record.
 */
#ifndef KG_USAGE_JOURNAL_H
#define KG_USAGE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usage/usage.h"

#define KG_JOURNAL_SLOTS 4096    /* record slots per segment: 2 MiB of 512-byte slots */
#define KG_JOURNAL_SLOT_SIZE 512 /* bytes per slot (a power of two), the header slot too */

typedef struct kg_journal kg_journal_t;               /* a directory of segment files, process-wide */
typedef struct kg_journal_writer kg_journal_writer_t; /* one per worker thread; only that thread appends */

/**
 * Opens (mkdir -p, mode 0700) the journal directory and locks it against a second process.
 * Segments left there by an earlier process (killed or not) are adopted for replay: the reader
 * returns their committed records first. Files that are not segments of this format are logged
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
 * disk and mmap'd MAP_SHARED). NULL (logged) when the segment cannot be made.
 */
kg_journal_writer_t *kg_journal_writer_new(kg_journal_t *j);
/** Leaves the current segment to the reader (it is released like a full one) and frees w. */
void kg_journal_writer_free(kg_journal_writer_t *w);
/**
 * Copies r into the next slot and then publishes it with a release store of the slot's commit
 * word: no syscall, no lock, no allocation, except when the segment is full: then the writer
 * opens a new segment (the full one stays for the reader). Returns false only when no new
 * segment can be made (disk full...): the caller counts/logs it.
 */
bool kg_journal_append(kg_journal_writer_t *w, const kg_usage_record_t *r);

/* Reader side: exactly ONE thread (the usage writer) calls these. */

/**
 * Copies up to cap committed records not yet read into out[] (oldest segments first; each
 * writer's records in the order it appended them) and advances the read cursor.
 */
size_t kg_journal_read(kg_journal_t *j, kg_usage_record_t *out, size_t cap);
/**
 * Everything read so far is safely in the store: segments that are finished (full, left by a
 * freed writer, or adopted from an earlier process) and fully read are unmapped and unlinked.
 */
void kg_journal_release(kg_journal_t *j);
/** The store write failed: the next read starts again from the last release. */
void kg_journal_rewind(kg_journal_t *j);
/** Committed records not yet released (the /metrics journal backlog gauge); any thread. */
uint64_t kg_journal_backlog(kg_journal_t *j);

#endif
