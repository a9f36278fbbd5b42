/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the request meter of meter.h.
 */
#include "usage/meter.h"

#include <time.h>

#include "core/log.h"

int64_t kg_meter_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * KG_NS_PER_SEC + ts.tv_nsec;
}

int64_t kg_meter_cost(const kg_meter_t *m, int64_t in, int64_t out)
{
    /* micro-credits per 1M tokens × tokens / 1M, rounded up: a priced call never costs 0. Counts
     * are bounded by the scan and prices by the config, but a cost is capped anyway so that sums
     * of costs (spend, the store's rollups) can never overflow. */
    __int128 x = (__int128)in * m->input_micro + (__int128)out * m->output_micro;
    x = (x + 999999) / 1000000;
    return x > KG_METER_COST_MAX ? KG_METER_COST_MAX : (int64_t)x;
}

kg_err_t kg_meter_start(kg_meter_t *m, kg_refusal_t *why)
{
    int64_t tokens = m->reserved_input + m->reserved_output;
    kg_err_t rv = kg_admit(&m->admission, tokens, kg_meter_cost(m, m->reserved_input, m->reserved_output),
                           m->started_ns, kg_wall_ms() / 1000, why);
    m->started = rv == KG_OK;
    return rv;
}

void kg_meter_observe(kg_meter_t *m, const char *p, size_t len)
{
    if (m != NULL && m->started && !m->finished)
        kg_usage_scan_feed(&m->scan, p, len);
}

void kg_meter_finish(kg_meter_t *m, int status)
{
    if (m == NULL || !m->started || m->finished)
        return;
    m->finished = true;
    kg_usage_record_t *r = &m->record;
    int64_t now_ns = kg_meter_now_ns(), now_ms = kg_wall_ms();
    r->at_ms = now_ms;
    r->status = status;
    r->latency_us = (now_ns - m->started_ns) / 1000;
    r->upstream_latency_us = m->upstream_ns != 0 ? (now_ns - m->upstream_ns) / 1000 : 0;
    if (m->scan.found_prompt || m->scan.found_completion) {
        r->input_tokens = m->scan.prompt_tokens < KG_METER_TOKENS_MAX ? m->scan.prompt_tokens : KG_METER_TOKENS_MAX;
        r->output_tokens =
            m->scan.completion_tokens < KG_METER_TOKENS_MAX ? m->scan.completion_tokens : KG_METER_TOKENS_MAX;
    } else if (status >= 400) {
        r->input_tokens = r->output_tokens = 0; /* a refused call is not billed */
    } else {
        /* A success without usage (a stream without include_usage, a cut stream): bill the estimate. */
        r->input_tokens = m->reserved_input, r->output_tokens = m->reserved_output;
        r->estimated = true;
    }
    r->cost_micro = kg_meter_cost(m, r->input_tokens, r->output_tokens);
    kg_admission_settle(&m->admission, r->input_tokens + r->output_tokens, r->cost_micro, now_ns, now_ms / 1000);
    if (m->journal != NULL && !kg_journal_append(m->journal, r)) {
        m->journal_failed = true;
        kg_log_error("usage record %s could not be journaled (journal full or unwritable)", r->request_id);
    }
}
