/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the usage writer of usage_writer.h.
 */
#include "usage/usage_writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "core/alloc.h"
#include "core/log.h"
#include "limits/limits.h"

struct kg_usage_writer {
    kg_journal_t *journal;
    kg_store_t *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    kg_usage_record_t batch[KG_USAGE_BATCH];
};

/* Stores the n records read since the last release, then releases them — or rewinds, so the
 * next read returns the same records again. Records that may be stored already
 * (kg_journal_replaying: a replay of an earlier process's journal, a retry after a failed
 * write) are looked up by request id; others are new and are not. */
static kg_err_t store_batch(kg_journal_t *j, kg_store_t *st, const kg_usage_record_t *batch, size_t n, bool may_repeat)
{
    kg_err_t rv =
        may_repeat ? kg_store_usage_insert(st, batch, n, NULL) : kg_store_usage_insert_new(st, batch, n, NULL);
    if (rv != KG_OK)
        kg_journal_rewind(j);
    else
        kg_journal_release(j);
    return rv;
}

/* One batch: read, store, release (or rewind). */
static kg_err_t flush_batch(kg_journal_t *j, kg_store_t *st, kg_usage_record_t *batch, size_t *n_out)
{
    bool may_repeat = kg_journal_replaying(j);
    size_t n = kg_journal_read(j, batch, KG_USAGE_BATCH);
    *n_out = n;
    return n == 0 ? KG_OK : store_batch(j, st, batch, n, may_repeat);
}

kg_err_t kg_usage_drain(kg_journal_t *j, kg_store_t *st, size_t *n_out)
{
    kg_usage_record_t *batch = kg_xcalloc(KG_USAGE_BATCH, sizeof(*batch));
    size_t n, total = 0;
    kg_err_t rv;
    while ((rv = flush_batch(j, st, batch, &n)) == KG_OK && n > 0)
        total += n;
    free(batch);
    if (n_out != NULL)
        *n_out = total;
    return rv;
}

typedef struct seed_ctx {
    kg_key_index_t *idx;
    bool by_team;
    kg_budget_period_t period;
    int64_t start;
} seed_ctx_t;

static void seed_one(void *p, const char *org_id, const char *id, const kg_usage_totals_t *t)
{
    seed_ctx_t *c = p;
    kg_limit_state_t *st = c->by_team ? kg_team_state(org_id, id) : kg_key_index_limit_state(c->idx, id);
    atomic_store(&st->spent[c->period].period_start, c->start);
    atomic_store(&st->spent[c->period].micro, t->cost_micro);
}

kg_err_t kg_usage_seed_spend(kg_store_t *st, kg_key_index_t *idx, int64_t now_s)
{
    for (int by_team = 0; by_team <= 1; by_team++)
        for (int p = KG_PERIOD_NONE; p <= KG_PERIOD_MONTH; p++) {
            seed_ctx_t c = {idx, by_team, (kg_budget_period_t)p, kg_period_start((kg_budget_period_t)p, now_s)};
            kg_err_t rv = kg_store_usage_totals_by(st, by_team, c.start * 1000, seed_one, &c);
            if (rv != KG_OK)
                return rv;
        }
    return KG_OK;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *writer_main(void *arg)
{
    kg_usage_writer_t *w = arg;
    pthread_setname_np(pthread_self(), "kg-usage"); /* for top -H and per-thread CPU figures */
    bool stopping = false, warned = false;
    size_t held = 0;         /* records read into w->batch, not yet stored (nor released) */
    int64_t held_ms = 0;     /* when the first of them was read */
    bool may_repeat = false; /* some of them may be stored already (store_batch) */
    while (!stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += KG_USAGE_FLUSH_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L, until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&w->lock);
        if (!w->stopping)
            pthread_cond_timedwait(&w->wake, &w->lock, &until);
        stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);
        /* Batches until one is not full (more may be waiting), each after giving the workers their
         * spare segments (journal.h): a long drain must not leave them to make their own. A batch
         * that is not full is held (read, not released) until it is due; stopping stores it. */
        for (;;) {
            kg_journal_prepare(w->journal);
            bool replaying = kg_journal_replaying(w->journal);
            size_t got = kg_journal_read(w->journal, w->batch + held, KG_USAGE_BATCH - held);
            if (held == 0 && got > 0)
                held_ms = monotonic_ms(), may_repeat = false;
            may_repeat |= got > 0 && replaying;
            held += got;
            bool full = held == KG_USAGE_BATCH;
            if (held == 0 || (!full && !stopping && monotonic_ms() - held_ms < KG_USAGE_COMMIT_MS))
                break;
            kg_err_t rv = store_batch(w->journal, w->store, w->batch, held, may_repeat);
            held = 0;
            if (rv != KG_OK) { /* read again, from the last release, next round */
                if (!warned)
                    kg_log_error("usage: cannot write to the store (%s); records stay in the journal and are retried",
                                 kg_err_code(rv));
                warned = true;
                break;
            }
            warned = false;
            if (!full)
                break;
        }
    }
    return NULL;
}

kg_usage_writer_t *kg_usage_writer_start(kg_journal_t *j, const char *db_path, char *err, size_t err_cap)
{
    kg_usage_writer_t *w = kg_xcalloc(1, sizeof(*w));
    w->journal = j;
    if ((w->store = kg_store_open(db_path, err, err_cap)) == NULL) {
        free(w);
        return NULL;
    }
    kg_store_set_background(w->store, true); /* it shares the cores of the event loops */
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_create(&w->thread, NULL, writer_main, w);
    return w;
}

void kg_usage_writer_stop(kg_usage_writer_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL); /* its last round flushed everything journaled */
    kg_store_close(w->store);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
