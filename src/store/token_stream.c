/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the token stream (see token_stream.h): a reader thread runs the scan and
 * copies each row, strings and all, into the current block; filled blocks go to the consumer in
 * order through a mutex and a condition variable, a block (about three thousand tokens) at a
 * time, so the two threads meet a few hundred times for a million keys. Emptied blocks come back
 * to the reader; at most max_blocks exist at once, so a slow consumer holds the reader back
 * instead of the whole table being copied into memory.
 */
#include "store/token_stream.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define DEFAULT_BLOCK_BYTES ((size_t)1 << 20)
#define DEFAULT_MAX_BLOCKS 32

/* A token as a block holds it: the struct, then its strings, which its pointers point to. */
typedef struct record {
    size_t bytes; /* header and strings, rounded up so that the next record is aligned */
    kg_token_t token;
} record_t;

typedef struct block {
    struct block *next;
    size_t used, cap;
    alignas(max_align_t) char data[];
} block_t;

struct kg_token_stream {
    kg_store_t *st;
    pthread_mutex_t lock;
    pthread_cond_t changed;         /* a block was filled or given back, the scan ended, or stop */
    block_t *full_head, *full_tail; /* filled, in storage order, not yet taken */
    block_t *spare;                 /* given back, to be filled again */
    size_t n_blocks;                /* blocks in existence: full, spare, being filled or read */
    size_t block_bytes, max_blocks;
    bool done;        /* the scan ended; rv is its result */
    atomic_bool stop; /* the consumer wants no more tokens (set under the lock) */
    kg_err_t rv;
    block_t *filling;                 /* the reader's */
    kg_token_stream_counts_t counts;  /* rows_copied: the reader's; most_blocks: under the lock */
    kg_token_stream_counts_t *report; /* where the counts go at the end, or NULL */
    bool threaded;
    pthread_t tid;
};

/* Every string member of kg_token_t, so that a copy carries whatever the scan filled in. */
static const size_t string_members[] = {
    offsetof(kg_token_t, org_id),         offsetof(kg_token_t, team_id),     offsetof(kg_token_t, name),
    offsetof(kg_token_t, description),    offsetof(kg_token_t, environment), offsetof(kg_token_t, purpose),
    offsetof(kg_token_t, scopes),         offsetof(kg_token_t, allow),       offsetof(kg_token_t, allowed_domains),
    offsetof(kg_token_t, prompt_modules), offsetof(kg_token_t, prompt_text), offsetof(kg_token_t, rate_limits),
    offsetof(kg_token_t, budget),         offsetof(kg_token_t, metadata),    offsetof(kg_token_t, created_by),
    offsetof(kg_token_t, revoked_by),
};
#define N_STRINGS (sizeof(string_members) / sizeof(string_members[0]))

static const char *string_of(const kg_token_t *t, size_t i)
{
    return *(char *const *)((const char *)t + string_members[i]);
}

static void set_string(kg_token_t *t, size_t i, char *str)
{
    *(char **)((char *)t + string_members[i]) = str;
}

/* Hands the reader's current block to the consumer (caller holds the lock). */
static void publish_filling(kg_token_stream_t *s)
{
    block_t *b = s->filling;
    s->filling = NULL;
    if (b == NULL)
        return;
    b->next = NULL;
    if (s->full_tail != NULL)
        s->full_tail->next = b;
    else
        s->full_head = b;
    s->full_tail = b;
    pthread_cond_broadcast(&s->changed);
}

/* A block with room for `bytes`: the current one, a spare, or a new one within max_blocks; NULL
 * once the consumer has stopped. A record larger than a block gets a block of its own. */
static block_t *room_for(kg_token_stream_t *s, size_t bytes)
{
    if (s->filling != NULL && s->filling->cap - s->filling->used >= bytes)
        return s->filling;
    pthread_mutex_lock(&s->lock);
    publish_filling(s); /* first: the consumer may be waiting for it to give a block back */
    while (!atomic_load(&s->stop) && s->spare == NULL && s->n_blocks >= s->max_blocks)
        pthread_cond_wait(&s->changed, &s->lock);
    block_t *b = NULL;
    if (!atomic_load(&s->stop)) {
        if ((b = s->spare) != NULL)
            s->spare = b->next;
        if (b != NULL && b->cap < bytes) { /* a spare too small for this record makes way for one */
            free(b);
            b = NULL;
            s->n_blocks--;
        }
        if (b == NULL) {
            size_t cap = bytes > s->block_bytes ? bytes : s->block_bytes;
            b = kg_xmalloc(sizeof(*b) + cap);
            b->cap = cap;
            if (++s->n_blocks > s->counts.most_blocks)
                s->counts.most_blocks = s->n_blocks;
        }
        b->used = 0;
    }
    s->filling = b;
    pthread_mutex_unlock(&s->lock);
    return b;
}

