/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/core/objpool.c: the pools the key index takes its records and states from.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "core/objpool.h"

typedef struct {
    uint64_t words[22]; /* 176 bytes, a key state's size */
} state_like_t;

#define N_OBJECTS 40000 /* 7.5 MiB at a 192-byte stride: several 2 MiB chunks */

static const state_like_t zero;

void test_objpool_objects(void)
{
    static kg_objpool_t pool = KG_OBJPOOL_INIT(sizeof(state_like_t), 64);
    state_like_t **objs = calloc(N_OBJECTS, sizeof(*objs));
    CHECK_INT(pool.stride, 192);
    /* Every object zeroed and aligned, and none shares a byte with another: each is filled
     * whole with its own number, and all are read back after the last allocation. */
    for (size_t i = 0; i < N_OBJECTS; i++) {
        objs[i] = kg_objpool_alloc(&pool);
        CHECK((uintptr_t)objs[i] % 64 == 0);
        CHECK(memcmp(objs[i], &zero, sizeof(zero)) == 0);
        for (size_t w = 0; w < 22; w++)
            objs[i]->words[w] = i;
    }
    size_t intact = 0;
    for (size_t i = 0; i < N_OBJECTS; i++) {
        bool ok = true;
        for (size_t w = 0; w < 22; w++)
            ok = ok && objs[i]->words[w] == i;
        intact += ok;
    }
    CHECK_INT(intact, N_OBJECTS);

    /* Freed objects are handed out again, zeroed, before any new memory is carved. */
    for (size_t i = 0; i < N_OBJECTS; i += 2)
        kg_objpool_free(&pool, objs[i]);
    kg_objpool_free(&pool, NULL); /* ignored */
    size_t reused = 0;
    for (size_t i = 0; i < N_OBJECTS; i += 2) {
        state_like_t *o = kg_objpool_alloc(&pool);
        CHECK(memcmp(o, &zero, sizeof(zero)) == 0);
        for (size_t k = 0; k < N_OBJECTS; k += 2) /* the freed ones are the even ones */
            if (objs[k] == o) {
                reused++;
                break;
            }
        objs[i] = o;
        if (i >= 200) /* a sample is enough: the search is quadratic */
            break;
    }
#ifndef KG_OBJPOOL_PLAIN
    CHECK_INT(reused, 101); /* calloc and free under ASan may hand anything back */
#endif
    for (size_t i = 0; i < N_OBJECTS; i++)
        if (i % 2 == 1 || i <= 200)
            kg_objpool_free(&pool, objs[i]);
    free(objs);
}

/* Two threads allocating and freeing at once: no object is ever handed to both. */
typedef struct {
    kg_objpool_t *pool;
    uint64_t tag;
    size_t clobbered;
} churn_t;

static void *churn(void *arg)
{
    churn_t *c = arg;
    state_like_t *held[64] = {0};
    for (size_t round = 0; round < 20000; round++) {
        size_t slot = round % 64;
        if (held[slot] != NULL) {
            c->clobbered += held[slot]->words[0] != c->tag || held[slot]->words[21] != c->tag;
            kg_objpool_free(c->pool, held[slot]);
        }
        held[slot] = kg_objpool_alloc(c->pool);
        held[slot]->words[0] = held[slot]->words[21] = c->tag;
    }
    for (size_t i = 0; i < 64; i++) {
        c->clobbered += held[i]->words[0] != c->tag || held[i]->words[21] != c->tag;
        kg_objpool_free(c->pool, held[i]);
    }
    return NULL;
}

void test_objpool_threads(void)
{
    static kg_objpool_t pool = KG_OBJPOOL_INIT(sizeof(state_like_t), 64);
    churn_t a = {&pool, 0xaaaa, 0}, b = {&pool, 0xbbbb, 0};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, churn, &a) == 0);
    CHECK(pthread_create(&tb, NULL, churn, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.clobbered, 0);
    CHECK_INT(b.clobbered, 0);
}

/* Whether this kernel has MADV_POPULATE_WRITE (Linux 5.14). */
#ifndef KG_OBJPOOL_PLAIN
static bool kernel_can_prefault(void)
{
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    void *scratch = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = scratch != MAP_FAILED && madvise(scratch, (size_t)page, MADV_POPULATE_WRITE) == 0;
    if (scratch != MAP_FAILED)
        munmap(scratch, (size_t)page);
    return ok;
#else
    return false;
#endif
}
#endif

/*
 * A reserve for a bulk load: the objects already handed out stay intact, every object after it
 * is zeroed, the first chunk's rest is handed out before the reserved region, and that region is
 * faulted in by the background thread without any allocation touching it (seen with mincore,
 * polled for at most ten seconds; skipped on a kernel without MADV_POPULATE_WRITE).
 */
void test_objpool_reserve(void)
{
#ifndef KG_OBJPOOL_PLAIN
    static kg_objpool_t pool = KG_OBJPOOL_INIT(sizeof(state_like_t), 64);
    enum { BEFORE = 100, RESERVED = 20000 }; /* 3.7 MiB reserved: two huge pages */
    state_like_t *before[BEFORE];
    for (size_t i = 0; i < BEFORE; i++) {
        before[i] = kg_objpool_alloc(&pool);
        before[i]->words[0] = before[i]->words[21] = i + 1;
    }
    /* A few objects are no bulk load: nothing is mapped for them (an idle gateway's memory). */
    char *chunk = pool.next;
    kg_objpool_reserve(&pool, 1000);
    CHECK(pool.next == chunk);
    size_t rest = (size_t)(pool.end - pool.next) / pool.stride; /* of the first chunk */
    CHECK(rest > 0);

    kg_objpool_reserve(&pool, RESERVED);
    char *region = pool.next;
    size_t region_bytes = (size_t)(pool.end - pool.next);
    CHECK(region_bytes >= (size_t)RESERVED * pool.stride);

    long page = sysconf(_SC_PAGESIZE);
    size_t pages = region_bytes / (size_t)page, resident = 0;
    unsigned char *in_core = calloc(pages, 1);
    bool can_prefault = kernel_can_prefault();
    for (int tries = 0; can_prefault && tries < 1000 && resident < pages; tries++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        CHECK(mincore(region, region_bytes, in_core) == 0);
        resident = 0;
        for (size_t p = 0; p < pages; p++)
            resident += in_core[p] & 1;
    }
    if (can_prefault)
        CHECK_INT(resident, pages);
    free(in_core);

    /* The first chunk's unused objects are handed out first (nothing stranded), then the region. */
    size_t rest_first = 0, in_region = 0;
    for (size_t i = 0; i < RESERVED + 1000; i++) {
        state_like_t *o = kg_objpool_alloc(&pool);
        CHECK(memcmp(o, &zero, sizeof(zero)) == 0);
        bool inside = (char *)o >= region && (char *)o < region + region_bytes;
        rest_first += i < rest && !inside;
        in_region += inside;
        o->words[0] = o->words[21] = 0xffff;
    }
    CHECK_INT(rest_first, rest);
    CHECK_INT(in_region, RESERVED + 1000 - rest);
    size_t intact = 0;
    for (size_t i = 0; i < BEFORE; i++)
        intact += before[i]->words[0] == i + 1 && before[i]->words[21] == i + 1;
    CHECK_INT(intact, BEFORE);
#endif
}
