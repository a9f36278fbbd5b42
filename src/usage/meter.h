/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns one inference request's accounting from admission to its usage record
 * (issue 6): it holds the request's admission (limits and budget reservation), watches the
 * answer's bytes for the provider's token counts, and when the answer ends — before its last
 * byte is handed to the client — settles the reservation with what was used and appends the
 * request's usage record to the worker's journal. Whoever sends the last byte (the mock
 * provider, the upstream relay, an error path) calls kg_meter_finish; a request abandoned by
 * its client is finished when its memory is released. Loop thread only, no allocation.
 */
#ifndef KG_USAGE_METER_H
#define KG_USAGE_METER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits/admit.h"
#include "usage/journal.h"
#include "usage/usage.h"
#include "usage/usage_scan.h"

typedef struct kg_meter kg_meter_t;

#define KG_METER_TOKENS_MAX INT64_C(1000000000000) /* a count an upstream reports, at most */
#define KG_METER_COST_MAX (INT64_MAX / 1024)       /* one request's cost, at most (micro-credits) */

struct kg_meter {
    kg_admission_t admission;
    kg_usage_scan_t scan;
    kg_usage_record_t record;          /* identity filled by the caller before kg_meter_start */
    int64_t input_micro, output_micro; /* the model's prices, copied: the catalog may change meanwhile */
    int64_t reserved_input, reserved_output;
    int64_t started_ns, upstream_ns; /* when the request arrived; when it was handed to the provider */
    kg_journal_writer_t *journal;
    bool started, finished;
    bool journal_failed; /* the record could not be journaled (logged; counted by the metrics) */
};

/** Monotonic nanoseconds (the limiter's and the latencies' clock). */
int64_t kg_meter_now_ns(void);

/** Cost in micro-credits of in/out tokens at the meter's prices (rounded up). */
int64_t kg_meter_cost(const kg_meter_t *m, int64_t in, int64_t out);

/**
 * Admits the request (kg_admit with the meter's reservation of reserved_input +
 * reserved_output tokens). On refusal the meter is not started and *why says why.
 */
kg_err_t kg_meter_start(kg_meter_t *m, kg_refusal_t *why);

/** The answer's bytes as they go to the client (m may be NULL: nothing is metered). */
void kg_meter_observe(kg_meter_t *m, const char *p, size_t len);

/**
 * Ends the request with HTTP `status`: settles the admission and journals the record. Only the
 * first call counts; a meter that was never started does nothing.
 */
void kg_meter_finish(kg_meter_t *m, int status);

#endif
