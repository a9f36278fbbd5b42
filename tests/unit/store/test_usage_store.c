/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of the usage side of src/store/ on real SQLite files: exactly-once inserts (a journal
 * replayed twice counts nothing twice), the totals that seed budget counters, the bucketed
 * series of GET /v1/usage (boundaries, org isolation, filters, bounds, truncation), and the
 * upgrade of a schema-4 store.
 */
#include <sqlite3.h>
#include <stdlib.h>

#include "../test.h"
#include "store/store.h"

#define MINUTE_MS 60000
#define HOUR_MS 3600000
#define DAY_MS 86400000
#define DAY0 ((int64_t)19675 * DAY_MS) /* a UTC midnight (2023-11-14) */

#define KEY_A1 "pk_aaaaaaaaaaaaaaaaaaaaaaa1"
#define KEY_A2 "pk_aaaaaaaaaaaaaaaaaaaaaaa2"
#define KEY_B1 "pk_bbbbbbbbbbbbbbbbbbbbbbb1"

typedef struct fixture {
    char dir[64];
    char db[128];
    kg_store_t *st;
} fixture_t;

static void fixture_open(fixture_t *f)
{
    char err[256];
    kg_test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/u.db", f->dir);
    f->st = kg_store_open(f->db, err, sizeof(err));
    if (f->st == NULL)
        fprintf(stderr, "    %s\n", err);
    CHECK(f->st != NULL);
}

static void fixture_close(fixture_t *f)
{
    kg_store_close(f->st);
}

static kg_usage_record_t rec(const char *request_id, int64_t at_ms, const char *org, const char *key, const char *team,
                             int status, int64_t in, int64_t out, int64_t cost)
{
    kg_usage_record_t r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "%s", request_id);
    snprintf(r.org_id, sizeof(r.org_id), "%s", org);
    snprintf(r.key_id, sizeof(r.key_id), "%s", key);
    snprintf(r.team_id, sizeof(r.team_id), "%s", team);
    snprintf(r.model, sizeof(r.model), "gpt-4o-mini");
    snprintf(r.upstream_model, sizeof(r.upstream_model), "gpt-4o-mini-2024-07-18");
    r.at_ms = at_ms, r.route = KG_USAGE_CHAT, r.status = status;
    r.input_tokens = in, r.output_tokens = out, r.cost_micro = cost;
    r.latency_us = 1500, r.upstream_latency_us = 1200;
    return r;
}

static void check_totals(const kg_usage_totals_t *t, int64_t requests, int64_t errors, int64_t in, int64_t out,
                         int64_t cost)
{
    CHECK_INT(t->requests, requests);
    CHECK_INT(t->errors, errors);
    CHECK_INT(t->input_tokens, in);
    CHECK_INT(t->output_tokens, out);
    CHECK_INT(t->cost_micro, cost);
}

