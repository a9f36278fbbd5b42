/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the digest table of digest_table.h: linear probing over a power-of-two
 * array of 16-byte slots, deletions as tombstones, growth (or a purge of tombstones) by building
 * a new array and publishing it under RCU.
 *
 * A slot's entry word is the whole truth for a reader: 0 (empty: the probe ends), TOMBSTONE
 * (deleted: the probe goes on), or tag << 48 | address. The writer stores a slot's hint, then its
 * entry with release order, so a reader that sees an entry sees a hint at least as new; a hint is
 * only ever prefetched, never dereferenced, so a stale one costs a miss, not a wrong answer.
 */
#include "keys/digest_table.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <urcu.h>

#include "core/alloc.h"

#define ADDR_BITS 48
#define ADDR_MASK (((uintptr_t)1 << ADDR_BITS) - 1)
#define EMPTY ((uintptr_t)0)
#define TOMBSTONE ((uintptr_t)1) /* an address no object has */
#define MIN_SLOTS 1024
#define CACHE_LINE 64
#define HUGE_PAGE ((size_t)2 << 20)

typedef struct slot {
    _Atomic uintptr_t entry;
    _Atomic(const void *) hint;
} slot_t;

typedef struct slot_array {
    struct rcu_head rcu;
    size_t mask;  /* slots - 1 */
    size_t bytes; /* of the mapping */
    slot_t slots[];
} slot_array_t;

struct kg_digest_table {
    slot_array_t *slots; /* RCU: replaced whole when the table grows */
    size_t digest_offset, obj_bytes, hint_bytes;
    size_t live, tombstones; /* writer only */
};

/* SHA-256 output is uniform: its first word picks the home slot, two bytes after it the tag. */
static uint64_t home_of(const uint8_t *digest)
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return h;
}

static uintptr_t tag_of(const uint8_t *digest)
{
    uint16_t tag;
    memcpy(&tag, digest + 8, sizeof(tag));
    return (uintptr_t)tag << ADDR_BITS;
}

static const uint8_t *digest_of(const kg_digest_table_t *t, uintptr_t entry)
{
    return (const uint8_t *)(entry & ADDR_MASK) + t->digest_offset;
}

static bool is_object(uintptr_t entry)
{
    return entry != EMPTY && entry != TOMBSTONE;
}

static void prefetch_range(const void *p, size_t bytes)
{
    for (uintptr_t line = (uintptr_t)p & ~(uintptr_t)(CACHE_LINE - 1); line < (uintptr_t)p + bytes; line += CACHE_LINE)
        __builtin_prefetch((const void *)line);
}

/* Zeroed (every slot empty), in its own mapping, given to transparent huge pages when it spans
 * some: each lookup reads one random slot, and with 4 KiB pages that was a TLB miss (a page
 * walk) on top of the cache miss at a million keys. */
static slot_array_t *array_new(size_t n_slots)
{
    size_t bytes = sizeof(slot_array_t) + n_slots * sizeof(slot_t);
    slot_array_t *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        fprintf(stderr, "keygate: cannot map %zu bytes for the key index\n", bytes);
        abort();
    }
    if (bytes >= HUGE_PAGE)
        (void)madvise(a, bytes, MADV_HUGEPAGE); /* a hint: without it the table works the same */
    a->mask = n_slots - 1;
    a->bytes = bytes;
    return a;
}

static void array_free(slot_array_t *a)
{
    munmap(a, a->bytes);
}

static void array_free_rcu(struct rcu_head *head)
{
    array_free(caa_container_of(head, slot_array_t, rcu));
}

kg_digest_table_t *kg_digest_table_new(size_t digest_offset, size_t obj_bytes, size_t hint_bytes)
{
    kg_digest_table_t *t = kg_xcalloc(1, sizeof(*t));
    t->slots = array_new(MIN_SLOTS);
    t->digest_offset = digest_offset, t->obj_bytes = obj_bytes, t->hint_bytes = hint_bytes;
    return t;
}

void kg_digest_table_free(kg_digest_table_t *t)
{
    if (t == NULL)
        return;
    array_free(t->slots);
    free(t);
}

