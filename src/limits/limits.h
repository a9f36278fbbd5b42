/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns what a key or a team may consume (SPEC §3, issue 6): its rate limits (rpm,
 * tpm, rpd, max_concurrency), its credit budget (limit and UTC calendar period), the tier
 * presets of teams, and the mutable counters one holder's requests share — the GCRA cells,
 * the requests in flight, and the credits spent and reserved per period. Limits are parsed
 * on the writer side from the canonical JSON the admin layer validated; counters live as long
 * as the process (a key's survive edits and rotations; a team's survive catalog rebuilds).
 */
#ifndef KG_LIMITS_LIMITS_H
#define KG_LIMITS_LIMITS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "limits/gcra.h"

/** Per-holder limits; 0 means "no limit of this kind". */
typedef struct kg_rate_limits {
    int64_t rpm, tpm, rpd, max_concurrency;
} kg_rate_limits_t;

typedef enum kg_budget_period { KG_PERIOD_NONE, KG_PERIOD_DAY, KG_PERIOD_MONTH } kg_budget_period_t;

typedef struct kg_budget {
    bool set;
    int64_t limit_micro; /* micro-credits */
    kg_budget_period_t period;
} kg_budget_t;

/** Credits spent in one period: the period's start (unix seconds) and the sum since. */
typedef struct kg_spend {
    _Atomic int64_t period_start;
    _Atomic int64_t micro;
} kg_spend_t;

/** The counters of one holder (key or team). Zero-initialised is ready. */
typedef struct kg_limit_state {
    kg_gcra_cell_t rpm, tpm, rpd;
    _Atomic int64_t in_flight;
    _Atomic int64_t reserved_micro; /* estimated cost of the requests in flight */
    kg_spend_t spent[3];            /* indexed by kg_budget_period_t: all time, today, this month */
} kg_limit_state_t;

/** Parses a `rate_limits` object ({"rpm": N, ...}; NULL or unparsable: no limits). */
kg_rate_limits_t kg_rate_limits_parse(const char *json);
/** Parses a `budget` object ({"limit_credits": X, "period": "day"}; NULL: not set). */
kg_budget_t kg_budget_parse(const char *json);

/**
 * A team tier's preset limits (SPEC §1, issue 6): free 60 rpm / 40K tpm, pro 3,000 / 250K,
 * team 5,000 / 500K. Returns false for "custom" (the team's own rate_limits apply) or unknown.
 */
bool kg_tier_preset(const char *tier, kg_rate_limits_t *out);

/** Each of a and b, the stricter (a 0 is no limit). */
kg_rate_limits_t kg_rate_limits_stricter(kg_rate_limits_t a, kg_rate_limits_t b);

/** The start (unix seconds, UTC) of the period containing `now`; 0 for KG_PERIOD_NONE. */
int64_t kg_period_start(kg_budget_period_t p, int64_t now);

/** Credits spent by `st` in p's period containing `now` (a past period reads as 0). */
int64_t kg_spent_now(kg_limit_state_t *st, kg_budget_period_t p, int64_t now);
/** Adds `micro` to every period's sum of `st`, moving periods that have ended to `now`'s. */
void kg_spent_add(kg_limit_state_t *st, int64_t micro, int64_t now);

/**
 * The wall clock budgets and usage records are judged by, in unix milliseconds. It is the
 * system's, unless the environment names KEYGATE_TEST_CLOCK_FILE: then the file holds an
 * offset in seconds added to it (tests cross a day or month boundary without sleeping).
 */
int64_t kg_wall_ms(void);

#endif
