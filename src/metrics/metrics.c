/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the metrics of metrics.h: counting on the request path (a hash probe
 * and relaxed atomic stores by the owning worker) and rendering at scrape time.
 */
#include "metrics/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static const char *const route_names[KG_MROUTE__COUNT] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/agents", "other",
};

/* Upper bounds in microseconds (rendered in seconds, Prometheus' base unit). */
static const int64_t bucket_us[KG_METRICS_BUCKETS] = {1000,   2500,   5000,    10000,   25000,   50000,    100000,
                                                      250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};

/* The owner is the only writer: a load and a store, no read-modify-write bus lock. */
static void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

static void observe(kg_histogram_t *h, int64_t us)
{
    size_t b = 0;
    while (b < KG_METRICS_BUCKETS && us > bucket_us[b])
        b++;
    if (b < KG_METRICS_BUCKETS)
        bump(&h->buckets[b], 1);
    bump(&h->sum_us, (uint64_t)(us > 0 ? us : 0));
    bump(&h->count, 1);
}

static uint64_t series_hash(kg_metrics_route_t route, int status, const char *model)
{
    uint64_t h = 1469598103934665603ULL ^ ((uint64_t)route << 16 | (uint64_t)(unsigned)status);
    for (; *model != '\0'; model++)
        h = (h ^ (unsigned char)*model) * 1099511628211ULL;
    return h;
}

static kg_metrics_series_t *series_for(kg_metrics_t *m, kg_metrics_route_t route, int status, const char *model)
{
    uint64_t h = series_hash(route, status, model);
    for (size_t probe = 0; probe < KG_METRICS_SERIES; probe++) {
        kg_metrics_series_t *s = &m->series[(h + probe) % KG_METRICS_SERIES];
        if (atomic_load_explicit(&s->count, memory_order_acquire) == 0) {
            /* A new series: its labels are written before its first count publishes them. */
            s->route = (uint8_t)route, s->status = (uint16_t)status;
            snprintf(s->model, sizeof(s->model), "%s", model);
            return s;
        }
        if (s->route == route && s->status == status && strcmp(s->model, model) == 0)
            return s;
    }
    return NULL;
}

void kg_metrics_request(kg_metrics_t *m, kg_metrics_route_t route, int status, const char *model, int64_t latency_us,
                        int64_t upstream_us)
{
    kg_metrics_series_t *s = series_for(m, route, status, model);
    if (s == NULL && (s = series_for(m, route, status, "other")) == NULL)
        return; /* the table is full even for "other": counted in the histograms only */
    atomic_store_explicit(&s->count, atomic_load_explicit(&s->count, memory_order_relaxed) + 1, memory_order_release);
    observe(&m->latency[route], latency_us);
    if (upstream_us >= 0)
        observe(&m->upstream_latency[route], upstream_us);
}

void kg_metrics_refusal(kg_metrics_t *m, kg_err_t code)
{
    bump(code == KG_EINSUFFICIENT_QUOTA ? &m->refused_quota : &m->refused_rate, 1);
}

void kg_metrics_journal_failure(kg_metrics_t *m)
{
    bump(&m->journal_failures, 1);
}

/* ==== Rendering ==== */

typedef struct text {
    char *buf;
    size_t len, cap;
} text_t;

static void put(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (n > 0 ? (size_t)n : 0);
        char *grown = realloc(t->buf, t->cap);
        if (grown == NULL)
            abort();
        t->buf = grown;
    }
}

/* A label value in the text format: backslash, quote and newline escaped. */
static void put_label(text_t *t, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            put(t, "\\%c", *v);
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static void put_histogram(text_t *t, const char *name, kg_metrics_t *const *w, size_t n, bool upstream)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name,
        upstream ? "Time from handing a request to its provider to its last byte, in seconds."
                 : "Time from a request's arrival to its last byte, in seconds.",
        name);
    for (int r = 0; r < KG_MROUTE__COUNT; r++) {
        uint64_t cum = 0, count = 0, sum_us = 0;
        for (size_t i = 0; i < n; i++) {
            const kg_histogram_t *h = upstream ? &w[i]->upstream_latency[r] : &w[i]->latency[r];
            count += atomic_load_explicit(&h->count, memory_order_relaxed);
            sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
        }
        if (count == 0)
            continue;
        for (int b = 0; b < KG_METRICS_BUCKETS; b++) {
            for (size_t i = 0; i < n; i++) {
                const kg_histogram_t *h = upstream ? &w[i]->upstream_latency[r] : &w[i]->latency[r];
                cum += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
            }
            put(t, "%s_bucket{route=\"%s\",le=\"%g\"} %llu\n", name, route_names[r], (double)bucket_us[b] / 1e6,
                (unsigned long long)cum);
        }
        /* +Inf is the count: a bucket read a moment earlier may lag it, never exceed it. */
        put(t, "%s_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name, route_names[r],
            (unsigned long long)(count > cum ? count : cum));
        put(t, "%s_sum{route=\"%s\"} %.6f\n", name, route_names[r], (double)sum_us / 1e6);
        put(t, "%s_count{route=\"%s\"} %llu\n", name, route_names[r], (unsigned long long)(count > cum ? count : cum));
    }
}

