/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements limits.h: parsing on the writer side (jansson), period arithmetic and
 * the spend counters on the request path (atomics only).
 */
#include "limits/limits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static int64_t member_int(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

kg_rate_limits_t kg_rate_limits_parse(const char *json)
{
    kg_rate_limits_t l = {0};
    json_t *o = json != NULL ? json_loads(json, 0, NULL) : NULL;
    if (json_is_object(o)) {
        l.rpm = member_int(o, "rpm");
        l.tpm = member_int(o, "tpm");
        l.rpd = member_int(o, "rpd");
        l.max_concurrency = member_int(o, "max_concurrency");
    }
    json_decref(o);
    return l;
}

kg_budget_t kg_budget_parse(const char *json)
{
    kg_budget_t b = {0};
    json_t *o = json != NULL ? json_loads(json, 0, NULL) : NULL;
    json_t *limit = json_object_get(o, "limit_credits");
    if (json_is_number(limit) && json_number_value(limit) >= 0) {
        const char *p = json_string_value(json_object_get(o, "period"));
        b.set = true;
        b.limit_micro = llround(json_number_value(limit) * 1e6);
        b.period = p == NULL || strcmp(p, "none") == 0 ? KG_PERIOD_NONE
                   : strcmp(p, "day") == 0             ? KG_PERIOD_DAY
                                                       : KG_PERIOD_MONTH;
    }
    json_decref(o);
    return b;
}

bool kg_tier_preset(const char *tier, kg_rate_limits_t *out)
{
    static const struct {
        const char *name;
        kg_rate_limits_t limits;
    } tiers[] = {
        {"free", {.rpm = 60, .tpm = 40000}},
        {"pro", {.rpm = 3000, .tpm = 250000}},
        {"team", {.rpm = 5000, .tpm = 500000}},
    };
    for (size_t i = 0; tier != NULL && i < sizeof(tiers) / sizeof(tiers[0]); i++)
        if (strcmp(tiers[i].name, tier) == 0) {
            *out = tiers[i].limits;
            return true;
        }
    return false;
}

static int64_t stricter(int64_t a, int64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

kg_rate_limits_t kg_rate_limits_stricter(kg_rate_limits_t a, kg_rate_limits_t b)
{
    return (kg_rate_limits_t){stricter(a.rpm, b.rpm), stricter(a.tpm, b.tpm), stricter(a.rpd, b.rpd),
                              stricter(a.max_concurrency, b.max_concurrency)};
}

int64_t kg_period_start(kg_budget_period_t p, int64_t now)
{
    if (p == KG_PERIOD_NONE)
        return 0;
    if (p == KG_PERIOD_DAY)
        return now - now % 86400;
    /* The month's start changes once a day at most: each thread remembers the last day's. */
    static __thread int64_t cached_day = -1, cached_month;
    int64_t day = now / 86400;
    if (day == cached_day)
        return cached_month;
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1, tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    cached_month = (int64_t)timegm(&tm);
    cached_day = day;
    return cached_month;
}

/* Moves s to the period starting at `start` if it is newer. A request adding across the switch
 * may land in either period: budgets are judged per request, not to the credit. */
static void roll(kg_spend_t *s, int64_t start)
{
    int64_t cur = atomic_load_explicit(&s->period_start, memory_order_acquire);
    if (start > cur && atomic_compare_exchange_strong(&s->period_start, &cur, start))
        atomic_store_explicit(&s->micro, 0, memory_order_release);
}

int64_t kg_spent_now(kg_limit_state_t *st, kg_budget_period_t p, int64_t now)
{
    kg_spend_t *s = &st->spent[p];
    roll(s, kg_period_start(p, now));
    return atomic_load_explicit(&s->micro, memory_order_acquire);
}

void kg_spent_add(kg_limit_state_t *st, int64_t micro, int64_t now)
{
    for (int p = KG_PERIOD_NONE; p <= KG_PERIOD_MONTH; p++) {
        roll(&st->spent[p], kg_period_start((kg_budget_period_t)p, now));
        atomic_fetch_add_explicit(&st->spent[p].micro, micro, memory_order_acq_rel);
    }
}

int64_t kg_wall_ms(void)
{
    static const char *clock_file;
    static _Atomic int checked;
    struct timespec ts;
    int64_t offset_s = 0;

    if (!atomic_load_explicit(&checked, memory_order_acquire)) {
        clock_file = getenv("KEYGATE_TEST_CLOCK_FILE");
        atomic_store_explicit(&checked, 1, memory_order_release);
    }
    if (clock_file != NULL) { /* tests only: a read per call is fine there */
        FILE *f = fopen(clock_file, "r");
        long long v = 0;
        if (f != NULL) {
            if (fscanf(f, "%lld", &v) == 1)
                offset_s = v;
            fclose(f);
        }
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec + offset_s) * 1000 + ts.tv_nsec / 1000000;
}