void *kg_digest_table_find(const kg_digest_table_t *t, const uint8_t digest[KG_DIGEST_BYTES])
{
    const slot_array_t *a = rcu_dereference(t->slots);
    const uintptr_t tag = tag_of(digest);
    size_t i = home_of(digest) & a->mask;
    for (size_t probes = 0; probes <= a->mask; probes++, i = (i + 1) & a->mask) {
        uintptr_t e = atomic_load_explicit(&a->slots[i].entry, memory_order_acquire);
        if (e == EMPTY)
            return NULL;
        if ((e & ~ADDR_MASK) != tag || e == TOMBSTONE)
            continue;
        /* Both fetched before the object's digest is compared: the two misses overlap. */
        const void *hint = atomic_load_explicit(&a->slots[i].hint, memory_order_relaxed);
        prefetch_range((const void *)(e & ADDR_MASK), t->obj_bytes);
        if (hint != NULL)
            prefetch_range(hint, t->hint_bytes);
        if (memcmp(digest_of(t, e), digest, KG_DIGEST_BYTES) == 0)
            return (void *)(e & ADDR_MASK);
    }
    return NULL;
}

void kg_digest_table_prefetch(const kg_digest_table_t *t, const uint8_t digest[KG_DIGEST_BYTES])
{
    const slot_array_t *a = rcu_dereference(t->slots);
    __builtin_prefetch(&a->slots[home_of(digest) & a->mask]);
}

/* ==== Writer side ==== */

static void slot_store(slot_t *s, uintptr_t entry, const void *hint)
{
    atomic_store_explicit(&s->hint, hint, memory_order_relaxed);
    atomic_store_explicit(&s->entry, entry, memory_order_release);
}

/* The smallest array that holds n objects at most half full (growth waits until 70 %). */
static size_t slots_for(size_t n)
{
    size_t slots = MIN_SLOTS;
    while (slots / 2 < n)
        slots *= 2;
    return slots;
}

/* Moves every object to a new array of n_slots (no tombstones), publishes it and retires the old. */
static void rebuild(kg_digest_table_t *t, size_t n_slots)
{
    slot_array_t *old = t->slots, *a = array_new(n_slots);
    for (size_t i = 0; i <= old->mask; i++) {
        uintptr_t e = atomic_load_explicit(&old->slots[i].entry, memory_order_relaxed);
        if (!is_object(e))
            continue;
        size_t j = home_of(digest_of(t, e)) & a->mask;
        while (atomic_load_explicit(&a->slots[j].entry, memory_order_relaxed) != EMPTY)
            j = (j + 1) & a->mask;
        slot_store(&a->slots[j], e, atomic_load_explicit(&old->slots[i].hint, memory_order_relaxed));
    }
    rcu_assign_pointer(t->slots, a);
    t->tombstones = 0;
    call_rcu(&old->rcu, array_free_rcu);
}

/* Makes room for `more` insertions: live objects and tombstones stay under 70 % of the slots. */
static void make_room(kg_digest_table_t *t, size_t more)
{
    if ((t->live + t->tombstones + more) * 10 > (t->slots->mask + 1) * 7)
        rebuild(t, slots_for(t->live + more));
}

static uintptr_t entry_of(const kg_digest_table_t *t, const void *obj)
{
    uintptr_t addr = (uintptr_t)obj;
    if ((addr & ~ADDR_MASK) != 0 || addr <= TOMBSTONE) {
        fprintf(stderr, "keygate: the key index cannot hold an object at %p (above 2^48)\n", obj);
        abort();
    }
    return tag_of((const uint8_t *)obj + t->digest_offset) | addr;
}

/*
 * Inserts `entry` (entry_of an object) from its home slot on, or finds the object with its digest:
 * that one is replaced (and returned) if `replace`, else kept (and returned, the new one not
 * inserted). Room must have been made. The new object is read only if a tag matches.
 */
static void *insert(kg_digest_table_t *t, uintptr_t entry, size_t home, const void *hint, bool replace)
{
    const uint8_t *digest = digest_of(t, entry);
    slot_array_t *a = t->slots;
    slot_t *reuse = NULL;
    size_t i = home & a->mask;
    for (;; i = (i + 1) & a->mask) { /* ends: under 70 % of the slots are taken */
        uintptr_t e = atomic_load_explicit(&a->slots[i].entry, memory_order_relaxed);
        if (e == EMPTY)
            break;
        if (e == TOMBSTONE) {
            if (reuse == NULL)
                reuse = &a->slots[i];
            continue;
        }
        if ((e & ~ADDR_MASK) == (entry & ~ADDR_MASK) && memcmp(digest_of(t, e), digest, KG_DIGEST_BYTES) == 0) {
            if (replace)
                slot_store(&a->slots[i], entry, hint);
            return (void *)(e & ADDR_MASK);
        }
    }
    if (reuse != NULL)
        t->tombstones--;
    else
        reuse = &a->slots[i];
    slot_store(reuse, entry, hint);
    t->live++;
    return NULL;
}

