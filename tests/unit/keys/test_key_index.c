/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/keys/key_index.c: statuses, rotation grace, last use, and lookups racing with
 * updates on other threads (run under ASan/UBSan in CI, where a use-after-free would show).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../test.h"
#include "keys/key_format.h"
#include "keys/key_index.h"

static kg_token_t make_token(const char *id)
{
    kg_token_t t = {0};
    snprintf(t.id, sizeof(t.id), "%s", id);
    t.org_id = "org_default";
    t.environment = "production";
    t.type = KG_TOKEN_ACCESS;
    t.enabled = true;
    return t;
}

static kg_token_secret_t secret_of(const char *text, int64_t grace_until)
{
    kg_token_secret_t s = {.expires_at = grace_until};
    CHECK(kg_key_hash(text, strlen(text), s.hash));
    return s;
}

/* A presented secret is judged whole: shape, checksum, then the table (in whatever order the
 * work is overlapped). A store that somehow holds the hash of a secret with a wrong checksum
 * still never lets that secret in. */
void test_index_check_secret(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    char good[KG_KEY_SECRET_MAX], bad[KG_KEY_SECRET_MAX];
    size_t len = kg_key_secret_compose("kg", KG_KEY_KIND_LIVE, "0123456789abcdefghijABCDEFGHIJkl", good);
    CHECK(len > 0);
    memcpy(bad, good, len + 1);
    bad[len - 1] = bad[len - 1] == 'A' ? 'B' : 'A'; /* the checksum's last character */
    kg_token_t t = make_token("pk_AAAAAAAAAAAAAAAAAAAAAAAA"), u = make_token("pk_BBBBBBBBBBBBBBBBBBBBBBBB");
    kg_token_secret_t s_good = secret_of(good, 0), s_bad = secret_of(bad, 0);
    kg_key_index_put(idx, &t, &s_good, 1);
    kg_key_index_put(idx, &u, &s_bad, 1);
    kg_key_view_t v;
    uint8_t hash[KG_KEY_HASH_BYTES];

    kg_key_index_read_lock();
    CHECK_INT(kg_key_index_check_secret(idx, good, len, 1000, &v, hash), KG_OK);
    CHECK_STR(v.id, "pk_AAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK(memcmp(hash, s_good.hash, sizeof(hash)) == 0);
    CHECK_INT(kg_key_index_lookup(idx, s_bad.hash, 1000, &v), KG_OK);                         /* the table has it... */
    CHECK_INT(kg_key_index_check_secret(idx, bad, len, 1000, &v, hash), KG_EINVALID_API_KEY); /* ...the check not */
    CHECK_INT(kg_key_index_check_secret(idx, good, len - 1, 1000, &v, hash), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_check_secret(idx, "kg_live_", 8, 1000, &v, hash), KG_EINVALID_API_KEY);
    kg_key_index_read_unlock();

    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}

void test_index_statuses(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    kg_token_t t = make_token("pk_AAAAAAAAAAAAAAAAAAAAAAAA");
    kg_token_secret_t s = secret_of("secret-1", 0);
    kg_key_view_t v;

    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1000, &v), KG_EINVALID_API_KEY);
    kg_key_index_put(idx, &t, &s, 1);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1000, &v), KG_OK);
    CHECK_STR(v.id, "pk_AAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK_STR(v.org_id, "org_default");
    CHECK_STR(v.environment, "production");
    CHECK_INT(v.type, KG_TOKEN_ACCESS);

    t.enabled = false;
    kg_key_index_put(idx, &t, &s, 1);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1000, &v), KG_EKEY_DISABLED);
    t.enabled = true;
    t.expires_at = 2000;
    kg_key_index_put(idx, &t, &s, 1);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1999, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 2000, &v), KG_EKEY_EXPIRED); /* stops at that instant */
    t.revoked_at = 1500;
    t.enabled = false;
    kg_key_index_put(idx, &t, &s, 1);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1000, &v), KG_EKEY_REVOKED); /* revoked wins */
    kg_key_index_remove(idx, t.id);
    CHECK_INT(kg_key_index_lookup(idx, s.hash, 1000, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_size(idx), 0);
    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}

