/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the change feed (see feed.h).
 */
#include "sync/feed.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "keys/key_format.h"
#include "store/token_stream.h"

#define CHANGES_PER_POLL 256
#define LAST_USED_BATCH 512

struct kg_feed {
    kg_store_t *store;
    kg_key_index_t *index;
    const kg_feed_catalog_t *catalog;
    int64_t seq;
    int64_t data_version;
    atomic_bool stopping;
    pthread_t tid;
};

/*
 * Both the feed thread and the admin worker apply changes. Reading a token and putting it
 * into the index happen under one lock, so the later of two appliers also read the later
 * state: the index never goes back to an older version of a key.
 */
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;

/* Re-reads one token and its live secrets and puts them into the index. */
static kg_err_t sync_token_locked(kg_store_t *st, kg_key_index_t *idx, const char *id, int64_t now)
{
    kg_token_t t = {0};
    kg_token_secret_t secrets[2];
    size_t n = 0;
    kg_err_t rv = kg_store_token_get(st, id, NULL, &t);
    if (rv == KG_ENOT_FOUND) {
        kg_key_index_remove(idx, id);
        return KG_OK;
    }
    if (rv != KG_OK)
        return rv;
    rv = kg_store_token_secrets(st, id, now, secrets, &n);
    if (rv == KG_OK)
        kg_key_index_put(idx, &t, secrets, n);
    kg_token_dispose(&t);
    return rv;
}

static kg_err_t sync_token(kg_store_t *st, kg_key_index_t *idx, const char *id, int64_t now)
{
    pthread_mutex_lock(&sync_lock);
    /* The token and its secrets are read in one snapshot, never half before a commit. */
    kg_err_t rv = kg_store_begin_read(st);
    if (rv == KG_OK) {
        rv = sync_token_locked(st, idx, id, now);
        kg_store_rollback(st); /* a read: nothing to commit */
    }
    pthread_mutex_unlock(&sync_lock);
    return rv;
}

/*
 * The bulk load at start joins tokens to their live secrets in memory: two sequential scans
 * (secrets, then tokens, whose rows a second thread reads while this one indexes the secrets and
 * joins: store/token_stream.h) and a hash table from token id to its secrets. SQLite would join them
 * with two b-tree descents per token (2.5 s of a million keys' start-up, measured); holding a
 * million tokens' rows, as a list query would, cost 600 MB at the peak.
 *
 * The table is open addressing over a flat array, each slot a tag of the id's hash and the
 * position of the token's newest secret, the hash computed once as the secret is collected.
 * glibc's hsearch_r, used before, hashes the key string on every probe, compares strings on
 * every probe and decides its hash by the first eight characters alone: a million secrets took
 * 0.28-0.33 s to enter against 0.07-0.1 s here (docs/decisions.md), all of it on the start-up's
 * critical path.
 */
typedef struct pending_secret {
    char token_id[KG_KEY_ID_LEN + 1];
    uint64_t id_hash; /* kg_key_id_hash(token_id) */
    kg_token_secret_t secret;
    int64_t created_at;
    uint32_t next; /* the same token's next secret's position + 1 (0: none) */
    bool shared;   /* its token has other live secrets (a rotation's grace) */
    bool taken;    /* joined to its token already: the in-order pairing steps over it */
} pending_secret_t;

typedef struct bulk_load {
    kg_key_index_load_t *load;
    pending_secret_t *secrets;
    size_t n, cap;
    size_t next_in_order; /* the first secret not yet known to be taken (see load_token) */
    uint64_t *by_token;   /* the join table: hash tag << 32 | the first secret's position + 1; 0 = empty */
    size_t mask;          /* its size - 1 (a power of two, at least twice the secrets) */
} bulk_load_t;

