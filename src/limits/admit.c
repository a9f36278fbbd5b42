/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements admission (see admit.h): concurrency first (cheapest to undo), then the
 * budgets, then the GCRA cells of every holder in one all-or-nothing acquisition.
 */
#include "limits/admit.h"

#include <stdio.h>
#include <string.h>

#include "core/decimal.h"

#define MINUTE_NS (60 * KG_NS_PER_SEC)
#define DAY_NS (86400 * KG_NS_PER_SEC)
#define CONCURRENCY_RETRY_NS (KG_NS_PER_SEC / 10) /* a slot frees when some request ends: soon */

static kg_gcra_limit_t per(int64_t limit, int64_t period_ns)
{
    return (kg_gcra_limit_t){limit, period_ns};
}

static const char *holder_name(size_t i)
{
    return i == 0 ? "key" : "team";
}

/* Undoes the concurrency slots and cost reservations of holders [0, n). */
static void release(kg_admission_t *a, size_t n_slots, size_t n_costs)
{
    for (size_t i = 0; i < n_slots; i++)
        if (a->holders[i].state != NULL)
            atomic_fetch_sub_explicit(&a->holders[i].state->in_flight, 1, memory_order_relaxed);
    for (size_t i = 0; i < n_costs; i++)
        if (a->holders[i].state != NULL && a->holders[i].budget.set)
            atomic_fetch_sub_explicit(&a->holders[i].state->reserved_micro, a->cost_micro, memory_order_acq_rel);
}

kg_err_t kg_admit(kg_admission_t *a, int64_t tokens, int64_t cost_micro, int64_t now_ns, int64_t now_s,
                  kg_refusal_t *why)
{
    kg_gcra_take_t takes[3 * KG_ADMIT_MAX_HOLDERS];
    size_t n_takes = 0, i;

    a->tokens = tokens, a->cost_micro = cost_micro, a->held = false, a->admitted_ns = now_ns;
    why->retry_useless = false;
    /* Concurrency: every holder takes a slot (released at settle, whatever its limit). */
    for (i = 0; i < a->n_holders; i++) {
        kg_holder_t *h = &a->holders[i];
        if (h->state == NULL)
            continue;
        int64_t now_in = atomic_fetch_add_explicit(&h->state->in_flight, 1, memory_order_relaxed) + 1;
        if (h->limits.max_concurrency > 0 && now_in > h->limits.max_concurrency) {
            atomic_fetch_sub_explicit(&h->state->in_flight, 1, memory_order_relaxed);
            release(a, i, 0);
            why->code = KG_ERATE_LIMIT_EXCEEDED, why->retry_after_ns = CONCURRENCY_RETRY_NS;
            snprintf(why->message, sizeof(why->message),
                     "Too many concurrent requests for this %s (max_concurrency %lld); retry when one finishes.",
                     holder_name(i), (long long)h->limits.max_concurrency);
            return why->code;
        }
    }
    /* Budgets: admitted only if spent + reserved (this request included) stays within the limit;
     * a zero-priced request is never refused. */
    for (i = 0; i < a->n_holders; i++) {
        kg_holder_t *h = &a->holders[i];
        if (h->state == NULL || !h->budget.set)
            continue;
        int64_t reserved = atomic_fetch_add_explicit(&h->state->reserved_micro, cost_micro, memory_order_acq_rel);
        int64_t spent = kg_spent_now(h->state, h->budget.period, now_s);
        if (cost_micro > 0 && spent + reserved + cost_micro > h->budget.limit_micro) {
            atomic_fetch_sub_explicit(&h->state->reserved_micro, cost_micro, memory_order_acq_rel);
            release(a, a->n_holders, i);
            why->code = KG_EINSUFFICIENT_QUOTA, why->retry_after_ns = 0, why->retry_useless = true;
            snprintf(why->message, sizeof(why->message),
                     "This %s's credit budget is exhausted for the %s (limit %.6f credits).", holder_name(i),
                     h->budget.period == KG_PERIOD_DAY     ? "day"
                     : h->budget.period == KG_PERIOD_MONTH ? "month"
                                                           : "lifetime of the budget",
                     (double)h->budget.limit_micro / 1e6);
            return why->code;
        }
    }
    /* Rates: every cell of every holder, or none. */
    for (i = 0; i < a->n_holders; i++) {
        kg_holder_t *h = &a->holders[i];
        if (h->state == NULL)
            continue;
        takes[n_takes++] = (kg_gcra_take_t){&h->state->rpm, per(h->limits.rpm, MINUTE_NS), 1};
        takes[n_takes++] = (kg_gcra_take_t){&h->state->rpd, per(h->limits.rpd, DAY_NS), 1};
        takes[n_takes++] = (kg_gcra_take_t){&h->state->tpm, per(h->limits.tpm, MINUTE_NS), tokens};
    }
    size_t refused = 0;
    int64_t wait = 0;
    kg_gcra_verdict_t v = kg_gcra_acquire(takes, n_takes, now_ns, &wait, &refused);
    if (v != KG_GCRA_ADMITTED) {
        static const char *const measures[] = {"requests per minute", "requests per day", "tokens per minute"};
        release(a, a->n_holders, a->n_holders);
        why->code = KG_ERATE_LIMIT_EXCEEDED;
        why->retry_after_ns = wait;
        why->retry_useless = v == KG_GCRA_TOO_LARGE;
        /* takes[] has three per present holder, in holder order */
        size_t holder = 0;
        for (size_t seen = 0; holder < a->n_holders; holder++)
            if (a->holders[holder].state != NULL && (seen += 3) > refused)
                break;
        if (v == KG_GCRA_TOO_LARGE)
            snprintf(why->message, sizeof(why->message),
                     "Request too large: about %lld tokens, more than this %s's limit of %lld %s.", (long long)tokens,
                     holder_name(holder), (long long)takes[refused].limit.limit, measures[refused % 3]);
        else
            snprintf(why->message, sizeof(why->message),
                     "Rate limit reached for this %s: %lld %s. Please try again in %lldms.", holder_name(holder),
                     (long long)takes[refused].limit.limit, measures[refused % 3],
                     (long long)((wait + 999999) / 1000000));
        return why->code;
    }
    a->held = true;
    return KG_OK;
}