static int64_t count_rows(const char *db)
{
    sqlite3 *raw;
    sqlite3_stmt *s;
    int64_t n = -1;
    CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(raw, "SELECT count(*) FROM usage", -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return n;
}

void test_usage_store_insert_is_exactly_once(void)
{
    fixture_t f;
    kg_usage_totals_t t;
    size_t inserted = 99;

    fixture_open(&f);
    kg_usage_record_t first[] = {
        rec("req-1", DAY0 + 1, "org_a", KEY_A1, "ml", 200, 10, 20, 300),
        rec("req-2", DAY0 + 2, "org_a", KEY_A1, "ml", 500, 1, 0, 7),
        rec("req-3", DAY0 + 3, "org_a", KEY_A2, "", 200, 5, 5, 50),
    };
    CHECK_INT(kg_store_usage_insert(f.st, first, 3, &inserted), KG_OK);
    CHECK_INT(inserted, 3);

    /* The journal replayed: the first batch again (one record now claims another cost, as a
     * torn replay might), plus new ones, one of them twice in the same batch. */
    kg_usage_record_t second[] = {
        first[0],
        first[1],
        first[2],
        rec("req-4", DAY0 + 4, "org_a", KEY_A1, "ml", 400, 2, 3, 11), /* 400: the first error status */
        rec("req-5", DAY0 + 5, "org_a", KEY_A1, "ml", 399, 4, 6, 13), /* 399: not an error */
        rec("req-5", DAY0 + 5, "org_a", KEY_A1, "ml", 399, 4, 6, 13), /* duplicate within the batch */
        rec("req-6", DAY0 + 6, "org_b", KEY_B1, "ml", 429, 0, 0, 0),  /* another org */
    };
    second[0].cost_micro = 999999;
    CHECK_INT(kg_store_usage_insert(f.st, second, 7, &inserted), KG_OK);
    CHECK_INT(inserted, 3);
    CHECK_INT(kg_store_usage_insert(f.st, second, 7, NULL), KG_OK); /* *inserted may be NULL */
    CHECK_INT(kg_store_usage_insert(f.st, second, 7, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(kg_store_usage_insert(f.st, NULL, 0, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(count_rows(f.db), 6);

    /* The first write wins: the replayed record's different cost is not counted. */
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A1, &t), KG_OK);
    check_totals(&t, 4, 2, 10 + 1 + 2 + 4, 20 + 0 + 3 + 6, 300 + 7 + 11 + 13);
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A2, &t), KG_OK);
    check_totals(&t, 1, 0, 5, 5, 50);
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_B1, &t), KG_OK);
    check_totals(&t, 1, 1, 0, 0, 0);
    CHECK_INT(kg_store_usage_key_totals(f.st, "pk_nobody", &t), KG_OK);
    check_totals(&t, 0, 0, 0, 0, 0);

    /* A record without a request id could never be told from another: the whole batch is
     * refused and nothing of it is stored. */
    kg_usage_record_t bad[] = {
        rec("req-7", DAY0 + 7, "org_a", KEY_A2, "", 200, 1, 1, 1),
        rec("", DAY0 + 8, "org_a", KEY_A2, "", 200, 1, 1, 1),
    };
    inserted = 99;
    CHECK_INT(kg_store_usage_insert(f.st, bad, 2, &inserted), KG_EINVALID_VALUE);
    CHECK_INT(inserted, 0);
    CHECK_INT(count_rows(f.db), 6);

    fixture_close(&f);
}

void test_usage_store_columns_round_trip(void)
{
    fixture_t f;
    sqlite3 *raw;
    sqlite3_stmt *s;

    fixture_open(&f);
    kg_usage_record_t r = rec("req-cols", DAY0 + 42, "org_a", KEY_A1, "research", 201, 17, 19, 23);
    r.route = KG_USAGE_EMBEDDINGS, r.stream = true, r.estimated = true;
    r.latency_us = 31, r.upstream_latency_us = 29;
    /* A torn journal slot may have lost the NUL: the store reads within the array only. */
    memset(r.model, 'm', sizeof(r.model));
    CHECK_INT(kg_store_usage_insert(f.st, &r, 1, NULL), KG_OK);

    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(raw,
                                 "SELECT request_id, at_ms, key_id, org_id, team_id, length(model), upstream_model,"
                                 " route, status, input_tokens, output_tokens, cost_micro, latency_us,"
                                 " upstream_latency_us, stream, estimated FROM usage",
                                 -1, &s, NULL),
              SQLITE_OK);
    CHECK_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(s, 0), "req-cols");
    CHECK_INT(sqlite3_column_int64(s, 1), DAY0 + 42);
    CHECK_STR((const char *)sqlite3_column_text(s, 2), KEY_A1);
    CHECK_STR((const char *)sqlite3_column_text(s, 3), "org_a");
    CHECK_STR((const char *)sqlite3_column_text(s, 4), "research");
    CHECK_INT(sqlite3_column_int64(s, 5), sizeof(r.model));
    CHECK_STR((const char *)sqlite3_column_text(s, 6), "gpt-4o-mini-2024-07-18");
    CHECK_INT(sqlite3_column_int64(s, 7), KG_USAGE_EMBEDDINGS);
    CHECK_INT(sqlite3_column_int64(s, 8), 201);
    CHECK_INT(sqlite3_column_int64(s, 9), 17);
    CHECK_INT(sqlite3_column_int64(s, 10), 19);
    CHECK_INT(sqlite3_column_int64(s, 11), 23);
    CHECK_INT(sqlite3_column_int64(s, 12), 31);
    CHECK_INT(sqlite3_column_int64(s, 13), 29);
    CHECK_INT(sqlite3_column_int64(s, 14), 1);
    CHECK_INT(sqlite3_column_int64(s, 15), 1);
    CHECK_INT(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    fixture_close(&f);
}