static void collect_secret(void *ctx, const char *token_id, const kg_token_secret_t *secret, int64_t created_at)
{
    bulk_load_t *b = ctx;
    size_t len = strlen(token_id);
    if (len > KG_KEY_ID_LEN)
        return; /* not an id this store makes */
    if (b->n == b->cap) {
        b->cap = b->cap != 0 ? 2 * b->cap : 1024;
        b->secrets = kg_xrealloc(b->secrets, b->cap * sizeof(*b->secrets));
    }
    pending_secret_t *p = &b->secrets[b->n++];
    memcpy(p->token_id, token_id, len + 1);
    p->id_hash = kg_key_id_hash(token_id);
    p->secret = *secret;
    p->created_at = created_at;
    p->next = 0;
    p->shared = p->taken = false;
}

/* The join table's slot for a token id: the one that holds its secrets, or the empty one where
 * they go. The table is never more than half full, so the probe ends. */
static uint64_t *join_slot(const bulk_load_t *b, const char *token_id, uint64_t hash)
{
    const uint32_t tag = (uint32_t)(hash >> 32);
    for (size_t at = hash & b->mask;; at = (at + 1) & b->mask) {
        uint64_t *slot = &b->by_token[at];
        if (*slot == 0 ||
            ((uint32_t)(*slot >> 32) == tag && strcmp(b->secrets[(uint32_t)*slot - 1].token_id, token_id) == 0))
            return slot;
    }
}

/* Indexes the collected secrets by token id (after collecting: the table holds positions). */
static bool index_secrets(bulk_load_t *b)
{
    size_t size = 16;
    if (b->n >= UINT32_MAX)
        return false; /* positions are 32-bit */
    while (size < 2 * b->n)
        size *= 2;
    b->by_token = kg_xcalloc(size, sizeof(*b->by_token));
    b->mask = size - 1;
    for (size_t i = 0; i < b->n; i++) {
        pending_secret_t *p = &b->secrets[i];
        uint64_t *slot = join_slot(b, p->token_id, p->id_hash);
        if (*slot != 0) { /* the token has another secret: chain this one in front */
            p->next = (uint32_t)*slot;
            p->shared = b->secrets[p->next - 1].shared = true;
        }
        *slot = (p->id_hash >> 32) << 32 | (uint64_t)(i + 1);
    }
    return true;
}

/* Whether a goes before b: the current secret first, then the newest (the store's own order). */
static bool secret_before(const pending_secret_t *a, const pending_secret_t *b)
{
    if ((a->secret.expires_at == 0) != (b->secret.expires_at == 0))
        return a->secret.expires_at == 0;
    return a->created_at > b->created_at;
}

/*
 * A key's token row and its first secret are written together, so both scans mostly meet the
 * keys in the same order: when the next secret in storage order not yet taken is this token's
 * only one, it is taken without a lookup. Anything else (a rotated key, a grace, a token with no
 * live secret) is looked up; the secrets it takes are stepped over later, so one rotated key
 * does not send every token after it to the table.
 */
static const pending_secret_t *next_in_order(bulk_load_t *b, const char *token_id)
{
    while (b->next_in_order < b->n && b->secrets[b->next_in_order].taken)
        b->next_in_order++;
    if (b->next_in_order >= b->n)
        return NULL;
    pending_secret_t *p = &b->secrets[b->next_in_order];
    if (p->shared || strcmp(p->token_id, token_id) != 0)
        return NULL;
    p->taken = true;
    b->next_in_order++;
    return p;
}

static bool load_token(void *ctx, const kg_token_t *t)
{
    bulk_load_t *b = ctx;
    kg_token_secret_t secrets[2];
    const pending_secret_t *best[2] = {NULL, NULL};
    if (b->n > 0 && (best[0] = next_in_order(b, t->id)) == NULL) {
        uint64_t first = *join_slot(b, t->id, kg_key_id_hash(t->id));
        for (uint32_t at = (uint32_t)first; at != 0; at = b->secrets[at - 1].next) {
            pending_secret_t *p = &b->secrets[at - 1];
            p->taken = true;
            if (best[0] == NULL || secret_before(p, best[0]))
                best[1] = best[0], best[0] = p;
            else if (best[1] == NULL || secret_before(p, best[1]))
                best[1] = p;
        }
    }
    size_t n = 0;
    for (; n < 2 && best[n] != NULL; n++)
        secrets[n] = best[n]->secret;
    kg_key_index_load_add(b->load, t, secrets, n);
    return true;
}