/*
 * What of an unused reservation may be given back at now_ns: the reservation's units weigh on
 * the cell for one period from admission, so only the share of that period still ahead can be
 * returned (else a call settling late would credit tokens another window already used).
 */
static int64_t refundable(kg_gcra_limit_t l, int64_t unused, int64_t admitted_ns, int64_t now_ns)
{
    int64_t left_ns = admitted_ns + l.period_ns - now_ns;
    if (left_ns <= 0 || l.limit <= 0)
        return 0;
    __int128 cap = (__int128)left_ns * l.limit / l.period_ns;
    return cap < unused ? (int64_t)cap : unused;
}

void kg_admission_settle(kg_admission_t *a, int64_t tokens_used, int64_t cost_micro, int64_t now_ns, int64_t now_s)
{
    if (!a->held)
        return;
    a->held = false;
    for (size_t i = 0; i < a->n_holders; i++) {
        kg_holder_t *h = &a->holders[i];
        if (h->state == NULL)
            continue;
        kg_gcra_limit_t tpm = per(h->limits.tpm, MINUTE_NS);
        int64_t delta = tokens_used - a->tokens;
        if (delta < 0)
            delta = -refundable(tpm, -delta, a->admitted_ns, now_ns);
        kg_gcra_adjust(&h->state->tpm, tpm, delta);
        /* Every holder's spend is counted, budget or not: a budget set later starts from the truth. */
        kg_spent_add(h->state, cost_micro, now_s);
    }
    release(a, a->n_holders, a->n_holders);
}

/* Of the holders' cells of one measure, the one with the least left. */
static kg_gcra_state_t tightest(const kg_admission_t *a, size_t offset, int64_t now_ns)
{
    kg_gcra_state_t best = {0, 0, 0};
    for (size_t i = 0; i < a->n_holders; i++) {
        const kg_holder_t *h = &a->holders[i];
        if (h->state == NULL)
            continue;
        int64_t limit = offset == 0 ? h->limits.rpm : offset == 1 ? h->limits.rpd : h->limits.tpm;
        if (limit <= 0)
            continue;
        const kg_gcra_cell_t *cell = offset == 0 ? &h->state->rpm : offset == 1 ? &h->state->rpd : &h->state->tpm;
        kg_gcra_state_t s = kg_gcra_peek(cell, per(limit, offset == 1 ? DAY_NS : MINUTE_NS), now_ns);
        if (best.limit == 0 || s.remaining < best.remaining)
            best = s;
    }
    return best;
}

void kg_admission_headers(const kg_admission_t *a, int64_t now_ns, kg_gcra_state_t *requests, kg_gcra_state_t *tokens)
{
    *requests = tightest(a, 0, now_ns);
    if (requests->limit == 0)
        *requests = tightest(a, 1, now_ns); /* only a daily request limit: report that one */
    *tokens = tightest(a, 2, now_ns);
}

/* Twice per inference request: assembled by hand rather than through printf. */
size_t kg_reset_format(int64_t ns, char *buf, size_t cap)
{
    char out[64];
    size_t n = 0;
    if (ns < 0)
        ns = 0;
    if (ns < KG_NS_PER_SEC) {
        n += kg_put_uint(out, (uint64_t)((ns + 999999) / 1000000));
        out[n++] = 'm', out[n++] = 's';
    } else {
        uint64_t ms = (uint64_t)((ns + 999999) / 1000000), h = ms / 3600000, m = ms / 60000 % 60, s_ms = ms % 60000;
        if (h > 0) {
            n += kg_put_uint(out + n, h);
            out[n++] = 'h';
        }
        if (h > 0 || m > 0) {
            n += kg_put_uint(out + n, m);
            out[n++] = 'm';
        }
        n += kg_put_uint(out + n, s_ms / 1000);
        if (s_ms % 1000 != 0) { /* up to three decimals, trailing zeros dropped */
            unsigned frac = (unsigned)(s_ms % 1000), digits = 3;
            while (frac % 10 == 0)
                frac /= 10, digits--;
            out[n++] = '.';
            for (unsigned d = digits; d-- > 0;)
                out[n + d] = (char)('0' + frac % 10), frac /= 10;
            n += digits;
        }
        out[n++] = 's';
    }
    if (cap == 0)
        return 0;
    if (n > cap - 1)
        n = cap - 1;
    memcpy(buf, out, n);
    buf[n] = '\0';
    return n;
}