static bool copy_token(void *ctx, const kg_token_t *t)
{
    kg_token_stream_t *s = ctx;
    size_t lengths[N_STRINGS], bytes = sizeof(record_t);
    for (size_t i = 0; i < N_STRINGS; i++) {
        const char *str = string_of(t, i);
        lengths[i] = str != NULL ? strlen(str) + 1 : 0;
        bytes += lengths[i];
    }
    bytes = (bytes + alignof(record_t) - 1) / alignof(record_t) * alignof(record_t);
    if (atomic_load_explicit(&s->stop, memory_order_relaxed))
        return false;
    block_t *b = room_for(s, bytes);
    if (b == NULL)
        return false; /* stopped while waiting for a block */
    record_t *r = (record_t *)(b->data + b->used);
    r->bytes = bytes;
    r->token = *t;
    char *at = (char *)(r + 1);
    for (size_t i = 0; i < N_STRINGS; i++) {
        if (lengths[i] == 0)
            continue;
        memcpy(at, string_of(t, i), lengths[i]);
        set_string(&r->token, i, at);
        at += lengths[i];
    }
    b->used += bytes;
    s->counts.rows_copied++;
    return true;
}

static void *reader_main(void *arg)
{
    kg_token_stream_t *s = arg;
    kg_err_t rv = kg_store_token_scan(s->st, copy_token, s);
    pthread_mutex_lock(&s->lock);
    if (s->filling != NULL && s->filling->used > 0)
        publish_filling(s);
    free(s->filling); /* an empty block, or NULL */
    s->filling = NULL;
    s->done = true;
    s->rv = rv;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

kg_token_stream_t *kg_token_stream_start_sized(kg_store_t *st, size_t block_bytes, size_t max_blocks,
                                               kg_token_stream_counts_t *counts)
{
    kg_token_stream_t *s = kg_xcalloc(1, sizeof(*s));
    s->st = st;
    s->report = counts;
    atomic_init(&s->stop, false);
    s->block_bytes = block_bytes;
    s->max_blocks = max_blocks > 0 ? max_blocks : 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->threaded = pthread_create(&s->tid, NULL, reader_main, s) == 0;
    return s;
}

kg_token_stream_t *kg_token_stream_start(kg_store_t *st)
{
    return kg_token_stream_start_sized(st, DEFAULT_BLOCK_BYTES, DEFAULT_MAX_BLOCKS, NULL);
}

/* The next filled block, or NULL when the scan has ended and every block was taken. */
static block_t *take_block(kg_token_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->full_head == NULL && !s->done)
        pthread_cond_wait(&s->changed, &s->lock);
    block_t *b = s->full_head;
    if (b != NULL && (s->full_head = b->next) == NULL)
        s->full_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    return b;
}

static void give_back(kg_token_stream_t *s, block_t *b)
{
    pthread_mutex_lock(&s->lock);
    b->next = s->spare;
    s->spare = b;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

kg_err_t kg_token_stream_finish(kg_token_stream_t *s, kg_token_scan_fn fn, void *ctx)
{
    kg_err_t rv;
    if (!s->threaded) {
        rv = kg_store_token_scan(s->st, fn, ctx);
    } else {
        block_t *b;
        bool stopped = false;
        while ((b = take_block(s)) != NULL) {
            for (size_t at = 0; at < b->used && !stopped;) {
                record_t *r = (record_t *)(b->data + at);
                at += r->bytes;
                if (!fn(ctx, &r->token)) {
                    stopped = true;
                    pthread_mutex_lock(&s->lock);
                    atomic_store(&s->stop, true); /* the reader ends its scan at its next row */
                    pthread_cond_broadcast(&s->changed);
                    pthread_mutex_unlock(&s->lock);
                }
            }
            give_back(s, b);
        }
        pthread_join(s->tid, NULL);
        rv = s->rv;
    }
    if (s->report != NULL)
        *s->report = s->counts;
    while (s->spare != NULL) {
        block_t *next = s->spare->next;
        free(s->spare);
        s->spare = next;
    }
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rv;
}
