/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the change feed (see feed.h).
 */
#include "sync/feed.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

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

kg_err_t kg_feed_load_all(kg_store_t *st, kg_key_index_t *idx, int64_t now, int64_t *last_seq)
{
    kg_token_filter_t f = {.type = -1, .status = -1, .now = now};
    kg_token_t *list = NULL;
    size_t n = 0;
    bool more;
    kg_err_t rv;

    /* Read the position first: a change committed during the load is applied again, harmlessly. */
    if ((rv = kg_store_change_last(st, last_seq)) != KG_OK)
        return rv;
    /* One read transaction: SQLite takes its file lock once, not once per token (a million
     * keys cost a million lock round trips otherwise). */
    if ((rv = kg_store_begin_read(st)) != KG_OK)
        return rv;
    /* All at once: the list query sorts by creation time, so pages would each sort them all
     * (measured: 39 s instead of 23 s at a million keys). The price is holding the rows. */
    if ((rv = kg_store_token_list(st, &f, &list, &n, &more)) != KG_OK) {
        kg_store_rollback(st);
        return rv;
    }
    for (size_t i = 0; i < n && rv == KG_OK; i++) {
        kg_token_secret_t secrets[2];
        size_t n_secrets = 0;
        rv = kg_store_token_secrets(st, list[i].id, now, secrets, &n_secrets);
        if (rv == KG_OK)
            kg_key_index_put(idx, &list[i], secrets, n_secrets);
    }
    kg_store_rollback(st); /* nothing was written */
    kg_token_list_free(list, n);
    malloc_trim(0); /* the rows were transient: give their memory back to the system */
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
