/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of the usage side of src/store/ on real SQLite files: exactly-once inserts (a journal
 * replayed twice counts nothing twice, in the raw records and in the per-minute rollup every
 * read comes from, whichever way a batch is cut into rows), the totals that seed budget
 * counters, the bucketed series of GET /v1/usage (boundaries, minute granularity of the time
 * bounds, org isolation, filters, truncation), and the upgrades of schema-4 and schema-5 stores.
 */
#include <sqlite3.h>
#include <stdlib.h>

#include "../test.h"
#include "store/store.h"
#include "usage/journal.h"
#include "usage/usage_writer.h"

#define MINUTE_MS INT64_C(60000)
#define HOUR_MS INT64_C(3600000)
#define DAY_MS INT64_C(86400000)
#define DAY0 ((int64_t)19675 * DAY_MS) /* a UTC midnight (2023-11-14) */

#define KEY_A1 "pk_aaaaaaaaaaaaaaaaaaaaaaa1"
#define KEY_A2 "pk_aaaaaaaaaaaaaaaaaaaaaaa2"
#define KEY_B1 "pk_bbbbbbbbbbbbbbbbbbbbbbb1"
#define KEY_E1 "pk_eeeeeeeeeeeeeeeeeeeeeee1"

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

/* The one integer a query on the store file returns (-1 if none). */
static int64_t query_int(const char *db, const char *sql)
{
    sqlite3 *raw;
    sqlite3_stmt *s;
    int64_t n = -1;
    CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return n;
}

static int64_t count_rows(const char *db)
{
    return query_int(db, "SELECT count(*) FROM usage");
}

/* The requests the rollup holds: always the number of raw records, whatever was replayed. The
 * keys' all-time rows hold the same, key by key. */