/* What kg_store_usage_totals_by reported, in call order. */
typedef struct seen {
    size_t n;
    struct {
        char org_id[32];
        char id[32];
        kg_usage_totals_t t;
    } groups[16];
} seen_t;

static void collect(void *ctx, const char *org_id, const char *id, const kg_usage_totals_t *t)
{
    seen_t *s = ctx;
    CHECK(s->n < 16);
    if (s->n >= 16)
        return;
    snprintf(s->groups[s->n].org_id, sizeof(s->groups[s->n].org_id), "%s", org_id);
    snprintf(s->groups[s->n].id, sizeof(s->groups[s->n].id), "%s", id);
    s->groups[s->n].t = *t;
    s->n++;
}

static const kg_usage_totals_t *find_group(const seen_t *s, const char *org_id, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->groups[i].org_id, org_id) == 0 && strcmp(s->groups[i].id, id) == 0)
            return &s->groups[i].t;
    return NULL;
}

void test_usage_store_totals_by_key_and_team(void)
{
    fixture_t f;
    seen_t seen;
    const kg_usage_totals_t *t;
    const int64_t since = DAY0 + HOUR_MS;

    fixture_open(&f);
    kg_usage_record_t recs[] = {
        /* before `since`: counted only for all time */
        rec("old-1", since - 1, "org_a", KEY_A1, "ml", 200, 100, 100, 1000),
        rec("old-2", since - HOUR_MS, "org_a", KEY_A2, "", 503, 100, 0, 1000),
        /* from `since` on (the first exactly at it: inclusive) */
        rec("new-1", since, "org_a", KEY_A1, "ml", 200, 1, 2, 3),
        rec("new-2", since + 5, "org_a", KEY_A1, "ml", 502, 4, 0, 5),
        rec("new-3", since + 6, "org_a", KEY_A2, "", 200, 7, 8, 9),
        rec("new-4", since + 7, "org_b", KEY_B1, "ml", 200, 10, 11, 12), /* same team name, other org */
    };
    CHECK_INT(kg_store_usage_insert(f.st, recs, 6, NULL), KG_OK);

    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, since, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 3);
    CHECK((t = find_group(&seen, "org_a", KEY_A1)) != NULL);
    if (t != NULL)
        check_totals(t, 2, 1, 5, 2, 8);
    CHECK((t = find_group(&seen, "org_a", KEY_A2)) != NULL);
    if (t != NULL)
        check_totals(t, 1, 0, 7, 8, 9);
    CHECK((t = find_group(&seen, "org_b", KEY_B1)) != NULL);
    if (t != NULL)
        check_totals(t, 1, 0, 10, 11, 12);

    /* By team: teams are per org, and rows without a team form no group. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, since, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 2);
    CHECK((t = find_group(&seen, "org_a", "ml")) != NULL);
    if (t != NULL)
        check_totals(t, 2, 1, 5, 2, 8);
    CHECK((t = find_group(&seen, "org_b", "ml")) != NULL);
    if (t != NULL)
        check_totals(t, 1, 0, 10, 11, 12);
    CHECK(find_group(&seen, "org_a", "") == NULL);

    /* since_ms 0: all time. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, 0, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 3);
    CHECK((t = find_group(&seen, "org_a", KEY_A1)) != NULL);
    if (t != NULL)
        check_totals(t, 3, 1, 105, 102, 1008);
    CHECK((t = find_group(&seen, "org_a", KEY_A2)) != NULL);
    if (t != NULL)
        check_totals(t, 2, 1, 107, 8, 1009);
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, 0, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 2);
    CHECK((t = find_group(&seen, "org_a", "ml")) != NULL);
    if (t != NULL)
        check_totals(t, 3, 1, 105, 102, 1008);

    /* Nothing since the future: no calls at all. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, since + DAY_MS, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 0);
    fixture_close(&f);
}

/* Runs a series query and checks it returns exactly the expected (start, requests) pairs. */
static void check_series(kg_store_t *st, const kg_usage_filter_t *f, size_t max, const int64_t *starts,
                         const int64_t *requests, size_t n_expected, bool expect_truncated)
{
    kg_usage_bucket_t *b = NULL;
    size_t n = 99;
    bool truncated = !expect_truncated;
    CHECK_INT(kg_store_usage_series(st, f, max, &b, &n, &truncated), KG_OK);
    CHECK_INT(n, n_expected);
    CHECK_INT(truncated, expect_truncated);
    for (size_t i = 0; i < n && i < n_expected; i++) {
        CHECK_INT(b[i].start_ms, starts[i]);
        CHECK_INT(b[i].totals.requests, requests[i]);
    }
    free(b);
}

