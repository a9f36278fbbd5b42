/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of admission (limits/admit.h) and the limits it reads (limits/limits.h) on simulated
 * clocks: a key and its team refused all or nothing, concurrency slots, budgets with their
 * calendar periods and zero-priced calls, settlement, the headers' values and their format.
 */
#include "limits/admit.h"
#include "core/decimal.h"
#include "../test.h"

#define SEC KG_NS_PER_SEC
#define T0 (1000 * SEC)
#define DAY0 INT64_C(1795305600) /* 2026-11-22T00:00:00Z */

static kg_admission_t two_holders(kg_limit_state_t *key, kg_rate_limits_t kl, kg_limit_state_t *team,
                                  kg_rate_limits_t tl)
{
    kg_admission_t a = {.n_holders = 2};
    a.holders[0] = (kg_holder_t){key, kl, {0}};
    a.holders[1] = (kg_holder_t){team, tl, {0}};
    return a;
}

void test_admit_key_and_team_all_or_nothing(void)
{
    kg_limit_state_t key = {0}, team = {0}, other_key = {0};
    kg_refusal_t why;
    /* The team (rpm 3) is stricter than the key (rpm 10): its refusal leaves the key untouched. */
    for (int i = 0; i < 3; i++) {
        kg_admission_t a = two_holders(&key, (kg_rate_limits_t){.rpm = 10}, &team, (kg_rate_limits_t){.rpm = 3});
        CHECK_INT(kg_admit(&a, 10, 0, T0, DAY0, &why), KG_OK);
        kg_admission_settle(&a, 10, 0, T0, DAY0);
    }
    kg_admission_t a = two_holders(&key, (kg_rate_limits_t){.rpm = 10}, &team, (kg_rate_limits_t){.rpm = 3});
    CHECK_INT(kg_admit(&a, 10, 0, T0, DAY0, &why), KG_ERATE_LIMIT_EXCEEDED);
    CHECK(why.retry_after_ns > 0 && why.retry_after_ns <= 20 * SEC);
    CHECK(strstr(why.message, "team") != NULL);
    CHECK(!why.retry_useless);
    CHECK_INT(kg_gcra_peek(&key.rpm, (kg_gcra_limit_t){10, 60 * SEC}, T0).remaining, 7);
    /* Another key of the same team is refused by the shared team cell. */
    kg_admission_t b = two_holders(&other_key, (kg_rate_limits_t){0}, &team, (kg_rate_limits_t){.rpm = 3});
    CHECK_INT(kg_admit(&b, 1, 0, T0, DAY0, &why), KG_ERATE_LIMIT_EXCEEDED);
    /* Headers report the tightest holder: the team's. */
    kg_gcra_state_t req, tok;
    kg_admission_headers(&a, T0, &req, &tok);
    CHECK_INT(req.limit, 3);
    CHECK_INT(req.remaining, 0);
    CHECK_INT(tok.limit, 0); /* no token limit anywhere */
}