static int64_t rollup_requests(const char *db)
{
    CHECK_INT(query_int(db, "SELECT count(*) FROM (SELECT key_id, min(org_id) AS org_id, sum(requests) AS r,"
                            " sum(errors) AS e, sum(input_tokens) AS i, sum(output_tokens) AS o,"
                            " sum(cost_micro) AS c FROM usage_minutes GROUP BY key_id) AS m"
                            " FULL JOIN usage_keys AS k USING (key_id) WHERE m.org_id IS NOT k.org_id"
                            " OR m.r IS NOT k.requests OR m.e IS NOT k.errors OR m.i IS NOT k.input_tokens"
                            " OR m.o IS NOT k.output_tokens OR m.c IS NOT k.cost_micro"),
              0);
    return query_int(db, "SELECT coalesce(sum(requests), 0) FROM usage_minutes");
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
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A1, &t), KG_OK);
    check_totals(&t, 2, 1, 11, 20, 307);

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
    /* The rollup took the three new records only: A1 went from 2 requests to 4. */
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A1, &t), KG_OK);
    check_totals(&t, 4, 2, 10 + 1 + 2 + 4, 20 + 0 + 3 + 6, 300 + 7 + 11 + 13);
    CHECK_INT(rollup_requests(f.db), 6);
    CHECK_INT(kg_store_usage_insert(f.st, second, 7, NULL), KG_OK); /* *inserted may be NULL */
    CHECK_INT(kg_store_usage_insert(f.st, second, 7, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(kg_store_usage_insert(f.st, first, 3, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(kg_store_usage_insert(f.st, NULL, 0, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(count_rows(f.db), 6);
    CHECK_INT(rollup_requests(f.db), 6); /* the replays changed nothing in the rollup either */

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
    CHECK_INT(rollup_requests(f.db), 6);
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A2, &t), KG_OK);
    check_totals(&t, 1, 0, 5, 5, 50);

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

/* The group (org_id, id) was reported, with these totals (a macro: a missing group names the caller's line). */
#define CHECK_GROUP(seen, org_id, id, requests, errors, in, out, cost)                                                 \
    do {                                                                                                               \
        const kg_usage_totals_t *found_ = find_group((seen), (org_id), (id));                                          \
        CHECK(found_ != NULL);                                                                                         \
        if (found_ != NULL)                                                                                            \
            check_totals(found_, (requests), (errors), (in), (out), (cost));                                           \
    } while (0)

void test_usage_store_totals_by_key_and_team(void)
{
    fixture_t f;
    seen_t seen;
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
    CHECK_GROUP(&seen, "org_a", KEY_A1, 2, 1, 5, 2, 8);
    CHECK_GROUP(&seen, "org_a", KEY_A2, 1, 0, 7, 8, 9);
    CHECK_GROUP(&seen, "org_b", KEY_B1, 1, 0, 10, 11, 12);

    /* By team: teams are per org, and rows without a team form no group. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, since, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 2);
    CHECK_GROUP(&seen, "org_a", "ml", 2, 1, 5, 2, 8);
    CHECK_GROUP(&seen, "org_b", "ml", 1, 0, 10, 11, 12);
    CHECK(find_group(&seen, "org_a", "") == NULL);

    /* since_ms 0: all time. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, 0, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 3);
    CHECK_GROUP(&seen, "org_a", KEY_A1, 3, 1, 105, 102, 1008);
    CHECK_GROUP(&seen, "org_a", KEY_A2, 2, 1, 107, 8, 1009);
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, 0, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 2);
    CHECK_GROUP(&seen, "org_a", "ml", 3, 1, 105, 102, 1008);

    /* since_ms has minute granularity: it is rounded down to the start of its minute, so a
     * `since` 30 s into the minute still counts every record of that minute (new-1 … new-4, all
     * in its first 7 ms), and one at the next minute counts none of them. Budget periods start
     * at UTC midnights, which are minute starts: for them this is exact. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, since + 30000, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 3);
    CHECK_GROUP(&seen, "org_a", KEY_A1, 2, 1, 5, 2, 8);
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, since + MINUTE_MS - 1, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 2);
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, since + MINUTE_MS, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 0);
    /* old-1, at since - 1, is in the minute before since's: never counted from since on. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, since, collect, &seen), KG_OK);
    CHECK_GROUP(&seen, "org_a", "ml", 2, 1, 5, 2, 8);

    /* Nothing since the future: no calls at all. */
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, false, since + DAY_MS, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 0);
    fixture_close(&f);
}

/* A run of one key's records (the usage writer's common case: it tries the group of the record
 * before first) is still split where the team, the org or the minute changes. */
void test_usage_store_rollup_splits_a_run_of_one_key(void)
{
    fixture_t f;
    seen_t seen;

    fixture_open(&f);
    kg_usage_record_t recs[] = {
        rec("run-1", DAY0 + 1, "org_a", KEY_A1, "ml", 200, 1, 1, 1),
        rec("run-2", DAY0 + 2, "org_a", KEY_A1, "ml", 200, 1, 1, 1),
        rec("run-3", DAY0 + 3, "org_a", KEY_A1, "ops", 200, 1, 1, 1),         /* team changed */
        rec("run-4", DAY0 + 4, "org_a", KEY_A1, "ml", 500, 1, 1, 1),          /* and back */
        rec("run-5", DAY0 + 5, "org_a", KEY_A1, "", 200, 1, 1, 1),            /* no team */
        rec("run-6", DAY0 + 6, "org_a", KEY_A1, "ops", 200, 1, 1, 1),         /* after another group */
        rec("run-7", DAY0 + 7, "org_b", KEY_A1, "ops", 200, 1, 1, 1),         /* org changed */
        rec("run-8", DAY0 + MINUTE_MS, "org_b", KEY_A1, "ops", 200, 1, 1, 1), /* next minute */
        rec("run-9", DAY0 + MINUTE_MS + 1, "org_b", KEY_A1, "ops", 200, 1, 1, 1),
    };
    CHECK_INT(kg_store_usage_insert_new(f.st, recs, 9, NULL), KG_OK);
    /* minute 0: org_a ml, ops, ""; org_b ops. minute 1: org_b ops. */
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_minutes"), 5);
    CHECK_INT(query_int(f.db, "SELECT requests FROM usage_minutes WHERE org_id = 'org_a' AND team_id = 'ml'"), 3);
    CHECK_INT(query_int(f.db, "SELECT errors FROM usage_minutes WHERE org_id = 'org_a' AND team_id = 'ml'"), 1);
    CHECK_INT(query_int(f.db, "SELECT requests FROM usage_minutes WHERE org_id = 'org_a' AND team_id = 'ops'"), 2);
    CHECK_INT(query_int(f.db, "SELECT requests FROM usage_minutes WHERE org_id = 'org_a' AND team_id = ''"), 1);
    CHECK_INT(query_int(f.db, "SELECT 10 * (SELECT requests FROM usage_minutes WHERE org_id = 'org_b'"
                              " ORDER BY minute_ms LIMIT 1) + (SELECT requests FROM usage_minutes"
                              " WHERE org_id = 'org_b' ORDER BY minute_ms DESC LIMIT 1)"),
              12); /* org_b: 1 in the first minute, 2 in the next */

    memset(&seen, 0, sizeof(seen));
    CHECK_INT(kg_store_usage_totals_by(f.st, true, DAY0, collect, &seen), KG_OK);
    CHECK_INT(seen.n, 3);
    CHECK_GROUP(&seen, "org_a", "ml", 3, 1, 3, 3, 3);
    CHECK_GROUP(&seen, "org_a", "ops", 2, 0, 2, 2, 2);
    CHECK_GROUP(&seen, "org_b", "ops", 3, 0, 3, 3, 3);
    fixture_close(&f);
}

/* A key's all-time totals (key listings) add up every group of it, also when one statement of
 * 16 groups holds two of the same key (its two minutes). */
void test_usage_store_key_totals_add_up_across_groups(void)
{
    enum { KEYS = 20 };
    kg_usage_record_t recs[2 * KEYS];
    kg_usage_totals_t t;
    fixture_t f;
    char keys[KEYS][32];

    fixture_open(&f);
    for (int k = 0; k < KEYS; k++) {
        snprintf(keys[k], sizeof(keys[k]), "pk_keytotals%015d", k);
        for (int m = 0; m < 2; m++) {
            char id[32];
            snprintf(id, sizeof(id), "kt-%02d-%d", k, m);
            /* key k's two minutes one after the other: groups (k, 0), (k, 1), (k + 1, 0), ... */
            recs[2 * k + m] = rec(id, DAY0 + m * MINUTE_MS + k, "org_a", keys[k], "ml", m == 1 ? 500 : 200, k, 1, 10);
        }
    }
    CHECK_INT(kg_store_usage_insert_new(f.st, recs, 2 * KEYS, NULL), KG_OK);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_minutes"), 2 * KEYS);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_keys"), KEYS);
    for (int k = 0; k < KEYS; k++) {
        CHECK_INT(kg_store_usage_key_totals(f.st, keys[k], &t), KG_OK);
        check_totals(&t, 2, 1, 2 * k, 2, 20);
    }
    /* The same again (a later batch): added to the rows there are. */
    for (int i = 0; i < 2 * KEYS; i++)
        recs[i].request_id[0] = 'K';
    CHECK_INT(kg_store_usage_insert_new(f.st, recs, 2 * KEYS, NULL), KG_OK);
    CHECK_INT(kg_store_usage_key_totals(f.st, keys[7], &t), KG_OK);
    check_totals(&t, 4, 2, 28, 4, 40);
    /* A key with no usage: zeros, not an error. */
    CHECK_INT(kg_store_usage_key_totals(f.st, "pk_nobody", &t), KG_OK);
    check_totals(&t, 0, 0, 0, 0, 0);
    CHECK_INT(rollup_requests(f.db), 4 * KEYS);
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
    /* The bounds have minute granularity: each is rounded down to the start of the minute that
     * contains it (the API gives whole seconds). So a `from` later in a-3's minute still takes
     * a-3 (at that minute's start), and a `to` later in a-5's minute still leaves a-5 out. */
    win.from_ms = DAY0 + MINUTE_MS + 1, win.to_ms = DAY0 + HOUR_MS + 1;
    SERIES(f.st, &win, 100, false, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1);
    win.from_ms = DAY0 + 2 * MINUTE_MS - 1000, win.to_ms = DAY0 + HOUR_MS + MINUTE_MS - 1000;
    SERIES(f.st, &win, 100, false, DAY0 + MINUTE_MS, 1, DAY0 + HOUR_MS - MINUTE_MS, 1);
    /* From the next minute on, a-3 is out; to the next minute's start, a-5 is in. */
    win.from_ms = DAY0 + 2 * MINUTE_MS, win.to_ms = DAY0 + HOUR_MS + MINUTE_MS;
    SERIES(f.st, &win, 100, false, DAY0 + HOUR_MS - MINUTE_MS, 1, DAY0 + HOUR_MS, 1);
    /* from < to within one minute: both round to its start, an empty window (a-1 at DAY0 not in). */
    win.from_ms = DAY0 + 1000, win.to_ms = DAY0 + 30000;
    SERIES_NONE(f.st, &win, 100, false);
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

    /* Minutes and bucket starts are a floor, also before the epoch (C's and SQLite's % truncate
     * toward zero); an instant whose minute would start before INT64_MIN is still stored and
     * counted (its minute is clamped). */
    kg_usage_record_t early[] = {
        rec("e-1", -1, "org_e", KEY_E1, "", 200, 1, 1, 1),
        rec("e-2", -MINUTE_MS, "org_e", KEY_E1, "", 200, 1, 1, 1),
        rec("e-3", -MINUTE_MS - 1, "org_e", KEY_E1, "", 200, 1, 1, 1),
        rec("e-4", INT64_MIN, "org_e", KEY_E1, "", 200, 1, 1, 1),
    };
    CHECK_INT(kg_store_usage_insert(f.st, early, 4, NULL), KG_OK);
    kg_usage_filter_t neg = {.org_id = "org_e", .from_ms = -DAY_MS, .to_ms = INT64_MAX, .bucket_ms = MINUTE_MS};
    SERIES(f.st, &neg, 10, false, -2 * MINUTE_MS, 1, -MINUTE_MS, 2);
    neg.bucket_ms = HOUR_MS;
    SERIES(f.st, &neg, 10, false, -HOUR_MS, 3);
    kg_usage_totals_t t;
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_E1, &t), KG_OK);
    check_totals(&t, 4, 0, 4, 4, 4);

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