void test_index_rotation_grace(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    kg_token_t t = make_token("pk_BBBBBBBBBBBBBBBBBBBBBBBB");
    kg_key_view_t v;
    kg_token_secret_t s1 = secret_of("first", 0);
    kg_key_index_put(idx, &t, &s1, 1);

    /* Rotation with grace until 1100: both work before, only the new one after. */
    kg_token_secret_t rot1[2] = {secret_of("second", 0), secret_of("first", 1100)};
    kg_key_index_put(idx, &t, rot1, 2);
    CHECK_INT(kg_key_index_size(idx), 2);
    CHECK_INT(kg_key_index_lookup(idx, rot1[0].hash, 1099, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, s1.hash, 1099, &v), KG_OK);
    CHECK_STR(v.id, t.id);
    CHECK_INT(kg_key_index_lookup(idx, s1.hash, 1100, &v), KG_EINVALID_API_KEY);

    /* A second rotation ends the first grace at once: "first" is gone even before 1100. */
    kg_token_secret_t rot2[2] = {secret_of("third", 0), secret_of("second", 1200)};
    kg_key_index_put(idx, &t, rot2, 2);
    CHECK_INT(kg_key_index_lookup(idx, s1.hash, 1000, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, rot2[1].hash, 1000, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, rot2[0].hash, 1000, &v), KG_OK);
    CHECK_INT(kg_key_index_size(idx), 2);

    /* Rotation without grace: only the newest works. */
    kg_token_secret_t rot3 = secret_of("fourth", 0);
    kg_key_index_put(idx, &t, &rot3, 1);
    CHECK_INT(kg_key_index_lookup(idx, rot2[0].hash, 1000, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, rot2[1].hash, 1000, &v), KG_EINVALID_API_KEY);
    CHECK_INT(kg_key_index_lookup(idx, rot3.hash, 1000, &v), KG_OK);
    CHECK_INT(kg_key_index_size(idx), 1);
    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}

#define N_KEYS 200
#define N_READERS 3

typedef struct race {
    kg_key_index_t *idx;
    kg_token_secret_t secrets[N_KEYS];
    char ids[N_KEYS][KG_KEY_ID_LEN + 1];
    atomic_bool stop;
    atomic_long lookups, bad;
} race_t;

static void *reader(void *arg)
{
    race_t *r = arg;
    kg_key_index_thread_online();
    while (!atomic_load(&r->stop)) {
        for (int i = 0; i < N_KEYS; i++) {
            kg_key_view_t v;
            kg_err_t rv = kg_key_index_lookup(r->idx, r->secrets[i].hash, 1000, &v);
            /* Whatever the writer is doing, a reader sees a whole record of this key or none. */
            if (rv == KG_OK && strcmp(v.id, r->ids[i]) != 0)
                atomic_fetch_add(&r->bad, 1);
            if (rv != KG_OK && rv != KG_EINVALID_API_KEY && rv != KG_EKEY_DISABLED)
                atomic_fetch_add(&r->bad, 1);
            atomic_fetch_add(&r->lookups, 1);
        }
    }
    kg_key_index_thread_offline();
    return NULL;
}

void test_index_concurrent_update_and_lookup(void)
{
    race_t *r = calloc(1, sizeof(*r));
    pthread_t readers[N_READERS];
    kg_key_index_thread_online();
    r->idx = kg_key_index_new();
    for (int i = 0; i < N_KEYS; i++) {
        char text[32];
        snprintf(text, sizeof(text), "race-secret-%d", i);
        r->secrets[i] = secret_of(text, 0);
        snprintf(r->ids[i], sizeof(r->ids[i]), "pk_%024d", i);
    }
    for (int i = 0; i < N_READERS; i++)
        pthread_create(&readers[i], NULL, reader, r);
    /* The writer replaces, disables and removes records while the readers look them up. */
    for (int round = 0; round < 60; round++) {
        for (int i = 0; i < N_KEYS; i++) {
            kg_token_t t = make_token(r->ids[i]);
            t.enabled = (round + i) % 3 != 0;
            if ((round + i) % 7 == 0)
                kg_key_index_remove(r->idx, t.id);
            else
                kg_key_index_put(r->idx, &t, &r->secrets[i], 1);
        }
    }
    atomic_store(&r->stop, true);
    for (int i = 0; i < N_READERS; i++)
        pthread_join(readers[i], NULL);
    CHECK_INT(atomic_load(&r->bad), 0);
    CHECK(atomic_load(&r->lookups) > 0);
    /* After the race the table holds exactly the records the last round left. */
    size_t expect = 0;
    for (int i = 0; i < N_KEYS; i++)
        expect += (59 + i) % 7 != 0;
    CHECK_INT(kg_key_index_size(r->idx), expect);
    kg_key_index_free(r->idx);
    kg_key_index_thread_offline();
    free(r);
}

