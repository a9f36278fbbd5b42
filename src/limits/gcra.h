/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the rate limiter's arithmetic (issue 6): the Generic Cell Rate Algorithm, one
 * lock-free cell per (holder, measure) — a key's requests per minute, a team's tokens per
 * minute, ... A cell is one atomic "theoretical arrival time"; a limit of N per period lets
 * N units through at once and then one every period / N, so there is no window boundary to
 * burst across. kg_gcra_acquire takes several cells all or nothing (a key and its team), and
 * kg_gcra_adjust reconciles a reservation with what was really used. Time is passed in, in
 * nanoseconds of any monotonic clock, so tests drive it without sleeping.
 */
#ifndef KG_LIMITS_GCRA_H
#define KG_LIMITS_GCRA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_NS_PER_SEC INT64_C(1000000000)

/** A limit: `limit` units per `period_ns`; limit 0 means no limit. */
typedef struct kg_gcra_limit {
    int64_t limit;
    int64_t period_ns;
} kg_gcra_limit_t;

/** One counter. Zero-initialised is ready (a full allowance). */
typedef struct kg_gcra_cell {
    _Atomic int64_t tat; /* theoretical arrival time of the next unit, ns */
} kg_gcra_cell_t;

/** What a request may be told about one cell (OpenAI's x-ratelimit-* triple). */
typedef struct kg_gcra_state {
    int64_t limit;
    int64_t remaining; /* units that would pass now */
    int64_t reset_ns;  /* until the full allowance is back */
} kg_gcra_state_t;

typedef enum kg_gcra_verdict {
    KG_GCRA_ADMITTED = 0,
    KG_GCRA_LIMITED,   /* not now: retry_after_ns says when */
    KG_GCRA_TOO_LARGE, /* more units than the limit: never */
} kg_gcra_verdict_t;

/** One cell of an acquisition: the cell, its limit and the units to take. */
typedef struct kg_gcra_take {
    kg_gcra_cell_t *cell;
    kg_gcra_limit_t limit;
    int64_t units;
} kg_gcra_take_t;

/**
 * Takes takes[i].units from every cell, or from none. On KG_GCRA_LIMITED, *retry_after_ns is
 * the longest wait among the refusing cells (retrying then may still race other callers) and
 * *refused the index of the first cell that refused; both may be NULL. Cells with limit 0 or
 * units 0 always pass and are not touched. Safe from any thread.
 */
kg_gcra_verdict_t kg_gcra_acquire(const kg_gcra_take_t *takes, size_t n, int64_t now_ns, int64_t *retry_after_ns,
                                  size_t *refused);

/**
 * Gives back (units < 0) or takes more (units > 0) after the fact, without refusing: a token
 * reservation reconciled with the response's usage. A give-back never credits more than an
 * idle cell holds.
 */
void kg_gcra_adjust(kg_gcra_cell_t *cell, kg_gcra_limit_t limit, int64_t units);

/** The cell's state now, for the x-ratelimit-* headers. */
kg_gcra_state_t kg_gcra_peek(const kg_gcra_cell_t *cell, kg_gcra_limit_t limit, int64_t now_ns);

#endif
