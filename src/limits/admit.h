/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the admission of one inference request against everything that limits it
 * (issue 6): the concurrency, rate and budget limits of its key and of the key's team, taken
 * all or nothing — a refusal by one holder leaves the other untouched. An admitted request
 * holds a reservation (one request, an estimate of its tokens, an estimate of its cost) that
 * kg_admission_settle reconciles with what was really used. Request path: atomics only.
 */
#ifndef KG_LIMITS_ADMIT_H
#define KG_LIMITS_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "limits/limits.h"

#define KG_ADMIT_MAX_HOLDERS 2 /* the key and its team */

/** One holder's limits and counters (state NULL: the holder does not exist). */
typedef struct kg_holder {
    kg_limit_state_t *state;
    kg_rate_limits_t limits;
    kg_budget_t budget;
} kg_holder_t;

typedef struct kg_admission {
    kg_holder_t holders[KG_ADMIT_MAX_HOLDERS];
    size_t n_holders;
    int64_t tokens;      /* reserved in the tpm cells */
    int64_t cost_micro;  /* reserved against the budgets */
    int64_t admitted_ns; /* when the reservation was taken */
    bool held;           /* admitted and not yet settled */
} kg_admission_t;

/** Why a request was refused, and when to retry (SPEC §5's 429s). */
typedef struct kg_refusal {
    kg_err_t code; /* KG_ERATE_LIMIT_EXCEEDED or KG_EINSUFFICIENT_QUOTA */
    int64_t retry_after_ns;
    bool retry_useless; /* a request larger than a limit, or a budget: x-should-retry: false */
    char message[200];
} kg_refusal_t;

/**
 * Admits a request of `tokens` estimated tokens and `cost_micro` estimated cost, at now_ns
 * (monotonic) and now_s (the wall clock of budget periods). On KG_OK the reservation is held
 * until kg_admission_settle; otherwise nothing is held and *why says what refused.
 */
kg_err_t kg_admit(kg_admission_t *a, int64_t tokens, int64_t cost_micro, int64_t now_ns, int64_t now_s,
                  kg_refusal_t *why);

/**
 * Ends a held admission: the token cells are adjusted from the reservation to `tokens_used`,
 * the cost reservation is replaced by `cost_micro` spent, the concurrency slot is freed. Unused
 * tokens are given back only for the part of the period since admission that has not passed
 * yet: a reservation older than a period has already "expired" and gives nothing back.
 * Does nothing if nothing is held (so it is safe to call twice).
 */
void kg_admission_settle(kg_admission_t *a, int64_t tokens_used, int64_t cost_micro, int64_t now_ns, int64_t now_s);

/** The x-ratelimit-* values: the holder with least left, per measure (limit 0: none applies). */
void kg_admission_headers(const kg_admission_t *a, int64_t now_ns, kg_gcra_state_t *requests, kg_gcra_state_t *tokens);

/** Formats a reset time as OpenAI does ("20ms", "1s", "1.5s", "6m0s", "1h2m3s"); returns its length. */
size_t kg_reset_format(int64_t ns, char *buf, size_t cap);

#endif
