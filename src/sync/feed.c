/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the change feed (see feed.h).
 */
#include "sync/feed.h"

#include <malloc.h>
#include <search.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
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
 */
typedef struct pending_secret {
    char token_key[KG_KEY_ID_LEN + 1]; /* the token id reversed (see reverse_id) */
    kg_token_secret_t secret;
    int64_t created_at;
    size_t next; /* the same token's next secret, + 1 (0: none) */
    bool shared; /* its token has other live secrets (a rotation's grace) */
} pending_secret_t;

typedef struct bulk_load {
    kg_key_index_load_t *load;
    pending_secret_t *secrets;
    size_t n, cap;
    size_t next_in_order;         /* the first secret not yet known to be taken (see load_token) */
    struct hsearch_data by_token; /* token id -> its first secret's position + 1 */
} bulk_load_t;

/*
 * hsearch_r's hash of a string is decided by its first eight characters (each earlier one is
 * shifted four bits further out of 32), and every id starts "pk_": keyed by the id itself, a
 * million keys collide into long probe chains (a quarter of the load, measured). Reversed, the
 * eight characters that count are random ones.
 */
static bool reverse_id(const char *id, char out[KG_KEY_ID_LEN + 1])
{
    size_t len = strlen(id);
    if (len > KG_KEY_ID_LEN)
        return false; /* not an id this store makes */
    for (size_t i = 0; i < len; i++)
        out[i] = id[len - 1 - i];
    out[len] = '\0';
    return true;
}

static void collect_secret(void *ctx, const char *token_id, const kg_token_secret_t *secret, int64_t created_at)
{
    bulk_load_t *b = ctx;
    char key[KG_KEY_ID_LEN + 1];
    if (!reverse_id(token_id, key))
        return;
    if (b->n == b->cap) {
        b->cap = b->cap != 0 ? 2 * b->cap : 1024;
        b->secrets = realloc(b->secrets, b->cap * sizeof(*b->secrets));
        if (b->secrets == NULL)
            abort();
    }
    pending_secret_t *p = &b->secrets[b->n++];
    memcpy(p->token_key, key, sizeof(key));
    p->secret = *secret;
    p->created_at = created_at;
    p->next = 0;
    p->shared = false;
}

/* Indexes the collected secrets by token id (after collecting: the table points into the array). */
static bool index_secrets(bulk_load_t *b)
{
    if (hcreate_r(b->n + b->n / 3 + 16, &b->by_token) == 0)
        return false;
    for (size_t i = 0; i < b->n; i++) {
        ENTRY want = {.key = b->secrets[i].token_key, .data = (void *)(uintptr_t)(i + 1)}, *found;
        if (hsearch_r(want, ENTER, &found, &b->by_token) == 0)
            return false;
        if (found->data != want.data) { /* the token has another secret: chain this one in front */
            b->secrets[i].next = (size_t)(uintptr_t)found->data;
            b->secrets[i].shared = b->secrets[b->secrets[i].next - 1].shared = true;
            found->data = want.data;
        }
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
 * keys in the same order: when the next secret in storage order is this token's only one, it
 * is taken without a hash lookup. Anything else (a rotated key, a grace) is looked up.
 */
static const pending_secret_t *next_in_order(bulk_load_t *b, const char *key)
{
    if (b->next_in_order >= b->n)
        return NULL;
    const pending_secret_t *p = &b->secrets[b->next_in_order];
    if (p->shared || strcmp(p->token_key, key) != 0)
        return NULL;
    b->next_in_order++;
    return p;
}

static bool load_token(void *ctx, const kg_token_t *t)
{
    bulk_load_t *b = ctx;
    kg_token_secret_t secrets[2];
    const pending_secret_t *best[2] = {NULL, NULL};
    char key[KG_KEY_ID_LEN + 1];
    ENTRY want = {.key = key}, *found = NULL;
    if (b->n > 0 && reverse_id(t->id, key) && (best[0] = next_in_order(b, key)) == NULL &&
        hsearch_r(want, FIND, &found, &b->by_token) != 0) {
        for (size_t at = (size_t)(uintptr_t)found->data; at != 0; at = b->secrets[at - 1].next) {
            const pending_secret_t *p = &b->secrets[at - 1];
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
    if (b.n > 0)
        hdestroy_r(&b.by_token);
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