void test_admit_tokens_reserved_and_reconciled(void)
{
    kg_limit_state_t key = {0};
    kg_refusal_t why;
    kg_admission_t a = {.n_holders = 1, .holders = {{&key, {.tpm = 1000}, {0}}}};
    CHECK_INT(kg_admit(&a, 600, 0, T0, DAY0, &why), KG_OK);
    kg_gcra_state_t req, tok;
    kg_admission_headers(&a, T0, &req, &tok);
    CHECK_INT(tok.remaining, 400);
    kg_admission_settle(&a, 100, 0, T0, DAY0); /* used far less than reserved: given back */
    kg_admission_headers(&a, T0, &req, &tok);
    CHECK_INT(tok.remaining, 900);
    kg_admission_settle(&a, 100, 0, T0, DAY0); /* a second settle does nothing */
    kg_admission_headers(&a, T0, &req, &tok);
    CHECK_INT(tok.remaining, 900);
    /* More than the whole limit can never pass: no retry helps. */
    CHECK_INT(kg_admit(&a, 1001, 0, T0, DAY0, &why), KG_ERATE_LIMIT_EXCEEDED);
    CHECK(why.retry_useless);
    CHECK_INT(atomic_load(&key.in_flight), 0);

    /* A reservation settled more than a period after admission gives nothing back: its tokens
     * weighed on a window that is over, and another call has used the next one since. */
    kg_limit_state_t late = {0};
    kg_gcra_limit_t tpm = {1000, 60 * SEC};
    kg_admission_t slow = {.n_holders = 1, .holders = {{&late, {.tpm = 1000}, {0}}}}, next = slow;
    CHECK_INT(kg_admit(&slow, 900, 0, T0, DAY0, &why), KG_OK);
    CHECK_INT(kg_admit(&next, 900, 0, T0 + 61 * SEC, DAY0, &why), KG_OK); /* the next window */
    kg_admission_settle(&slow, 0, 0, T0 + 70 * SEC, DAY0);                /* used nothing, 70 s on */
    /* next holds 900 until T0 + 115 s: 250 are back at T0 + 70 s (a refund would say 1000). */
    CHECK_INT(kg_gcra_peek(&late.tpm, tpm, T0 + 70 * SEC).remaining, 250);
    kg_admission_settle(&next, 900, 0, T0 + 70 * SEC, DAY0);
}

void test_admit_concurrency_slots(void)
{
    kg_limit_state_t key = {0};
    kg_refusal_t why;
    kg_admission_t a[3];
    for (int i = 0; i < 3; i++)
        a[i] = (kg_admission_t){.n_holders = 1, .holders = {{&key, {.max_concurrency = 2}, {0}}}};
    CHECK_INT(kg_admit(&a[0], 1, 0, T0, DAY0, &why), KG_OK);
    CHECK_INT(kg_admit(&a[1], 1, 0, T0, DAY0, &why), KG_OK);
    CHECK_INT(kg_admit(&a[2], 1, 0, T0, DAY0, &why), KG_ERATE_LIMIT_EXCEEDED);
    CHECK(strstr(why.message, "concurrent") != NULL);
    kg_admission_settle(&a[0], 1, 0, T0, DAY0);
    CHECK_INT(kg_admit(&a[2], 1, 0, T0, DAY0, &why), KG_OK);
    CHECK_INT(atomic_load(&key.in_flight), 2);
}

void test_admit_budget_periods(void)
{
    kg_limit_state_t key = {0};
    kg_refusal_t why;
    kg_budget_t day = {.set = true, .limit_micro = 1000, .period = KG_PERIOD_DAY};
    kg_admission_t a = {.n_holders = 1, .holders = {{&key, {0}, day}}};
    kg_admission_t b = a;
    /* Reservations count: two 400s fit, a third does not while they are in flight. */
    CHECK_INT(kg_admit(&a, 1, 400, T0, DAY0 + 10, &why), KG_OK);
    CHECK_INT(kg_admit(&b, 1, 400, T0, DAY0 + 10, &why), KG_OK);
    kg_admission_t c = {.n_holders = 1, .holders = {{&key, {0}, day}}};
    CHECK_INT(kg_admit(&c, 1, 400, T0, DAY0 + 10, &why), KG_EINSUFFICIENT_QUOTA);
    CHECK(why.retry_useless);
    /* Settled below the estimate: room again. */
    kg_admission_settle(&a, 1, 100, T0, DAY0 + 10);
    kg_admission_settle(&b, 1, 100, T0, DAY0 + 10);
    CHECK_INT(kg_spent_now(&key, KG_PERIOD_DAY, DAY0 + 10), 200);
    CHECK_INT(kg_admit(&c, 1, 800, T0, DAY0 + 10, &why), KG_OK);
    kg_admission_settle(&c, 1, 800, T0, DAY0 + 10);
    /* Spent: 1000. Nothing priced passes today; a zero-priced call always does. */
    CHECK_INT(kg_admit(&a, 1, 1, T0, DAY0 + 20, &why), KG_EINSUFFICIENT_QUOTA);
    CHECK_INT(kg_admit(&a, 1, 0, T0, DAY0 + 20, &why), KG_OK);
    kg_admission_settle(&a, 1, 0, T0, DAY0 + 20);
    /* The next UTC day starts from zero; the month and all-time sums keep counting. */
    CHECK_INT(kg_admit(&a, 1, 900, T0, DAY0 + 86400, &why), KG_OK);
    kg_admission_settle(&a, 1, 900, T0, DAY0 + 86400);
    CHECK_INT(kg_spent_now(&key, KG_PERIOD_DAY, DAY0 + 86400), 900);
    CHECK_INT(kg_spent_now(&key, KG_PERIOD_MONTH, DAY0 + 86400), 1900);
    CHECK_INT(kg_spent_now(&key, KG_PERIOD_NONE, DAY0 + 86400), 1900);
    CHECK_INT(atomic_load(&key.reserved_micro), 0);
}

