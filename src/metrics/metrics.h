/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the gateway's operational metrics (SPEC §6, issue 7): requests by route,
 * status and model, latency histograms (total and upstream), limiter refusals and the usage
 * journal's backlog, rendered in Prometheus' text format. Each worker counts into its own
 * kg_metrics_t (relaxed atomics written by that worker alone, so counting never contends);
 * a scrape sums every worker's. Label values are route names and catalog model names only —
 * never a key, a secret, or anything else the client sent.
 */
#ifndef KG_METRICS_METRICS_H
#define KG_METRICS_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "usage/usage.h"

#define KG_METRICS_SERIES 1024 /* distinct (route, status, model) per worker; more go to model "other" */
#define KG_METRICS_BUCKETS 14

typedef enum kg_metrics_route {
    KG_MROUTE_CHAT,
    KG_MROUTE_COMPLETIONS,
    KG_MROUTE_EMBEDDINGS,
    KG_MROUTE_MODELS,
    KG_MROUTE_AGENTS,
    KG_MROUTE_OTHER,
    KG_MROUTE__COUNT
} kg_metrics_route_t;

typedef struct kg_metrics_series {
    _Atomic uint64_t count; /* 0: slot unused (a series is published with its first count) */
    uint8_t route;
    uint16_t status;
    char model[KG_USAGE_MODEL_MAX + 1];
} kg_metrics_series_t;

typedef struct kg_histogram {
    _Atomic uint64_t buckets[KG_METRICS_BUCKETS]; /* cumulative at render, per-bucket here */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} kg_histogram_t;

typedef struct kg_metrics {
    kg_metrics_series_t series[KG_METRICS_SERIES]; /* open addressing by (route, status, model) */
    kg_histogram_t latency[KG_MROUTE__COUNT];
    kg_histogram_t upstream_latency[KG_MROUTE__COUNT];
    _Atomic uint64_t refused_rate, refused_quota;
    _Atomic uint64_t journal_failures;
} kg_metrics_t;

/** Counts one finished request (owner thread only). upstream_us < 0: it never reached a provider. */
void kg_metrics_request(kg_metrics_t *m, kg_metrics_route_t route, int status, const char *model, int64_t latency_us,
                        int64_t upstream_us);
/** Counts a limiter refusal (KG_ERATE_LIMIT_EXCEEDED or KG_EINSUFFICIENT_QUOTA). */
void kg_metrics_refusal(kg_metrics_t *m, kg_err_t code);
/** Counts a usage record the journal could not take. */
void kg_metrics_journal_failure(kg_metrics_t *m);

/**
 * Renders the sum of n workers' metrics and the journal backlog as Prometheus text (version
 * 0.0.4). Returns a malloc'd string; *len receives its length. Any thread.
 */
char *kg_metrics_render(kg_metrics_t *const *workers, size_t n, uint64_t journal_backlog, size_t *len);

#endif