static bool stop_scan(void *ctx, const kg_token_t *t)
{
    (void)ctx, (void)t;
    return false;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

kg_err_t kg_feed_load_all(kg_store_t *st, kg_key_index_t *idx, int64_t now, int64_t *last_seq)
{
    bulk_load_t b = {0};
    size_t n_tokens = 0;
    kg_err_t rv;

    /* Read the position first: a change committed during the load is applied again, harmlessly. */
    if ((rv = kg_store_change_last(st, last_seq)) != KG_OK)
        return rv;
    /* One read transaction: one snapshot, and SQLite takes its file lock once. */
    if ((rv = kg_store_begin_read(st)) != KG_OK)
        return rv;
    if ((rv = kg_store_token_count(st, &n_tokens)) == KG_OK) {
        b.cap = n_tokens + 16; /* a secret per token, mostly: no copies as the array grows */
        b.secrets = kg_xcalloc(b.cap, sizeof(*b.secrets));
    }
    double t0 = seconds_now();
    if (rv == KG_OK)
        rv = kg_store_secret_scan(st, now, collect_secret, &b);
    double t1 = seconds_now();
    if (rv == KG_OK) {
        /* The token rows are read on another thread while the secrets are indexed and joined. */
        kg_token_stream_t *tokens = kg_token_stream_start(st);
        /* No table resize during the load; the index's memory faults in on a third thread. */
        kg_key_index_reserve(idx, n_tokens, b.n);
        if (b.n > 0 && !index_secrets(&b)) {
            rv = kg_token_stream_finish(tokens, stop_scan, NULL);
            rv = rv != KG_OK ? rv : KG_EINTERNAL;
        } else {
            b.load = kg_key_index_load_begin(idx);
            rv = kg_token_stream_finish(tokens, load_token, &b);
            kg_err_t linked = kg_key_index_load_end(b.load);
            rv = rv != KG_OK ? rv : linked;
        }
    }
    kg_store_rollback(st); /* nothing was written */
    double t2 = seconds_now();
    free(b.by_token);
    free(b.secrets);
    malloc_trim(0); /* the secrets read ahead were transient: give their memory back */
    kg_log_info("key index: %zu tokens, %zu live secrets loaded in %.2f s (secret scan %.2f s, tokens and join %.2f s)",
                n_tokens, b.n, seconds_now() - t0, t1 - t0, t2 - t1);
    return rv;
}

kg_err_t kg_feed_reload_catalog(kg_store_t *st, const kg_feed_catalog_t *cat)
{
    pthread_mutex_lock(&sync_lock);
    kg_catalog_t *fresh = kg_catalog_load(st, cat->cfg);
    if (fresh != NULL) {
        if (cat->prepare != NULL)
            cat->prepare(cat->prepare_ctx, fresh);
        kg_catalog_publish(fresh);
    }
    pthread_mutex_unlock(&sync_lock);
    return fresh != NULL ? KG_OK : KG_ESTORE;
}

static bool is_catalog_change(const char *object_type)
{
    return strcmp(object_type, "provider") == 0 || strcmp(object_type, "model") == 0 ||
           strcmp(object_type, "agent") == 0 || strcmp(object_type, "prompt_module") == 0 ||
           strcmp(object_type, "team") == 0;
}

kg_err_t kg_feed_apply(kg_store_t *st, kg_key_index_t *idx, const kg_feed_catalog_t *cat, int64_t now, int64_t *seq)
{
    kg_change_t changes[CHANGES_PER_POLL];
    size_t n;
    bool catalog_changed = false;
    kg_err_t rv;
    do {
        if ((rv = kg_store_change_list(st, *seq, changes, CHANGES_PER_POLL, &n)) != KG_OK)
            return rv;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(changes[i].object_type, "token") == 0 &&
                (rv = sync_token(st, idx, changes[i].object_id, now)) != KG_OK)
                return rv;
            catalog_changed |= is_catalog_change(changes[i].object_type);
            *seq = changes[i].seq;
        }
    } while (n == CHANGES_PER_POLL);
    /* One rebuild per batch, however many catalog objects changed in it. */
    if (catalog_changed && cat != NULL)
        return kg_feed_reload_catalog(st, cat);
    return KG_OK;
}

