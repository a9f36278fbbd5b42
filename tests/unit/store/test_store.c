/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/store/ and src/daemon/feed.c together, on real SQLite files: migrations, the
 * change feed between two connections, rotation grace as the index sees it, last-use batches.
 */
#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "../test.h"
#include "admin/admin.h"
#include "sync/feed.h"

typedef struct fixture {
    char dir[64];
    char db[128];
    kg_config_t cfg;
    kg_store_t *st;
    kg_admin_t admin;
    kg_actor_t actor;
} fixture_t;

static void fixture_open(fixture_t *f)
{
    char err[256], root[KG_KEY_SECRET_MAX];
    kg_test_tmpdir(f->dir, sizeof(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/k.db", f->dir);
    kg_config_init(&f->cfg);
    f->st = kg_store_open(f->db, err, sizeof(err));
    CHECK(f->st != NULL);
    f->admin = (kg_admin_t){.store = f->st, .cfg = &f->cfg};
    CHECK_INT(kg_admin_bootstrap(&f->admin, 1000, root), KG_OK);
    CHECK(strncmp(root, "kg_admin_", 9) == 0);
    f->actor = (kg_actor_t){.id = "cli:local", .org_id = KG_DEFAULT_ORG_ID, .is_root = true};
}

static void fixture_close(fixture_t *f)
{
    kg_store_close(f->st);
    kg_config_dispose(&f->cfg);
}

/* One admin call; returns the parsed reply (caller decrefs) and checks the status. */
static json_t *call(fixture_t *f, kg_store_t *st, const char *method, const char *path, const char *body, int64_t now,
                    int expect_status)
{
    kg_admin_t admin = {.store = st, .cfg = &f->cfg};
    kg_admin_request_t req = {.method = method,
                              .path = path,
                              .body = body,
                              .body_len = body != NULL ? strlen(body) : 0,
                              .actor = &f->actor,
                              .now = now};
    kg_admin_response_t res = {0};
    kg_admin_handle(&admin, &req, &res);
    if (res.status != expect_status)
        fprintf(stderr, "    %s %s -> %d %s\n", method, path, res.status, res.body);
    CHECK_INT(res.status, expect_status);
    json_t *j = json_loads(res.body, 0, NULL);
    free(res.body);
    return j;
}

static void hash_of(json_t *reply, uint8_t out[KG_KEY_HASH_BYTES])
{
    const char *s = json_string_value(json_object_get(reply, "key"));
    CHECK(s != NULL);
    CHECK(kg_key_hash(s != NULL ? s : "", s != NULL ? strlen(s) : 0, out));
}

void test_store_migrations_and_wal(void)
{
    fixture_t f;
    char err[256];
    struct stat sb;
    fixture_open(&f);
    CHECK_INT(kg_store_schema_version(f.st), 8);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f.db);
    CHECK(stat(wal, &sb) == 0); /* WAL mode */
    kg_store_t *again = kg_store_open(f.db, err, sizeof(err));
    CHECK(again != NULL);
    CHECK_INT(kg_store_schema_version(again), 8);
    kg_store_close(again);

    /* A store written by a newer keygate is refused, not half-read. */
    sqlite3 *raw;
    CHECK_INT(sqlite3_open(f.db, &raw), SQLITE_OK);
    CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    CHECK(kg_store_open(f.db, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "newer") != NULL);
    fixture_close(&f);
}

void test_store_feed_rotation_grace(void)
{
    fixture_t f;
    const int64_t T = 100000;
    kg_key_view_t v;
    int64_t seq = 0;
    uint8_t h1[32], h2[32], h3[32], h4[32];
    char path[96];

    kg_key_index_thread_online();
    fixture_open(&f);
    kg_key_index_t *idx = kg_key_index_new();
    json_t *created = call(&f, f.st, "POST", "/v1/tokens", "{\"name\":\"app\"}", T, 201);
    hash_of(created, h1);
    const char *id = json_string_value(json_object_get(created, "id"));
    snprintf(path, sizeof(path), "/v1/tokens/%s/rotate", id);
    CHECK_INT(kg_feed_load_all(f.st, idx, T, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h1, T, &v), KG_OK);

    /* Rotation with a 100 s grace: the old secret works until the deadline, then never. */
    json_t *r1 = call(&f, f.st, "POST", path, "{\"grace_seconds\":100}", T, 200);
    hash_of(r1, h2);
    CHECK_INT(json_integer_value(json_object_get(r1, "grace_until")), T + 100);
    CHECK_INT(kg_feed_apply(f.st, idx, NULL, T, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h2, T + 1, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h1, T + 99, &v), KG_OK);
    CHECK_STR(v.id, id);
    CHECK_INT(kg_key_index_lookup(idx, h1, T + 100, &v), KG_EINVALID_API_KEY);

    /* A second rotation (with its own grace) ends the first grace at once. */
    json_t *r2 = call(&f, f.st, "POST", path, "{\"grace_seconds\":100}", T + 10, 200);
    hash_of(r2, h3);
    CHECK_INT(kg_feed_apply(f.st, idx, NULL, T + 10, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h1, T + 11, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, h2, T + 11, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h3, T + 11, &v), KG_OK);

    /* A full load in the middle of a grace (another token beside, so the join has a choice):
     * the new secret is the current one, the old one is known as old until its deadline. */
    json_t *other = call(&f, f.st, "POST", "/v1/tokens", "{\"name\":\"other\"}", T + 10, 201);
    uint8_t h_other[32];
    hash_of(other, h_other);
    kg_key_index_t *mid = kg_key_index_new();
    int64_t seq_mid;
    CHECK_INT(kg_feed_load_all(f.st, mid, T + 11, &seq_mid), KG_OK);
    CHECK_INT(kg_key_index_size(mid), 3 + 1); /* two secrets of `app`, one of `other`, the root key's */
    CHECK_INT(kg_key_index_lookup(mid, h3, T + 11, &v), KG_OK);
    CHECK(!v.old_secret);
    CHECK_INT(v.grace_until, T + 10 + 100);
    CHECK_INT(kg_key_index_lookup(mid, h2, T + 11, &v), KG_OK);
    CHECK(v.old_secret);
    CHECK_STR(v.id, id);
    CHECK_INT(kg_key_index_lookup(mid, h2, T + 110, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(mid, h_other, T + 11, &v), KG_OK);
    CHECK_STR(v.id, json_string_value(json_object_get(other, "id")));
    kg_key_index_free(mid);

    /* Without grace the old secret dies at once. */
    json_t *r3 = call(&f, f.st, "POST", path, NULL, T + 20, 200);
    hash_of(r3, h4);
    CHECK_INT(kg_feed_apply(f.st, idx, NULL, T + 20, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h2, T + 21, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, h3, T + 21, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, h4, T + 21, &v), KG_OK);

    /* A fresh start (full load) agrees with the incremental feed. */
    kg_key_index_t *fresh = kg_key_index_new();
    int64_t seq2;
    CHECK_INT(kg_feed_load_all(f.st, fresh, T + 21, &seq2), KG_OK);
    CHECK_INT(seq2, seq);
    CHECK_INT(kg_key_index_lookup(fresh, h4, T + 21, &v), KG_OK);
    CHECK_STR(v.id, id);
    CHECK_INT(kg_key_index_lookup(fresh, h3, T + 21, &v), KG_EINVALID_API_KEY);
    /* `app`'s only secret now comes after `other`'s in storage order: both are still joined right. */
    CHECK_INT(kg_key_index_lookup(fresh, h_other, T + 21, &v), KG_OK);
    CHECK_STR(v.id, json_string_value(json_object_get(other, "id")));
    CHECK_INT(kg_key_index_size(fresh), 3);
    kg_key_index_free(fresh);
    json_decref(other);

    json_decref(created), json_decref(r1), json_decref(r2), json_decref(r3);
    kg_key_index_free(idx);
    fixture_close(&f);
    kg_key_index_thread_offline();
}

/* The answer a lookup of `hash` gives: its code, and for a key it lets through its id and whether
 * the secret is an old one in its grace. */
typedef struct lookup_answer {
    kg_err_t rv;
    char id[KG_KEY_ID_LEN + 1];
    bool old_secret;
} lookup_answer_t;

static lookup_answer_t answer_of(kg_key_index_t *idx, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now)
{
    kg_key_view_t v;
    lookup_answer_t a = {.rv = kg_key_index_lookup(idx, hash, now, &v)};
    if (a.rv == KG_OK) {
        snprintf(a.id, sizeof(a.id), "%s", v.id);
        a.old_secret = v.old_secret;
    }
    return a;
}

/* A start-up load of a store with a history (keys rotated with and without grace, twice, revoked,
 * their secrets stored out of the tokens' order) answers every secret ever issued exactly as the
 * running gateway's index, kept by the change feed, does: during the graces and after them. */
void test_store_feed_load_matches_feed_after_history(void)
{
    enum { N = 120, SECRETS_MAX = 4 * N };
    fixture_t f;
    const int64_t T = 200000;
    static uint8_t hashes[SECRETS_MAX][KG_KEY_HASH_BYTES];
    static char owner[SECRETS_MAX][KG_KEY_ID_LEN + 1];
    static bool current[SECRETS_MAX];
    size_t n = 0;
    int64_t seq = 0, seq_full;
    char path[128];

    kg_key_index_thread_online();
    fixture_open(&f);
    kg_key_index_t *live = kg_key_index_new();
    CHECK_INT(kg_feed_load_all(f.st, live, T, &seq), KG_OK);
    char ids[N][KG_KEY_ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        json_t *made = call(&f, f.st, "POST", "/v1/tokens", "{\"name\":\"k\"}", T, 201);
        snprintf(ids[i], sizeof(ids[i]), "%s", json_string_value(json_object_get(made, "id")));
        hash_of(made, hashes[n]);
        memcpy(owner[n], ids[i], sizeof(owner[n]));
        current[n++] = true;
        json_decref(made);
    }
    /* Each history step on a key makes its newest secret the current one. */
    for (int step = 0; step < 3; step++)
        for (int i = 0; i < N; i++) {
            const char *body = NULL;
            if ((step == 0 && i % 5 == 1) || (step == 2 && i % 11 == 4))
                body = "{\"grace_seconds\":100}";
            else if (!((step == 1 && i % 9 == 3) || (step == 0 && i % 11 == 4)))
                continue;
            snprintf(path, sizeof(path), "/v1/tokens/%.*s/rotate", KG_KEY_ID_LEN, ids[i]);
            json_t *rotated = call(&f, f.st, "POST", path, body, T + 1 + step, 200);
            for (size_t j = 0; j < n; j++)
                if (strcmp(owner[j], ids[i]) == 0)
                    current[j] = false;
            hash_of(rotated, hashes[n]);
            memcpy(owner[n], ids[i], sizeof(owner[n]));
            current[n++] = true;
            json_decref(rotated);
        }
    for (int i = 6; i < N; i += 7) {
        snprintf(path, sizeof(path), "/v1/tokens/%.*s", KG_KEY_ID_LEN, ids[i]);
        json_decref(call(&f, f.st, "DELETE", path, NULL, T + 4, 200));
    }
    CHECK_INT(kg_feed_apply(f.st, live, NULL, T + 4, &seq), KG_OK);

    kg_key_index_t *full = kg_key_index_new();
    CHECK_INT(kg_feed_load_all(f.st, full, T + 5, &seq_full), KG_OK);
    CHECK_INT(seq_full, seq);
    size_t in_grace = 0;
    for (int64_t now = T + 5; now <= T + 200; now += 195)
        for (size_t j = 0; j < n; j++) {
            lookup_answer_t want = answer_of(live, hashes[j], now), got = answer_of(full, hashes[j], now);
            CHECK_INT(got.rv, want.rv);
            CHECK_STR(got.id, want.id);
            CHECK(got.old_secret == want.old_secret);
            if (current[j]) { /* every key's current secret finds it: the revoked ones as revoked */
                bool revoked = false;
                for (int i = 6; i < N; i += 7)
                    revoked |= strcmp(owner[j], ids[i]) == 0;
                CHECK_INT(got.rv, revoked ? KG_EKEY_REVOKED : KG_OK);
                CHECK_STR(got.id, revoked ? "" : owner[j]);
            }
            in_grace += now == T + 5 && got.old_secret;
        }
    CHECK(in_grace > N / 10); /* the graces of the history were seen */
    kg_key_index_free(full);
    kg_key_index_free(live);
    fixture_close(&f);
    kg_key_index_thread_offline();
}

void test_store_feed_sees_other_connection(void)
{
    fixture_t f;
    char err[256], path[96];
    int64_t seq = 0, v0, v1;
    uint8_t h[32];
    kg_key_view_t view;
    int64_t now = (int64_t)time(NULL);

    kg_key_index_thread_online();
    fixture_open(&f);
    kg_key_index_t *idx = kg_key_index_new();
    kg_store_t *gateway = kg_store_open(f.db, err, sizeof(err)); /* the server's feed connection */
    CHECK_INT(kg_feed_load_all(gateway, idx, now, &seq), KG_OK);
    CHECK_INT(kg_store_data_version(gateway, &v0), KG_OK);
    CHECK_INT(kg_store_data_version(gateway, &v1), KG_OK);
    CHECK_INT(v0, v1); /* nothing changed: the poll costs nothing */

    /* The CLI's connection writes; the gateway's connection notices and applies it. */
    json_t *created =
        call(&f, f.st, "POST", "/v1/tokens", "{\"name\":\"cli-made\",\"environment\":\"production\"}", now, 201);
    hash_of(created, h);
    CHECK_INT(kg_key_index_lookup(idx, h, now, &view), KG_EINVALID_API_KEY);
    CHECK_INT(kg_store_data_version(gateway, &v1), KG_OK);
    CHECK(v1 != v0);
    CHECK_INT(kg_feed_apply(gateway, idx, NULL, now, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h, now, &view), KG_OK);

    snprintf(path, sizeof(path), "/v1/tokens/%s/disable", json_string_value(json_object_get(created, "id")));
    json_decref(call(&f, f.st, "POST", path, NULL, now, 200));
    CHECK_INT(kg_feed_apply(gateway, idx, NULL, now, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h, now, &view), KG_EKEY_DISABLED);

    snprintf(path, sizeof(path), "/v1/tokens/%s", json_string_value(json_object_get(created, "id")));
    json_decref(call(&f, f.st, "DELETE", path, NULL, now, 200));
    CHECK_INT(kg_feed_apply(gateway, idx, NULL, now, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h, now, &view), KG_EKEY_REVOKED);

    json_decref(created);
    kg_store_close(gateway);
    kg_key_index_free(idx);
    fixture_close(&f);
    kg_key_index_thread_offline();
}

void test_store_last_used_flush(void)
{
    fixture_t f;
    int64_t seq;
    uint8_t h[32];
    kg_key_view_t view;
    kg_token_t t;

    kg_key_index_thread_online();
    fixture_open(&f);
    kg_key_index_t *idx = kg_key_index_new();
    json_t *created = call(&f, f.st, "POST", "/v1/tokens", "{\"name\":\"used\"}", 5000, 201);
    hash_of(created, h);
    const char *id = json_string_value(json_object_get(created, "id"));
    CHECK_INT(kg_feed_load_all(f.st, idx, 5000, &seq), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, h, 5005, &view), KG_OK);
    CHECK_INT(kg_store_token_get(f.st, id, NULL, &t), KG_OK);
    CHECK_INT(t.last_used_at, 0); /* nothing is written per request */
    kg_token_dispose(&t);
    CHECK_INT(kg_feed_flush_last_used(f.st, idx), KG_OK);
    CHECK_INT(kg_store_token_get(f.st, id, NULL, &t), KG_OK);
    CHECK_INT(t.last_used_at, 5005);
    kg_token_dispose(&t);
    json_decref(created);
    kg_key_index_free(idx);
    fixture_close(&f);
    kg_key_index_thread_offline();
}