#define SERIES(st, f, max, trunc, ...)                                                                                 \
    do {                                                                                                               \
        const int64_t pairs_[] = {__VA_ARGS__};                                                                        \
        int64_t s_[sizeof(pairs_) / sizeof(pairs_[0]) / 2], r_[sizeof(s_) / sizeof(s_[0])];                            \
        for (size_t i_ = 0; i_ < sizeof(s_) / sizeof(s_[0]); i_++)                                                     \
            s_[i_] = pairs_[2 * i_], r_[i_] = pairs_[2 * i_ + 1];                                                      \
        check_series((st), (f), (max), s_, r_, sizeof(s_) / sizeof(s_[0]), (trunc));                                   \
    } while (0)

/* A series expected to hold no bucket. */
#define SERIES_NONE(st, f, max, trunc) check_series((st), (f), (max), NULL, NULL, 0, (trunc))

void test_usage_store_series_buckets(void)
{
    fixture_t f;
    kg_usage_bucket_t *b = NULL;
    size_t n = 0;
    bool truncated = false;

    fixture_open(&f);
    kg_usage_record_t recs[] = {
        rec("a-1", DAY0, "org_a", KEY_A1, "ml", 200, 1, 1, 10),                 /* exactly a bucket start */
        rec("a-2", DAY0 + MINUTE_MS - 1, "org_a", KEY_A1, "ml", 500, 2, 2, 20), /* last ms of that minute */
        rec("a-3", DAY0 + MINUTE_MS, "org_a", KEY_A2, "", 200, 3, 3, 30),       /* next minute */
        rec("a-4", DAY0 + HOUR_MS - 1, "org_a", KEY_A2, "", 200, 4, 4, 40),     /* last ms of the hour */
        rec("a-5", DAY0 + HOUR_MS, "org_a", KEY_A1, "ml", 200, 5, 5, 50),       /* next hour */
        rec("a-6", DAY0 + DAY_MS - 1, "org_a", KEY_A1, "ops", 200, 6, 6, 60),   /* last ms of the day */
        rec("a-7", DAY0 + DAY_MS, "org_a", KEY_A1, "ml", 200, 7, 7, 70),        /* next day */
        /* org_b at the same instants, with org_a's team name: never in org_a's series */
        rec("b-1", DAY0, "org_b", KEY_B1, "ml", 200, 100, 100, 1000),
        rec("b-2", DAY0 + MINUTE_MS + 1, "org_b", KEY_B1, "ml", 200, 100, 100, 1000),
        rec("b-3", DAY0 + 3 * DAY_MS, "org_b", KEY_B1, "ml", 200, 100, 100, 1000),
    };
    CHECK_INT(kg_store_usage_insert(f.st, recs, sizeof(recs) / sizeof(recs[0]), NULL), KG_OK);

    kg_usage_filter_t all = {.org_id = "org_a", .from_ms = 0, .to_ms = DAY0 + 10 * DAY_MS, .bucket_ms = MINUTE_MS};
    SERIES(f.st, &all, 100, false, DAY0, 2, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1, DAY0 + HOUR_MS, 1,
           DAY0 + DAY_MS - MINUTE_MS, 1, DAY0 + DAY_MS, 1);
    all.bucket_ms = HOUR_MS;
    SERIES(f.st, &all, 100, false, DAY0, 4, DAY0 + HOUR_MS, 1, DAY0 + DAY_MS - HOUR_MS, 1, DAY0 + DAY_MS, 1);
    all.bucket_ms = DAY_MS;
    SERIES(f.st, &all, 100, false, DAY0, 6, DAY0 + DAY_MS, 1);

    /* The sums of a bucket, not only its count. */
    CHECK_INT(kg_store_usage_series(f.st, &all, 100, &b, &n, &truncated), KG_OK);
    CHECK_INT(n, 2);
    if (n == 2)
        check_totals(&b[0].totals, 6, 1, 21, 21, 210);
    free(b);

    /* Org isolation, seen from the other side too. */
    kg_usage_filter_t other = {.org_id = "org_b", .from_ms = 0, .to_ms = INT64_MAX, .bucket_ms = DAY_MS};
    SERIES(f.st, &other, 100, false, DAY0, 2, DAY0 + 3 * DAY_MS, 1);
    other.org_id = "org_c";
    SERIES_NONE(f.st, &other, 100, false);

    /* Key and team filters, alone and together; a key of another org shows nothing. */
    kg_usage_filter_t by = {.org_id = "org_a", .from_ms = 0, .to_ms = INT64_MAX, .bucket_ms = HOUR_MS};
    by.key_id = KEY_A2;
    SERIES(f.st, &by, 100, false, DAY0, 2);
    by.key_id = KEY_B1;
    SERIES_NONE(f.st, &by, 100, false);
    by.key_id = NULL, by.team_id = "ml";
    SERIES(f.st, &by, 100, false, DAY0, 2, DAY0 + HOUR_MS, 1, DAY0 + DAY_MS, 1);
    by.team_id = "";
    SERIES(f.st, &by, 100, false, DAY0, 2);
    by.key_id = KEY_A1, by.team_id = "ops";
    SERIES(f.st, &by, 100, false, DAY0 + DAY_MS - HOUR_MS, 1);
    by.key_id = KEY_A2, by.team_id = "ml";
    SERIES_NONE(f.st, &by, 100, false);

    /* [from, to): a record at `from` is in, a record at `to` is out. */
    kg_usage_filter_t win = {
        .org_id = "org_a", .from_ms = DAY0 + MINUTE_MS, .to_ms = DAY0 + HOUR_MS, .bucket_ms = MINUTE_MS};
    SERIES(f.st, &win, 100, false, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1);
    win.from_ms = DAY0 + MINUTE_MS + 1, win.to_ms = DAY0 + HOUR_MS + 1;
    SERIES(f.st, &win, 100, false, DAY0 + HOUR_MS - MINUTE_MS, 1, DAY0 + HOUR_MS, 1);
    win.from_ms = win.to_ms = DAY0;
    SERIES_NONE(f.st, &win, 100, false);

    /* Truncation keeps the oldest buckets. */
    all.bucket_ms = MINUTE_MS;
    SERIES(f.st, &all, 2, true, DAY0, 2, DAY0 + MINUTE_MS, 1);
    SERIES(f.st, &all, 6, false, DAY0, 2, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1, DAY0 + HOUR_MS, 1,
           DAY0 + DAY_MS - MINUTE_MS, 1, DAY0 + DAY_MS, 1);
    SERIES(f.st, &all, 5, true, DAY0, 2, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1, DAY0 + HOUR_MS, 1,
           DAY0 + DAY_MS - MINUTE_MS, 1);
    SERIES_NONE(f.st, &all, 0, true);

    /* Bucket starts are a floor, also before the epoch (SQLite's % truncates toward zero). */
    kg_usage_record_t early = rec("e-1", -1, "org_e", KEY_A1, "", 200, 1, 1, 1);
    CHECK_INT(kg_store_usage_insert(f.st, &early, 1, NULL), KG_OK);
    kg_usage_filter_t neg = {.org_id = "org_e", .from_ms = INT64_MIN, .to_ms = INT64_MAX, .bucket_ms = MINUTE_MS};
    SERIES(f.st, &neg, 10, false, -MINUTE_MS, 1);

    /* A query without an org, or without a bucket width, is refused. */
    kg_usage_filter_t bad = {.org_id = NULL, .from_ms = 0, .to_ms = INT64_MAX, .bucket_ms = MINUTE_MS};
    kg_usage_bucket_t sentinel;
    b = &sentinel;
    CHECK_INT(kg_store_usage_series(f.st, &bad, 10, &b, &n, &truncated), KG_EINVALID_VALUE);
    CHECK(b == NULL);
    CHECK_INT(n, 0);
    bad.org_id = "org_a", bad.bucket_ms = 0;
    CHECK_INT(kg_store_usage_series(f.st, &bad, 10, &b, &n, &truncated), KG_EINVALID_VALUE);
    fixture_close(&f);
}