kg_err_t kg_feed_flush_last_used(kg_store_t *st, kg_key_index_t *idx)
{
    kg_last_used_t batch[LAST_USED_BATCH];
    const char *ids[LAST_USED_BATCH];
    int64_t at[LAST_USED_BATCH];
    size_t n;
    kg_err_t rv = KG_OK;
    while (rv == KG_OK && (n = kg_key_index_take_last_used(idx, batch, LAST_USED_BATCH)) > 0) {
        for (size_t i = 0; i < n; i++)
            ids[i] = batch[i].id, at[i] = batch[i].at;
        rv = kg_store_token_touch_batch(st, ids, at, n);
        if (rv != KG_OK)
            kg_key_index_relist_last_used(idx, batch, n); /* retried by the next flush */
        if (n < LAST_USED_BATCH)
            break;
    }
    return rv;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *feed_main(void *arg)
{
    kg_feed_t *f = arg;
    pthread_setname_np(pthread_self(), "kg-feed"); /* for top -H and per-thread CPU figures */
    int64_t next_flush = now_ms() + KG_FEED_FLUSH_MS;
    struct timespec pause = {0, KG_FEED_POLL_MS * 1000000L};

    kg_key_index_thread_online();
    while (!atomic_load(&f->stopping)) {
        int64_t version;
        if (kg_store_data_version(f->store, &version) == KG_OK && version != f->data_version) {
            if (kg_feed_apply(f->store, f->index, f->catalog, (int64_t)time(NULL), &f->seq) == KG_OK)
                f->data_version = version;
            else
                kg_log_warn("change feed: store read failed; retrying");
        }
        if (now_ms() >= next_flush) {
            if (kg_feed_flush_last_used(f->store, f->index) != KG_OK)
                kg_log_warn("change feed: last-use flush failed; retrying");
            next_flush = now_ms() + KG_FEED_FLUSH_MS;
        }
        nanosleep(&pause, NULL);
    }
    kg_key_index_list_unflushed(f->index); /* uses within the last KG_LAST_USED_STEP_S, too */
    if (kg_feed_flush_last_used(f->store, f->index) != KG_OK)
        kg_log_warn("change feed: final last-use flush failed");
    kg_key_index_thread_offline();
    return NULL;
}

kg_feed_t *kg_feed_start(const char *db_path, kg_key_index_t *idx, const kg_feed_catalog_t *cat, char *err,
                         size_t err_cap)
{
    kg_feed_t *f = kg_xcalloc(1, sizeof(*f));
    f->index = idx;
    f->catalog = cat;
    if ((f->store = kg_store_open(db_path, err, err_cap)) == NULL)
        goto fail;
    if (kg_store_data_version(f->store, &f->data_version) != KG_OK ||
        kg_feed_load_all(f->store, idx, (int64_t)time(NULL), &f->seq) != KG_OK ||
        (cat != NULL && kg_feed_reload_catalog(f->store, cat) != KG_OK)) {
        snprintf(err, err_cap, "cannot load keys from %s", db_path);
        goto fail;
    }
    kg_store_set_background(f->store, true); /* loaded: from now on it shares the event loops' cores */
    pthread_create(&f->tid, NULL, feed_main, f);
    return f;
fail:
    kg_store_close(f->store);
    free(f);
    return NULL;
}

void kg_feed_stop(kg_feed_t *f)
{
    if (f == NULL)
        return;
    atomic_store(&f->stopping, true);
    pthread_join(f->tid, NULL);
    kg_store_close(f->store);
    free(f);
}
