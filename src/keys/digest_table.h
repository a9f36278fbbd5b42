/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the table the key index finds a presented secret's record in: an open-addressing
 * hash table from a SHA-256 digest to an object that holds that digest, read lock-free under RCU
 * and written by one writer at a time.
 *
 * Why not liburcu's cds_lfht (docs/decisions.md, "The secret table"): its split-ordered lists cost
 * a bucket, a chain node or two, then the record and the key's state — four or five dependent
 * cache misses per lookup at a million keys, measured at 680–870 ns. Here a slot is 16 bytes
 * (four to a cache line): the object's address with a 16-bit tag of the digest in its unused top
 * bits, and a hint (an address the reader will want next, e.g. the key's state). A lookup reads
 * the slot's line, then fetches the object and its hint together: two rounds of misses.
 *
 * Readers call kg_digest_table_find inside an RCU read-side section of liburcu's default flavour;
 * the writer (serialised by its caller) runs registered with RCU and inside a read-side section,
 * as the key index's writers do. A grown slot array replaces the old one with rcu_assign_pointer
 * and the old one is freed after a grace period. Objects are the caller's: the table never frees
 * one, and a removed or replaced object must outlive the readers that may still hold it.
 */
#ifndef KG_KEYS_DIGEST_TABLE_H
#define KG_KEYS_DIGEST_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_DIGEST_BYTES 32

typedef struct kg_digest_table kg_digest_table_t;

/**
 * An empty table whose objects hold their digest at `digest_offset`. A reader that finds an
 * object will next read its first `obj_bytes` and its hint's first `hint_bytes`: both are
 * prefetched as soon as the slot is read.
 */
kg_digest_table_t *kg_digest_table_new(size_t digest_offset, size_t obj_bytes, size_t hint_bytes);
/** Frees the table (not the objects). No reader may be in it any more. */
void kg_digest_table_free(kg_digest_table_t *t);

/** Reader: the object holding `digest`, or NULL. Inside an RCU read-side section. */
void *kg_digest_table_find(const kg_digest_table_t *t, const uint8_t digest[KG_DIGEST_BYTES]);
/** Reader: starts fetching the slot a find of `digest` reads first (work done meanwhile hides the miss). */
void kg_digest_table_prefetch(const kg_digest_table_t *t, const uint8_t digest[KG_DIGEST_BYTES]);

/**
 * Writer: adds `obj` (its digest already set; its address below 2^48, as every user-space
 * address is on Linux's x86-64 and arm64) with `hint`. An object with the same digest is
 * replaced and returned for the caller to retire after a grace period; NULL if there was none.
 */
void *kg_digest_table_put(kg_digest_table_t *t, void *obj, const void *hint);
/** Writer: removes `obj` itself (by identity). False if it is not in the table. */
bool kg_digest_table_remove(kg_digest_table_t *t, const void *obj);
/**
 * Writer: adds n objects none of which is in the table yet, in slot order (each insertion then
 * finds its slot's line in cache). Returns how many were not added because an object with the
 * same digest was already there (the table keeps the first). Fewer than 2^31 objects in all.
 */
size_t kg_digest_table_put_many(kg_digest_table_t *t, void *const *objs, const void *const *hints, size_t n);
/** Writer: grows the table now so that n objects fit without growing again. */
void kg_digest_table_reserve(kg_digest_table_t *t, size_t n);

/** Writer: the number of objects. */
size_t kg_digest_table_count(const kg_digest_table_t *t);
/** Writer: calls fn for each object, in slot order. fn must not change the table. */
void kg_digest_table_for_each(const kg_digest_table_t *t, void (*fn)(void *ctx, void *obj), void *ctx);

#endif