static int compare_rows(const void *a, const void *b)
{
    const kg_metrics_series_t *x = *(const kg_metrics_series_t *const *)a, *y = *(const kg_metrics_series_t *const *)b;
    if (x->route != y->route)
        return x->route < y->route ? -1 : 1;
    if (x->status != y->status)
        return x->status < y->status ? -1 : 1;
    return strcmp(x->model, y->model);
}

char *kg_metrics_render(kg_metrics_t *const *w, size_t n, uint64_t journal_backlog, size_t *len)
{
    text_t t = {kg_xcalloc(1, 16384), 0, 16384};

    put(&t, "# HELP keygate_requests_total Data-plane requests answered, by route, status and model.\n"
            "# TYPE keygate_requests_total counter\n");
    /* Every worker's series, sorted by labels, so equal labels from several workers add up. */
    typedef struct row {
        const kg_metrics_series_t *s;
        uint64_t count;
    } row_t;
    row_t *rows = kg_xcalloc(n * KG_METRICS_SERIES + 1, sizeof(*rows));
    size_t n_rows = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < KG_METRICS_SERIES; k++) {
            uint64_t c = atomic_load_explicit(&w[i]->series[k].count, memory_order_acquire);
            if (c != 0)
                rows[n_rows++] = (row_t){&w[i]->series[k], c};
        }
    qsort(rows, n_rows, sizeof(*rows), compare_rows);
    for (size_t i = 0; i < n_rows;) {
        const kg_metrics_series_t *s = rows[i].s;
        uint64_t c = 0;
        for (; i < n_rows && compare_rows(&rows[i], &(row_t){s, 0}) == 0; i++)
            c += rows[i].count;
        put(&t, "keygate_requests_total{route=\"%s\",status=\"%u\",model=\"", route_names[s->route],
            (unsigned)s->status);
        put_label(&t, s->model);
        put(&t, "\"} %llu\n", (unsigned long long)c);
    }
    free(rows);
    put_histogram(&t, "keygate_request_duration_seconds", w, n, false);
    put_histogram(&t, "keygate_upstream_duration_seconds", w, n, true);

    uint64_t rate = 0, quota = 0, failures = 0;
    for (size_t i = 0; i < n; i++) {
        rate += atomic_load_explicit(&w[i]->refused_rate, memory_order_relaxed);
        quota += atomic_load_explicit(&w[i]->refused_quota, memory_order_relaxed);
        failures += atomic_load_explicit(&w[i]->journal_failures, memory_order_relaxed);
    }
    put(&t,
        "# HELP keygate_limiter_refusals_total Requests refused by rate limits or budgets (429), by reason.\n"
        "# TYPE keygate_limiter_refusals_total counter\n"
        "keygate_limiter_refusals_total{reason=\"rate_limit_exceeded\"} %llu\n"
        "keygate_limiter_refusals_total{reason=\"insufficient_quota\"} %llu\n"
        "# HELP keygate_usage_journal_backlog Usage records journaled and not yet in the store.\n"
        "# TYPE keygate_usage_journal_backlog gauge\n"
        "keygate_usage_journal_backlog %llu\n"
        "# HELP keygate_usage_journal_failures_total Usage records the journal could not take.\n"
        "# TYPE keygate_usage_journal_failures_total counter\n"
        "keygate_usage_journal_failures_total %llu\n",
        (unsigned long long)rate, (unsigned long long)quota, (unsigned long long)journal_backlog,
        (unsigned long long)failures);
    *len = t.len;
    return t.buf;
}
