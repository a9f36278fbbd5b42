/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the GCRA cells of gcra.h. With T = period / limit (the emission
 * interval), taking u units at time t moves the cell's TAT to max(TAT, t) + u·T, and is allowed
 * while that stays within one period of t. A cell is a single atomic, updated by compare and
 * swap, so workers never lock; an acquisition over several cells takes them in order and gives
 * back what it took if a later one refuses.
 */
#include "limits/gcra.h"

static int64_t interval_ns(kg_gcra_limit_t l)
{
    int64_t t = l.period_ns / l.limit;
    return t > 0 ? t : 1;
}

/* The burst tolerance: a full allowance is `limit` intervals (not period_ns, which the rounded-down
 * interval might let limit + 1 units fit into). */
static int64_t tolerance_ns(kg_gcra_limit_t l)
{
    return l.limit * interval_ns(l);
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Takes u units if they fit; else returns false and sets *wait_ns. */
static bool take_one(kg_gcra_cell_t *cell, kg_gcra_limit_t l, int64_t units, int64_t now, int64_t *wait_ns)
{
    int64_t t = interval_ns(l), tau = tolerance_ns(l), tat = atomic_load_explicit(&cell->tat, memory_order_relaxed);
    for (;;) {
        int64_t next = max64(tat, now) + units * t;
        if (next - now > tau) {
            *wait_ns = next - now - tau;
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(&cell->tat, &tat, next, memory_order_relaxed, memory_order_relaxed))
            return true;
    }
}

static bool is_free(const kg_gcra_take_t *tk)
{
    return tk->limit.limit <= 0 || tk->units <= 0;
}

kg_gcra_verdict_t kg_gcra_acquire(const kg_gcra_take_t *takes, size_t n, int64_t now_ns, int64_t *retry_after_ns,
                                  size_t *refused)
{
    for (size_t i = 0; i < n; i++)
        if (!is_free(&takes[i]) && takes[i].units > takes[i].limit.limit) {
            if (refused != NULL)
                *refused = i;
            return KG_GCRA_TOO_LARGE;
        }
    for (size_t i = 0; i < n; i++) {
        int64_t wait = 0;
        if (is_free(&takes[i]) || take_one(takes[i].cell, takes[i].limit, takes[i].units, now_ns, &wait))
            continue;
        /* All or nothing: give back what the earlier cells took. */
        for (size_t j = 0; j < i; j++)
            if (!is_free(&takes[j]))
                kg_gcra_adjust(takes[j].cell, takes[j].limit, -takes[j].units);
        /* The caller's wait is the longest among the cells that cannot take their units now. */
        for (size_t j = i + 1; j < n; j++) {
            kg_gcra_state_t s;
            if (is_free(&takes[j]))
                continue;
            s = kg_gcra_peek(takes[j].cell, takes[j].limit, now_ns);
            if (s.remaining < takes[j].units) {
                int64_t need = (takes[j].units - s.remaining) * interval_ns(takes[j].limit);
                wait = max64(wait, need);
            }
        }
        if (retry_after_ns != NULL)
            *retry_after_ns = wait;
        if (refused != NULL)
            *refused = i;
        return KG_GCRA_LIMITED;
    }
    return KG_GCRA_ADMITTED;
}

void kg_gcra_adjust(kg_gcra_cell_t *cell, kg_gcra_limit_t limit, int64_t units)
{
    if (limit.limit <= 0 || units == 0)
        return;
    /* Bounded to one period either way: an adjustment can never owe or credit more than that. */
    if (units > limit.limit)
        units = limit.limit;
    if (units < -limit.limit)
        units = -limit.limit;
    /* A TAT below "now" already means a full allowance (max(TAT, now) in take_one): a give-back
     * that lands there credits nothing more. */
    atomic_fetch_add_explicit(&cell->tat, units * interval_ns(limit), memory_order_relaxed);
}

kg_gcra_state_t kg_gcra_peek(const kg_gcra_cell_t *cell, kg_gcra_limit_t limit, int64_t now_ns)
{
    kg_gcra_state_t s = {limit.limit, limit.limit, 0};
    if (limit.limit <= 0)
        return s;
    int64_t t = interval_ns(limit), tau = tolerance_ns(limit);
    int64_t busy = max64(atomic_load_explicit(&cell->tat, memory_order_relaxed), now_ns) - now_ns;
    s.remaining = busy >= tau ? 0 : (tau - busy) / t; /* past tau: a reconciled overrun draining */
    s.reset_ns = busy;
    return s;
}