/* The key, team and org of pool record i: keys A1 and A2 in org_a, B1 in org_b. */
static kg_usage_record_t pool_rec(int i)
{
    static const char *const keys[] = {KEY_A1, KEY_A2, KEY_B1};
    char id[32];
    snprintf(id, sizeof(id), "pool-%04d", i);
    return rec(id, DAY0 + (i % 5) * MINUTE_MS + i, i % 3 == 2 ? "org_b" : "org_a", keys[i % 3], i % 4 == 0 ? "" : "ml",
               i % 7 == 0 ? 500 : 200, i, 2 * i, 3 * i);
}

void test_usage_store_chunks_are_exactly_once(void)
{
    enum { POOL = 1400 };
    static kg_usage_record_t pool[POOL], batch[700];
    fixture_t f;
    size_t inserted, n;

    fixture_open(&f);
    for (int i = 0; i < POOL; i++)
        pool[i] = pool_rec(i);

    /* kg_store_usage_insert stores up to 512 records per usage_batches row: the cuts below put
     * replayed and repeated records on both sides of a row's end, and the new ones of a batch
     * in two rows. */
    CHECK_INT(kg_store_usage_insert(f.st, pool, 600, &inserted), KG_OK); /* 512 + 88 */
    CHECK_INT(inserted, 600);
    /* 100 replayed, 500 new (the row ends among them), a repeat of one of those, 10 replayed. */
    n = 0;
    for (int i = 500; i < 1100; i++)
        batch[n++] = pool[i];
    batch[n++] = pool[900];
    for (int i = 0; i < 10; i++)
        batch[n++] = pool[i];
    CHECK_INT(n, 611);
    CHECK_INT(kg_store_usage_insert(f.st, batch, n, &inserted), KG_OK);
    CHECK_INT(inserted, 500);
    /* The rest, new, and a repeat of one of them as the batch's last record. */
    n = 0;
    for (int i = 1100; i < POOL; i++)
        batch[n++] = pool[i];
    batch[n++] = pool[1200];
    CHECK_INT(kg_store_usage_insert(f.st, batch, n, &inserted), KG_OK);
    CHECK_INT(inserted, POOL - 1100);
    /* Each call's new records went into rows of at most 512. */
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_batches"), 2 + 2 + 1);
    CHECK_INT(query_int(f.db, "SELECT max(json_array_length(records)) FROM usage_batches"), 512);

    /* Then everything again, whole and in pieces: nothing is added anywhere. */
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            CHECK_INT(kg_store_usage_insert(f.st, pool, 700, &inserted), KG_OK);
            CHECK_INT(inserted, 0);
            CHECK_INT(kg_store_usage_insert(f.st, pool + 700, POOL - 700, &inserted), KG_OK);
            CHECK_INT(inserted, 0);
            CHECK_INT(kg_store_usage_insert(f.st, pool + 7, 9, &inserted), KG_OK);
            CHECK_INT(inserted, 0);
        }
        CHECK_INT(count_rows(f.db), POOL);
        CHECK_INT(rollup_requests(f.db), POOL);

        /* The rollup holds exactly the pool: per key (all time and per minute) and per team. */
        static const char *const keys[] = {KEY_A1, KEY_A2, KEY_B1};
        for (int k = 0; k < 3; k++) {
            kg_usage_totals_t want = {0}, t;
            for (int i = k; i < POOL; i += 3)
                want.requests++, want.errors += i % 7 == 0, want.input_tokens += i, want.output_tokens += 2 * i,
                    want.cost_micro += 3 * i;
            CHECK_INT(kg_store_usage_key_totals(f.st, keys[k], &t), KG_OK);
            check_totals(&t, want.requests, want.errors, want.input_tokens, want.output_tokens, want.cost_micro);

            kg_usage_filter_t by = {.org_id = k == 2 ? "org_b" : "org_a",
                                    .key_id = keys[k],
                                    .from_ms = DAY0,
                                    .to_ms = DAY0 + HOUR_MS,
                                    .bucket_ms = MINUTE_MS};
            kg_usage_bucket_t *b = NULL;
            bool truncated = true;
            CHECK_INT(kg_store_usage_series(f.st, &by, 100, &b, &n, &truncated), KG_OK);
            CHECK_INT(n, 5);
            CHECK(!truncated);
            for (size_t m = 0; m < n && m < 5; m++) {
                kg_usage_totals_t w = {0};
                for (int i = k; i < POOL; i += 3)
                    if (i % 5 == (int)m)
                        w.requests++, w.errors += i % 7 == 0, w.input_tokens += i, w.output_tokens += 2 * i,
                            w.cost_micro += 3 * i;
                CHECK_INT(b[m].start_ms, DAY0 + (int64_t)m * MINUTE_MS);
                check_totals(&b[m].totals, w.requests, w.errors, w.input_tokens, w.output_tokens, w.cost_micro);
            }
            free(b);
        }
        seen_t seen;
        const kg_usage_totals_t *t;
        memset(&seen, 0, sizeof(seen));
        CHECK_INT(kg_store_usage_totals_by(f.st, true, DAY0, collect, &seen), KG_OK);
        CHECK_INT(seen.n, 2);
        int64_t want_a = 0, want_b = 0;
        for (int i = 0; i < POOL; i++)
            if (i % 4 != 0)
                *(i % 3 == 2 ? &want_b : &want_a) += 1;
        CHECK((t = find_group(&seen, "org_a", "ml")) != NULL);
        if (t != NULL)
            CHECK_INT(t->requests, want_a);
        CHECK((t = find_group(&seen, "org_b", "ml")) != NULL);
        if (t != NULL)
            CHECK_INT(t->requests, want_b);
    }
    fixture_close(&f);
}

