/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of the GCRA cells (limits/gcra.h), on a simulated clock: the burst and the steady rate
 * a limit allows, rounding, all-or-nothing acquisition over a key and its team, reconciliation
 * of a reservation, and exact counts under threads racing on one cell.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "limits/gcra.h"
#include "../test.h"

#define SEC KG_NS_PER_SEC
#define MINUTE (60 * SEC)

static kg_gcra_verdict_t take1(kg_gcra_cell_t *c, kg_gcra_limit_t l, int64_t units, int64_t now, int64_t *wait)
{
    kg_gcra_take_t t = {c, l, units};
    return kg_gcra_acquire(&t, 1, now, wait, NULL);
}

void test_gcra_burst_then_steady_rate(void)
{
    kg_gcra_cell_t c = {0};
    kg_gcra_limit_t rpm = {60, MINUTE};
    int64_t t0 = 1000 * SEC, wait = -1;

    kg_gcra_state_t s = kg_gcra_peek(&c, rpm, t0);
    CHECK_INT(s.limit, 60);
    CHECK_INT(s.remaining, 60);
    CHECK_INT(s.reset_ns, 0);
    /* A full minute's allowance at once, and not one more. */
    for (int i = 0; i < 60; i++)
        CHECK_INT(take1(&c, rpm, 1, t0, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(take1(&c, rpm, 1, t0, &wait), KG_GCRA_LIMITED);
    CHECK_INT(wait, SEC); /* one unit comes back every period / limit */
    s = kg_gcra_peek(&c, rpm, t0);
    CHECK_INT(s.remaining, 0);
    CHECK_INT(s.reset_ns, MINUTE);
    CHECK_INT(take1(&c, rpm, 1, t0 + SEC - 1, &wait), KG_GCRA_LIMITED);
    CHECK_INT(wait, 1);
    CHECK_INT(take1(&c, rpm, 1, t0 + SEC, NULL), KG_GCRA_ADMITTED);
    s = kg_gcra_peek(&c, rpm, t0 + 31 * SEC);
    CHECK_INT(s.remaining, 30);
    CHECK_INT(s.reset_ns, 30 * SEC);

    /* Greedy callers every 10 ms for three minutes: after the first burst, no 60 s window
     * holds more than 60 admissions, and the long-run rate is the limit. */
    kg_gcra_cell_t g = {0};
    static int64_t admitted_at[400];
    int n = 0;
    for (int64_t now = t0; now < t0 + 3 * MINUTE; now += SEC / 100)
        for (int tries = 0; tries < 100 && take1(&g, rpm, 1, now, NULL) == KG_GCRA_ADMITTED; tries++)
            if (n < 400)
                admitted_at[n++] = now;
    CHECK_INT(n, 60 + 179); /* the burst, then one per second after it (t0 + 1 s ... t0 + 179 s) */
    for (int i = 0; i < n; i++) {
        if (admitted_at[i] < t0 + MINUTE)
            continue;
        int in_window = 0;
        for (int j = i; j < n && admitted_at[j] < admitted_at[i] + MINUTE; j++)
            in_window++;
        CHECK(in_window <= 60);
    }
}

void test_gcra_rounding_never_admits_more_than_the_limit(void)
{
    /* Periods that do not divide evenly: a full allowance is exactly `limit`. */
    static const kg_gcra_limit_t limits[] = {{4, 10},     {7, 10},          {3, MINUTE},
                                             {7, MINUTE}, {250000, MINUTE}, {13, 86400 * SEC}};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        kg_gcra_cell_t c = {0};
        int64_t n = 0;
        while (n <= limits[i].limit && take1(&c, limits[i], 1, 5 * SEC, NULL) == KG_GCRA_ADMITTED)
            n++;
        CHECK_INT(n, limits[i].limit);
    }
    /* More than one unit a nanosecond still works (interval clamped to 1 ns). */
    kg_gcra_cell_t c = {0};
    kg_gcra_limit_t fast = {100, 10};
    CHECK_INT(take1(&c, fast, 100, 0, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(take1(&c, fast, 1, 0, NULL), KG_GCRA_LIMITED);
}

void test_gcra_all_or_nothing(void)
{
    kg_gcra_cell_t key = {0}, team = {0}, key_tokens = {0};
    kg_gcra_limit_t key_rpm = {100, MINUTE}, team_rpm = {3, MINUTE}, tpm = {1000, MINUTE};
    int64_t now = 50 * SEC, wait = 0;
    size_t refused = 99;

    kg_gcra_take_t takes[] = {{&key, key_rpm, 1}, {&team, team_rpm, 1}, {&key_tokens, tpm, 200}};
    for (int i = 0; i < 3; i++)
        CHECK_INT(kg_gcra_acquire(takes, 3, now, NULL, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(kg_gcra_acquire(takes, 3, now, &wait, &refused), KG_GCRA_LIMITED);
    CHECK_INT(refused, 1);
    CHECK_INT(wait, 20 * SEC); /* the team gets a unit back every 20 s */
    /* The refusal took nothing from the key's cells. */
    CHECK_INT(kg_gcra_peek(&key, key_rpm, now).remaining, 97);
    CHECK_INT(kg_gcra_peek(&key_tokens, tpm, now).remaining, 400);

    /* The wait is the longest of the cells that cannot take their share: here the tokens. */
    kg_gcra_take_t big[] = {{&key, key_rpm, 1}, {&team, team_rpm, 1}, {&key_tokens, tpm, 800}};
    CHECK_INT(kg_gcra_acquire(big, 3, now, &wait, &refused), KG_GCRA_LIMITED);
    CHECK_INT(wait, 400 * (MINUTE / 1000)); /* 400 tokens short, one back every 60 ms: 24 s > 20 s */

    /* A limit of 0 is no limit, and a cell asked for 0 units is not touched. */
    kg_gcra_cell_t unused = {0};
    kg_gcra_take_t free_takes[] = {{&unused, (kg_gcra_limit_t){0, MINUTE}, 5}, {&key, key_rpm, 0}};
    CHECK_INT(kg_gcra_acquire(free_takes, 2, now, NULL, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(atomic_load(&unused.tat), 0);
    CHECK_INT(kg_gcra_peek(&key, key_rpm, now).remaining, 97);

    /* More units than the limit can never pass: said so, and nothing is taken. */
    kg_gcra_take_t huge[] = {{&key, key_rpm, 1}, {&key_tokens, tpm, 1001}};
    CHECK_INT(kg_gcra_acquire(huge, 2, now, NULL, &refused), KG_GCRA_TOO_LARGE);
    CHECK_INT(refused, 1);
    CHECK_INT(kg_gcra_peek(&key, key_rpm, now).remaining, 97);
}

void test_gcra_reconcile(void)
{
    kg_gcra_cell_t c = {0};
    kg_gcra_limit_t tpm = {10000, MINUTE};
    int64_t now = 7 * SEC;

    /* Reserve 1,000 tokens, use 100: 900 come back. */
    CHECK_INT(take1(&c, tpm, 1000, now, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(kg_gcra_peek(&c, tpm, now).remaining, 9000);
    kg_gcra_adjust(&c, tpm, -900);
    CHECK_INT(kg_gcra_peek(&c, tpm, now).remaining, 9900);
    /* A give-back beyond what was taken credits nothing beyond the limit. */
    kg_gcra_adjust(&c, tpm, -5000);
    CHECK_INT(kg_gcra_peek(&c, tpm, now).remaining, 10000);
    CHECK_INT(take1(&c, tpm, 10000, now, NULL), KG_GCRA_ADMITTED);
    CHECK_INT(take1(&c, tpm, 1, now, NULL), KG_GCRA_LIMITED);

    /* A response that used more than was reserved: billed, and the cell owes it. */
    kg_gcra_cell_t o = {0};
    CHECK_INT(take1(&o, tpm, 9000, now, NULL), KG_GCRA_ADMITTED);
    kg_gcra_adjust(&o, tpm, 3000); /* 12,000 used in all */
    kg_gcra_state_t s = kg_gcra_peek(&o, tpm, now);
    CHECK_INT(s.remaining, 0);
    CHECK_INT(s.reset_ns, 12000 * (MINUTE / 10000));
    /* The overrun drains first (2,000 tokens, 12 s); then tokens come back one per 6 ms. */
    CHECK_INT(take1(&o, tpm, 1, now + 12 * SEC, NULL), KG_GCRA_LIMITED);
    CHECK_INT(take1(&o, tpm, 1, now + 12 * SEC + MINUTE / 10000, NULL), KG_GCRA_ADMITTED);
}

/* ==== Threads racing on shared cells ==== */

#define RACERS 8
#define ATTEMPTS 5000

typedef struct racer {
    kg_gcra_cell_t *key, *team;
    kg_gcra_limit_t key_limit, team_limit;
    int admitted;
} racer_t;

static _Atomic int racers_ready;

static void *race(void *arg)
{
    racer_t *r = arg;
    atomic_fetch_add(&racers_ready, 1);
    while (atomic_load(&racers_ready) < RACERS)
        ; /* start together */
    for (int i = 0; i < ATTEMPTS; i++) {
        kg_gcra_take_t takes[] = {{r->key, r->key_limit, 1}, {r->team, r->team_limit, 1}};
        if (kg_gcra_acquire(takes, 2, 3 * SEC, NULL, NULL) == KG_GCRA_ADMITTED)
            r->admitted++;
    }
    return NULL;
}

void test_gcra_exact_under_threads(void)
{
    /* Two keys of one team, four threads each, at one instant: the team's 3,000 are shared out
     * exactly, and neither key passes its own 2,000. */
    kg_gcra_cell_t key_a = {0}, key_b = {0}, team = {0};
    kg_gcra_limit_t key_limit = {2000, MINUTE}, team_limit = {3000, MINUTE};
    racer_t racers[RACERS];
    pthread_t threads[RACERS];

    atomic_store(&racers_ready, 0);
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){i % 2 ? &key_a : &key_b, &team, key_limit, team_limit, 0};
        CHECK(pthread_create(&threads[i], NULL, race, &racers[i]) == 0);
    }
    int total = 0, on_a = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        total += racers[i].admitted;
        if (i % 2)
            on_a += racers[i].admitted;
    }
    CHECK_INT(total, 3000);
    CHECK(on_a <= 2000 && total - on_a <= 2000);
    CHECK_INT(kg_gcra_peek(&team, team_limit, 3 * SEC).remaining, 0);
    /* Each key's cell holds exactly what it was granted (refusals gave theirs back). */
    CHECK_INT(kg_gcra_peek(&key_a, key_limit, 3 * SEC).remaining, 2000 - on_a);
    CHECK_INT(kg_gcra_peek(&key_b, key_limit, 3 * SEC).remaining, 2000 - (total - on_a));
}