void test_usage_store_upgrades_schema_4(void)
{
    fixture_t f;
    char err[256];
    sqlite3 *raw;
    sqlite3_stmt *s;
    uint8_t v[4] = {1, 2, 3, 4}, got[4] = {0};
    kg_usage_totals_t t;

    fixture_open(&f);
    CHECK_INT(kg_store_schema_version(f.st), 5);
    CHECK_INT(kg_store_meta_put_new(f.st, "probe", v, sizeof(v)), KG_OK);
    fixture_close(&f);

    /* Make the file what keygate at schema 4 left behind: no usage table, user_version 4. */
    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw, "DROP TABLE usage; PRAGMA user_version = 4;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    f.st = kg_store_open(f.db, err, sizeof(err));
    CHECK(f.st != NULL);
    if (f.st == NULL)
        return;
    CHECK_INT(kg_store_schema_version(f.st), 5);
    CHECK_INT(kg_store_meta_get(f.st, "probe", got, sizeof(got)), KG_OK); /* older data kept */
    CHECK(memcmp(got, v, sizeof(v)) == 0);
    kg_usage_record_t r = rec("up-1", DAY0, "org_a", KEY_A1, "", 200, 1, 2, 3);
    CHECK_INT(kg_store_usage_insert(f.st, &r, 1, NULL), KG_OK);
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A1, &t), KG_OK);
    check_totals(&t, 1, 0, 1, 2, 3);
    fixture_close(&f);

    /* The file itself says 5, and the indexes the queries rely on exist. */
    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 5);
    sqlite3_finalize(s);
    CHECK_INT(sqlite3_prepare_v2(raw,
                                 "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'usage'"
                                 " AND name IN ('usage_by_key', 'usage_by_team', 'usage_by_org')",
                                 -1, &s, NULL),
              SQLITE_OK);
    CHECK_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 3);
    sqlite3_finalize(s);
    sqlite3_close(raw);
}