void test_limits_parse_and_periods(void)
{
    kg_rate_limits_t l = kg_rate_limits_parse("{\"rpm\":5,\"tpm\":100,\"rpd\":null,\"max_concurrency\":2}");
    CHECK_INT(l.rpm, 5);
    CHECK_INT(l.tpm, 100);
    CHECK_INT(l.rpd, 0);
    CHECK_INT(l.max_concurrency, 2);
    kg_budget_t b = kg_budget_parse("{\"limit_credits\":2.5,\"period\":\"month\"}");
    CHECK(b.set);
    CHECK_INT(b.limit_micro, 2500000);
    CHECK_INT(b.period, KG_PERIOD_MONTH);
    CHECK(!kg_budget_parse(NULL).set);
    kg_rate_limits_t t;
    CHECK(kg_tier_preset("free", &t) && t.rpm == 60 && t.tpm == 40000);
    CHECK(kg_tier_preset("pro", &t) && t.rpm == 3000 && t.tpm == 250000);
    CHECK(kg_tier_preset("team", &t) && t.rpm == 5000 && t.tpm == 500000);
    CHECK(!kg_tier_preset("custom", &t));
    kg_rate_limits_t s =
        kg_rate_limits_stricter((kg_rate_limits_t){.rpm = 10, .tpm = 0}, (kg_rate_limits_t){.rpm = 60, .tpm = 500});
    CHECK_INT(s.rpm, 10);
    CHECK_INT(s.tpm, 500);
    CHECK_INT(kg_period_start(KG_PERIOD_DAY, DAY0 + 3600), DAY0);
    CHECK_INT(kg_period_start(KG_PERIOD_MONTH, DAY0 + 3600), INT64_C(1793491200));         /* 2026-11-01 */
    CHECK_INT(kg_period_start(KG_PERIOD_MONTH, INT64_C(1796083200)), INT64_C(1796083200)); /* 2026-12-01 */
    CHECK_INT(kg_period_start(KG_PERIOD_NONE, DAY0), 0);
}

void test_reset_format(void)
{
    char buf[32];
    static const struct {
        int64_t ns;
        const char *text;
    } cases[] = {
        {0, "0ms"},
        {-5, "0ms"},
        {61 * SEC + 5 * 1000000LL, "1m1.005s"},
        {1, "1ms"},
        {20 * 1000000LL, "20ms"},
        {SEC, "1s"},
        {1500 * 1000000LL, "1.5s"},
        {59 * SEC + 250 * 1000000LL, "59.25s"},
        {360 * SEC, "6m0s"},
        {90 * SEC, "1m30s"},
        {3723 * SEC, "1h2m3s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kg_reset_format(cases[i].ns, buf, sizeof(buf));
        CHECK_STR(buf, cases[i].text);
    }
    CHECK_INT(kg_reset_format(3723 * SEC, buf, 4), 3); /* cut to fit */
    CHECK_STR(buf, "1h2");
    CHECK_INT(kg_format_uint(0, buf), 1);
    CHECK_STR(buf, "0");
    CHECK_INT(kg_format_uint(UINT64_MAX, buf), 20);
    CHECK_STR(buf, "18446744073709551615");
}