/* Every byte of every field reaches the `usage` view as it was recorded, whatever it holds:
 * quotes, backslashes, control characters and UTF-8 in the names a client may choose. */
void test_usage_store_batches_keep_every_byte(void)
{
    /* The encoder copies clean eight-byte words whole: escapes before, at and after a word's
     * edge (offsets 7, 8, 15, 16), a clean name of whole words and a tail. */
    static const char *const models[] = {
        "say \"hi\"",
        "back\\slash",
        "tab\tnew\nline\x01\x1f",
        "\xe6\xa8\xa1\xe5\x9e\x8b-\xc3\xa9",
        "[1,2]",
        "",
        "0123456\"89abcdef",
        "cleanwrd\"",
        "fifteen-chars!!\\",
        "sixteen-chars!!!\x1f",
        "gpt-4o-mini-2024-07-18",
    };
    enum { N = sizeof(models) / sizeof(models[0]) };
    kg_usage_record_t recs[N];
    fixture_t f;
    size_t inserted;
    sqlite3 *raw;
    sqlite3_stmt *s;

    fixture_open(&f);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bytes-%d", i);
        recs[i] =
            rec(id, -DAY_MS + i, "org_a", KEY_A1, i % 2 ? "te\"am" : "", 200 + i, INT64_MAX - i, -i, INT64_MIN + i);
        snprintf(recs[i].model, sizeof(recs[i].model), "%s", models[i]);
        snprintf(recs[i].upstream_model, sizeof(recs[i].upstream_model), "%s!", models[N - 1 - i]);
    }
    CHECK_INT(kg_store_usage_insert_new(f.st, recs, N, &inserted), KG_OK);
    CHECK_INT(inserted, N);

    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(raw,
                                 "SELECT request_id, at_ms, team_id, model, upstream_model, status, input_tokens,"
                                 " output_tokens, cost_micro FROM usage ORDER BY at_ms",
                                 -1, &s, NULL),
              SQLITE_OK);
    for (int i = 0; i < N; i++) {
        CHECK_INT(sqlite3_step(s), SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(s, 0), recs[i].request_id);
        CHECK_INT(sqlite3_column_int64(s, 1), -DAY_MS + i);
        CHECK_STR((const char *)sqlite3_column_text(s, 2), recs[i].team_id);
        CHECK_STR((const char *)sqlite3_column_text(s, 3), models[i]);
        CHECK_STR((const char *)sqlite3_column_text(s, 4), recs[i].upstream_model);
        CHECK_INT(sqlite3_column_int64(s, 5), 200 + i);
        CHECK_INT(sqlite3_column_int64(s, 6), INT64_MAX - i);
        CHECK_INT(sqlite3_column_int64(s, 7), -i);
        CHECK_INT(sqlite3_column_int64(s, 8), INT64_MIN + i);
    }
    CHECK_INT(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_batches"), 1); /* one call, one row */

    /* Replayed, the same records are found in their batch and add nothing; a record that only
     * shares a request id (a restart whose ids began again) is another record. */
    CHECK_INT(kg_store_usage_insert(f.st, recs, N, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    CHECK_INT(count_rows(f.db), N);
    kg_usage_record_t pair[] = {recs[1], recs[1]};
    pair[0].at_ms = recs[2].at_ms;
    CHECK_INT(kg_store_usage_insert(f.st, pair, 2, &inserted), KG_OK);
    CHECK_INT(inserted, 1);
    CHECK_INT(count_rows(f.db), N + 1);
    fixture_close(&f);
}

/*
 * The crash that exactly-once is for: a process stored a batch (committed) and was killed
 * before it released the batch's journal records. The next process adopts the journal, and
 * its drain, replaying, stores only what the store lacks; later records, read for the first
 * time, are stored without a lookup.
 */
void test_usage_store_replay_after_commit_before_release(void)
{
    enum { JOURNALED = 50, STORED = 30, LATER = 7 };
    kg_usage_record_t read[JOURNALED + LATER];
    fixture_t f;
    char jdir[64], err[256];
    size_t inserted, n;

    fixture_open(&f);
    kg_test_tmpdir(jdir, sizeof(jdir));
    kg_journal_t *j = kg_journal_open(jdir, err, sizeof(err));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    for (int i = 0; i < JOURNALED; i++) {
        kg_usage_record_t r = pool_rec(i);
        CHECK(kg_journal_append(w, &r));
    }
    CHECK(!kg_journal_replaying(j)); /* nothing was left by an earlier process */
    CHECK_INT(kg_journal_read(j, read, JOURNALED), JOURNALED);
    CHECK_INT(kg_store_usage_insert_new(f.st, read, STORED, &inserted), KG_OK);
    CHECK_INT(inserted, STORED);
    kg_journal_writer_free(w);
    kg_journal_close(j); /* killed here: nothing released */

    j = kg_journal_open(jdir, err, sizeof(err));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    CHECK(kg_journal_replaying(j));
    CHECK_INT(kg_usage_drain(j, f.st, &n), KG_OK);
    CHECK_INT(n, JOURNALED);
    CHECK(!kg_journal_replaying(j));
    CHECK_INT(count_rows(f.db), JOURNALED);
    CHECK_INT(rollup_requests(f.db), JOURNALED);
    CHECK_INT(query_int(f.db, "SELECT count(DISTINCT request_id) FROM usage"), JOURNALED);

    w = kg_journal_writer_new(j);
    for (int i = JOURNALED; i < JOURNALED + LATER; i++) {
        kg_usage_record_t r = pool_rec(i);
        CHECK(kg_journal_append(w, &r));
    }
    CHECK(!kg_journal_replaying(j));
    CHECK_INT(kg_usage_drain(j, f.st, &n), KG_OK);
    CHECK_INT(n, LATER);
    CHECK_INT(count_rows(f.db), JOURNALED + LATER);
    CHECK_INT(rollup_requests(f.db), JOURNALED + LATER);
    kg_journal_writer_free(w);
    kg_journal_close(j);
    fixture_close(&f);
}

void test_usage_store_upgrades_schema_4(void)
{
    fixture_t f;
    char err[256];
    uint8_t v[4] = {1, 2, 3, 4}, got[4] = {0};
    kg_usage_totals_t t;
    sqlite3 *raw;

    fixture_open(&f);
    CHECK_INT(kg_store_schema_version(f.st), 8);
    CHECK_INT(kg_store_meta_put_new(f.st, "probe", v, sizeof(v)), KG_OK);
    fixture_close(&f);

    /* Make the file what keygate at schema 4 left behind: no usage tables, user_version 4. */
    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw,
                           "DROP VIEW usage; DROP TABLE usage_batches; DROP TABLE usage_minutes; DROP TABLE usage_keys;"
                           " PRAGMA user_version = 4;",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(raw);

    f.st = kg_store_open(f.db, err, sizeof(err));
    CHECK(f.st != NULL);
    if (f.st == NULL)
        return;
    CHECK_INT(kg_store_schema_version(f.st), 8);                          /* through 5, 6, 7 and 8 */
    CHECK_INT(kg_store_meta_get(f.st, "probe", got, sizeof(got)), KG_OK); /* older data kept */
    CHECK(memcmp(got, v, sizeof(v)) == 0);
    kg_usage_record_t r = rec("up-1", DAY0, "org_a", KEY_A1, "", 200, 1, 2, 3);
    CHECK_INT(kg_store_usage_insert(f.st, &r, 1, NULL), KG_OK);
    CHECK_INT(kg_store_usage_key_totals(f.st, KEY_A1, &t), KG_OK);
    check_totals(&t, 1, 0, 1, 2, 3);
    fixture_close(&f);

    /* The file itself says 8 and has the version-8 layout: records a batch to a row of
     * usage_batches, `usage` a view of them, the rollup ordered by minute first (a batch's
     * upserts meet on a few pages) with its three indexes, a row of all-time sums per key. */
    CHECK_INT(query_int(f.db, "PRAGMA user_version"), 8);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = 'usage'"), 1);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage_batches"), 1);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM usage WHERE request_id = 'up-1' AND status = 200"), 1);
    CHECK_INT(query_int(f.db, "SELECT pk FROM pragma_table_info('usage_minutes') WHERE name = 'minute_ms'"), 1);
    CHECK_INT(query_int(f.db, "SELECT pk FROM pragma_table_info('usage_minutes') WHERE name = 'key_id'"), 2);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'usage_minutes'"
                              " AND name IN ('usage_minutes_by_key', 'usage_minutes_by_org', 'usage_minutes_by_team')"),
              3);
    CHECK_INT(query_int(f.db, "SELECT requests FROM usage_keys WHERE key_id = '" KEY_A1 "'"), 1);
    CHECK_INT(query_int(f.db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'usage%'"), 8);
}

/* Migration 5 as it shipped (migrate.c never edits a shipped entry): what a version-5 store has. */
static const char schema_5_usage[] =
    "CREATE TABLE usage ("
    "  request_id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, key_id TEXT NOT NULL, org_id TEXT NOT NULL,"
    "  team_id TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, upstream_model TEXT NOT NULL,"
    "  route INTEGER NOT NULL, status INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL, latency_us INTEGER NOT NULL,"
    "  upstream_latency_us INTEGER NOT NULL, stream INTEGER NOT NULL, estimated INTEGER NOT NULL);"
    "CREATE INDEX usage_by_key ON usage(key_id, at_ms);"
    "CREATE INDEX usage_by_team ON usage(org_id, team_id, at_ms);"
    "CREATE INDEX usage_by_org ON usage(org_id, at_ms);";

/* A row as keygate at schema 5 wrote it. */
static void insert_v5(sqlite3 *raw, const kg_usage_record_t *r)
{
    sqlite3_stmt *s;
    CHECK_INT(sqlite3_prepare_v2(raw,
                                 "INSERT INTO usage (request_id, at_ms, key_id, org_id, team_id, model, upstream_model,"
                                 " route, status, input_tokens, output_tokens, cost_micro, latency_us,"
                                 " upstream_latency_us, stream, estimated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                                 " ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                                 -1, &s, NULL),
              SQLITE_OK);
    sqlite3_bind_text(s, 1, r->request_id, -1, SQLITE_STATIC), sqlite3_bind_int64(s, 2, r->at_ms);
    sqlite3_bind_text(s, 3, r->key_id, -1, SQLITE_STATIC), sqlite3_bind_text(s, 4, r->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, r->team_id, -1, SQLITE_STATIC), sqlite3_bind_text(s, 6, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, r->upstream_model, -1, SQLITE_STATIC), sqlite3_bind_int(s, 8, r->route);
    sqlite3_bind_int(s, 9, r->status), sqlite3_bind_int64(s, 10, r->input_tokens);
    sqlite3_bind_int64(s, 11, r->output_tokens), sqlite3_bind_int64(s, 12, r->cost_micro);
    sqlite3_bind_int64(s, 13, r->latency_us), sqlite3_bind_int64(s, 14, r->upstream_latency_us);
    sqlite3_bind_int(s, 15, r->stream), sqlite3_bind_int(s, 16, r->estimated);
    CHECK_INT(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

static bool same_totals(const kg_usage_totals_t *a, const kg_usage_totals_t *b)
{
    return a->requests == b->requests && a->errors == b->errors && a->input_tokens == b->input_tokens &&
           a->output_tokens == b->output_tokens && a->cost_micro == b->cost_micro;
}

/* Every read of two stores gives the same answers: key totals, totals by key and by team from
 * several instants, and series for every filter shape, bucket and a few windows. */
static void check_same_reads(kg_store_t *a, kg_store_t *b)
{
    static const char *const keys[] = {KEY_A1, KEY_A2, KEY_B1, "pk_nobody"};
    static const char *const orgs[] = {"org_a", "org_b"};
    static const char *const key_filters[] = {NULL, KEY_A1, KEY_A2, KEY_B1};
    static const char *const team_filters[] = {NULL, "", "ml", "ops"};
    static const int64_t buckets[] = {MINUTE_MS, HOUR_MS, DAY_MS};
    static const int64_t sinces[] = {0, -1, DAY0, DAY0 + 1, DAY0 + HOUR_MS, DAY0 + DAY_MS, DAY0 + 40 * DAY_MS};
    static const int64_t windows[][2] = {
        {-DAY_MS, DAY0 + 40 * DAY_MS}, {DAY0, DAY0 + HOUR_MS}, {DAY0 + MINUTE_MS, DAY0 + DAY_MS}, {0, INT64_MAX}};
    kg_usage_totals_t ta, tb;

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        CHECK_INT(kg_store_usage_key_totals(a, keys[k], &ta), KG_OK);
        CHECK_INT(kg_store_usage_key_totals(b, keys[k], &tb), KG_OK);
        CHECK(same_totals(&ta, &tb));
    }
    for (int by_team = 0; by_team <= 1; by_team++)
        for (size_t i = 0; i < sizeof(sinces) / sizeof(sinces[0]); i++) {
            seen_t sa, sb;
            memset(&sa, 0, sizeof(sa)), memset(&sb, 0, sizeof(sb));
            CHECK_INT(kg_store_usage_totals_by(a, by_team, sinces[i], collect, &sa), KG_OK);
            CHECK_INT(kg_store_usage_totals_by(b, by_team, sinces[i], collect, &sb), KG_OK);
            CHECK_INT(sa.n, sb.n);
            for (size_t g = 0; g < sa.n; g++) {
                const kg_usage_totals_t *other = find_group(&sb, sa.groups[g].org_id, sa.groups[g].id);
                CHECK(other != NULL && same_totals(&sa.groups[g].t, other));
            }
        }
    for (size_t o = 0; o < 2; o++)
        for (size_t k = 0; k < 4; k++)
            for (size_t tm = 0; tm < 4; tm++)
                for (size_t bk = 0; bk < 3; bk++)
                    for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
                        kg_usage_filter_t f = {.org_id = orgs[o],
                                               .key_id = key_filters[k],
                                               .team_id = team_filters[tm],
                                               .from_ms = windows[w][0],
                                               .to_ms = windows[w][1],
                                               .bucket_ms = buckets[bk]};
                        kg_usage_bucket_t *ba = NULL, *bb = NULL;
                        size_t na = 0, nb = 0;
                        bool xa = false, xb = false;
                        CHECK_INT(kg_store_usage_series(a, &f, 100, &ba, &na, &xa), KG_OK);
                        CHECK_INT(kg_store_usage_series(b, &f, 100, &bb, &nb, &xb), KG_OK);
                        CHECK_INT(na, nb);
                        CHECK_INT(xa, xb);
                        for (size_t i = 0; i < na && i < nb; i++) {
                            CHECK_INT(ba[i].start_ms, bb[i].start_ms);
                            CHECK(same_totals(&ba[i].totals, &bb[i].totals));
                        }
                        free(ba), free(bb);
                    }
}

void test_usage_store_upgrades_schema_5(void)
{
    static const int64_t instants[] = {-MINUTE_MS - 1,
                                       -1,
                                       DAY0 - 1,
                                       DAY0,
                                       DAY0 + MINUTE_MS - 1,
                                       DAY0 + MINUTE_MS,
                                       DAY0 + HOUR_MS - 1,
                                       DAY0 + HOUR_MS,
                                       DAY0 + DAY_MS - 1,
                                       DAY0 + DAY_MS,
                                       DAY0 + 31 * DAY_MS + 5};
    enum { N_INSTANTS = sizeof(instants) / sizeof(instants[0]), N = 4 * N_INSTANTS };
    static const char *const teams[] = {"ml", "", "ops", "ml"};
    kg_usage_record_t recs[N];
    fixture_t old, ref;
    char err[256];
    size_t inserted;
    sqlite3 *raw;

    /* A varied history: 3 keys in 2 orgs, a key whose team changed within a minute (ml, then
     * ops), every kind of minute, hour and day boundary, errors and not. */
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "v5-%03d", i);
        int key = i % 3;
        recs[i] = rec(id, instants[i % N_INSTANTS], key == 2 ? "org_b" : "org_a",
                      key == 0   ? KEY_A1
                      : key == 1 ? KEY_A2
                                 : KEY_B1,
                      teams[(i / 3) % 4],
                      i % 5 == 0   ? 429
                      : i % 5 == 1 ? 399
                                   : 200,
                      10 + i, 20 + i, 7 * i + 1);
        recs[i].latency_us = 1000 + i, recs[i].stream = i % 2, recs[i].estimated = i % 3 == 0;
    }

    /* The store at version 5, with these rows written the version-5 way. */
    fixture_open(&old);
    fixture_close(&old);
    CHECK_INT(sqlite3_open(old.db, &raw), SQLITE_OK);
    CHECK_INT(
        sqlite3_exec(raw, "DROP VIEW usage; DROP TABLE usage_batches; DROP TABLE usage_minutes; DROP TABLE usage_keys;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw, schema_5_usage, NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < N; i++)
        insert_v5(raw, &recs[i]);
    CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 5; COMMIT;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    CHECK_INT(query_int(old.db, "PRAGMA user_version"), 5);

    /* The same records stored the version-6 way, in a fresh store. */
    fixture_open(&ref);
    CHECK_INT(kg_store_usage_insert(ref.st, recs, N, &inserted), KG_OK);
    CHECK_INT(inserted, N);

    old.st = kg_store_open(old.db, err, sizeof(err));
    CHECK(old.st != NULL);
    if (old.st == NULL) {
        fprintf(stderr, "    %s\n", err);
        fixture_close(&ref);
        return;
    }
    CHECK_INT(kg_store_schema_version(old.st), 8);
    CHECK_INT(count_rows(old.db), N); /* the raw records moved over, every column */
    CHECK_INT(query_int(old.db, "SELECT count(*) FROM usage_batches"), (N + 511) / 512);
    CHECK_INT(rollup_requests(old.db), N);
    CHECK_INT(query_int(old.db,
                        "SELECT latency_us + 1000000 * stream + 10000000 * estimated + 100000000 * route"
                        " FROM usage WHERE request_id = 'v5-003' AND upstream_model = 'gpt-4o-mini-2024-07-18'"),
              1003 + 1000000 + 10000000 + 100000000 * KG_USAGE_CHAT);
    CHECK_INT(query_int(old.db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'usage_by_%'"), 0);
    /* The migrated rollup is the one the version-6 insert builds, row for row... */
    CHECK_INT(query_int(old.db, "SELECT count(*) FROM usage_minutes"),
              query_int(ref.db, "SELECT count(*) FROM usage_minutes"));
    /* ...and every read gives the same answer. */
    check_same_reads(old.st, ref.st);
    kg_usage_totals_t t;
    CHECK_INT(kg_store_usage_key_totals(old.st, KEY_A1, &t), KG_OK);
    CHECK_INT(t.requests, (N + 2) / 3);

    /* Exactly-once across the upgrade: the journal replayed into the migrated store adds
     * nothing; a new record is added to both the records and the rollup. */
    CHECK_INT(kg_store_usage_insert(old.st, recs, N, &inserted), KG_OK);
    CHECK_INT(inserted, 0);
    kg_usage_record_t later = rec("v6-000", DAY0 + 5, "org_a", KEY_A1, "ml", 200, 1, 1, 1);
    kg_usage_record_t both[] = {recs[7], later};
    CHECK_INT(kg_store_usage_insert(old.st, both, 2, &inserted), KG_OK);
    CHECK_INT(inserted, 1);
    CHECK_INT(kg_store_usage_insert(ref.st, &later, 1, &inserted), KG_OK);
    CHECK_INT(inserted, 1);
    check_same_reads(old.st, ref.st);
    CHECK_INT(count_rows(old.db), N + 1);
    CHECK_INT(rollup_requests(old.db), N + 1);
    fixture_close(&old);
    fixture_close(&ref);
}