void test_index_last_used(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    kg_token_t a = make_token("pk_CCCCCCCCCCCCCCCCCCCCCCCC"), b = make_token("pk_DDDDDDDDDDDDDDDDDDDDDDDD");
    kg_token_secret_t sa = secret_of("a", 0), sb = secret_of("b", 0);
    kg_key_view_t v;
    kg_last_used_t out[4];
    kg_key_index_put(idx, &a, &sa, 1);
    kg_key_index_put(idx, &b, &sb, 1);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 5000, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 4000, &v), KG_OK); /* an older time never wins */
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_STR(out[0].id, a.id);
    CHECK_INT(out[0].at, 5000);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0); /* flushed once */
    /* A failed authentication is no use. */
    b.enabled = false;
    kg_key_index_put(idx, &b, &sb, 1);
    CHECK_INT(kg_key_index_lookup(idx, sb.hash, 6000, &v), KG_EKEY_DISABLED);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    /* Last use survives a record replacement (the state is per key, not per record). */
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 7000, &v), KG_OK);
    kg_key_index_put(idx, &a, &sa, 1);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_INT(out[0].at, 7000);
    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}

/* A key in steady use is listed for the store once per KG_LAST_USED_STEP_S, with its latest
 * time; its first use at once, whatever the time. */
void test_index_last_used_once_a_step(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    kg_token_t a = make_token("pk_EEEEEEEEEEEEEEEEEEEEEEEE");
    kg_token_secret_t sa = secret_of("a", 0);
    kg_key_view_t v;
    kg_last_used_t out[4];
    kg_key_index_put(idx, &a, &sa, 1);
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 7, &v), KG_OK); /* first use: listed */
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_INT(out[0].at, 7);
    for (int64_t t = 8; t < 7 + KG_LAST_USED_STEP_S; t++) {
        CHECK_INT(kg_key_index_lookup(idx, sa.hash, t, &v), KG_OK);
        CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    }
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 7 + KG_LAST_USED_STEP_S, &v), KG_OK);
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 8 + KG_LAST_USED_STEP_S, &v), KG_OK);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_INT(out[0].at, 8 + KG_LAST_USED_STEP_S); /* the time at the flush, not at the listing */
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);

    /* At shutdown, a use within the step is listed too; nothing when all is written. */
    CHECK_INT(kg_key_index_lookup(idx, sa.hash, 30 + KG_LAST_USED_STEP_S, &v), KG_OK);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    kg_key_index_list_unflushed(idx);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_INT(out[0].at, 30 + KG_LAST_USED_STEP_S);
    kg_key_index_list_unflushed(idx);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);

    /* A flush whose write failed lists its keys again, with their times, for the next one. */
    kg_key_index_relist_last_used(idx, out, 1);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 1);
    CHECK_STR(out[0].id, a.id);
    CHECK_INT(out[0].at, 30 + KG_LAST_USED_STEP_S);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    kg_last_used_t unknown = {.id = "pk_nonexistentnonexistent00", .at = 1};
    kg_key_index_relist_last_used(idx, &unknown, 1); /* a key gone meanwhile: nothing */
    CHECK_INT(kg_key_index_take_last_used(idx, out, 4), 0);
    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}

void test_index_last_used_in_batches(void)
{
    kg_key_index_thread_online();
    kg_key_index_t *idx = kg_key_index_new();
    kg_token_secret_t s[5];
    kg_key_view_t v;
    kg_last_used_t out[2];
    char id[KG_KEY_ID_LEN + 1], secret[8];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "pk_%024d", i);
        snprintf(secret, sizeof(secret), "s%d", i);
        kg_token_t t = make_token(id);
        s[i] = secret_of(secret, 0);
        kg_key_index_put(idx, &t, &s[i], 1);
        CHECK_INT(kg_key_index_lookup(idx, s[i].hash, 1000 + i, &v), KG_OK);
    }
    /* Five keys used, taken two at a time: each once, with its own time. */
    int seen = 0, total = 0;
    size_t n;
    while (total < 5 && (n = kg_key_index_take_last_used(idx, out, 2)) > 0) {
        CHECK(n <= 2);
        for (size_t j = 0; j < n; j++) {
            int k = atoi(out[j].id + 3);
            CHECK(k >= 0 && k < 5 && !(seen & (1 << k)));
            CHECK_INT(out[j].at, 1000 + k);
            seen |= 1 << k, total++;
        }
        /* A key used again while the flush is under way is taken again, later, with its new time. */
        if (total == 2)
            CHECK_INT(kg_key_index_lookup(idx, s[atoi(out[0].id + 3)].hash, 2000, &v), KG_OK);
    }
    CHECK_INT(seen, 31);
    CHECK_INT(total, 5);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 2), 1);
    CHECK_INT(out[0].at, 2000);
    CHECK_INT(kg_key_index_take_last_used(idx, out, 2), 0);
    kg_key_index_free(idx);
    kg_key_index_thread_offline();
}