void *kg_digest_table_put(kg_digest_table_t *t, void *obj, const void *hint)
{
    make_room(t, 1);
    return insert(t, entry_of(t, obj), home_of((const uint8_t *)obj + t->digest_offset), hint, true);
}

bool kg_digest_table_remove(kg_digest_table_t *t, const void *obj)
{
    slot_array_t *a = t->slots;
    size_t i = home_of((const uint8_t *)obj + t->digest_offset) & a->mask;
    for (;; i = (i + 1) & a->mask) {
        uintptr_t e = atomic_load_explicit(&a->slots[i].entry, memory_order_relaxed);
        if (e == EMPTY)
            return false;
        if ((e & ADDR_MASK) != (uintptr_t)obj || e == TOMBSTONE)
            continue;
        /* Before an empty slot no probe goes further: this one can be empty too. */
        bool last = atomic_load_explicit(&a->slots[(i + 1) & a->mask].entry, memory_order_relaxed) == EMPTY;
        slot_store(&a->slots[i], last ? EMPTY : TOMBSTONE, NULL);
        t->live--;
        t->tombstones += !last;
        return true;
    }
}

size_t kg_digest_table_put_many(kg_digest_table_t *t, void *const *objs, const void *const *hints, size_t n)
{
    if (t->live + n > UINT32_MAX / 2) { /* the sort's indexes and homes are 32-bit */
        fprintf(stderr, "keygate: %zu objects are more than the key index holds\n", t->live + n);
        abort();
    }
    kg_digest_table_reserve(t, t->live + n);
    make_room(t, n); /* tombstones too */
    /*
     * A counting sort of the objects by the region of the array their home slot is in (65,536
     * regions at most: the counts stay small, and a region is a few lines). Each object is read
     * once, in the caller's order (the order they were made in: memory order), for its entry
     * and home; the insertions in slot order then touch only the slots.
     */
    const size_t mask = t->slots->mask, regions = mask + 1 < 65536 ? mask + 1 : 65536;
    const unsigned shift = (unsigned)__builtin_ctzll((mask + 1) / regions);
    uint32_t *start = kg_xcalloc(regions + 1, sizeof(*start));
    uintptr_t *entries = kg_xcalloc(n + 1, sizeof(*entries));
    uint32_t *homes = kg_xcalloc(n + 1, sizeof(*homes)), *order = kg_xcalloc(n + 1, sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        entries[i] = entry_of(t, objs[i]);
        homes[i] = (uint32_t)(home_of(digest_of(t, entries[i])) & mask); /* slots <= 2^32 */
        start[(homes[i] >> shift) + 1]++;
    }
    for (size_t r = 0; r < regions; r++)
        start[r + 1] += start[r];
    for (size_t i = 0; i < n; i++)
        order[start[homes[i] >> shift]++] = (uint32_t)i;
    free(start);
    size_t duplicates = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        duplicates += insert(t, entries[i], homes[i], hints != NULL ? hints[i] : NULL, false) != NULL;
    }
    free(order);
    free(homes);
    free(entries);
    return duplicates;
}

void kg_digest_table_reserve(kg_digest_table_t *t, size_t n)
{
    if (slots_for(n) > t->slots->mask + 1)
        rebuild(t, slots_for(n));
}

size_t kg_digest_table_count(const kg_digest_table_t *t)
{
    return t->live;
}

void kg_digest_table_for_each(const kg_digest_table_t *t, void (*fn)(void *ctx, void *obj), void *ctx)
{
    const slot_array_t *a = t->slots;
    for (size_t i = 0; i <= a->mask; i++) {
        uintptr_t e = atomic_load_explicit(&a->slots[i].entry, memory_order_relaxed);
        if (is_object(e))
            fn(ctx, (void *)(e & ADDR_MASK));
    }
}
