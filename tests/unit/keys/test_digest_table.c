/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/keys/digest_table.c: finding, replacing and removing objects, digests that share
 * a home slot and a tag (probe chains through tombstones), growth, the bulk insertion, and
 * lookups racing with a writer that grows and churns the table (run under ASan/UBSan in CI).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <urcu.h>

#include "../test.h"
#include "keys/digest_table.h"

typedef struct object {
    int id;
    uint8_t digest[KG_DIGEST_BYTES];
} object_t;

/* A digest from a seed (splitmix64): uniform, like SHA-256 output. */
static void fill_digest(uint8_t d[KG_DIGEST_BYTES], uint64_t seed)
{
    for (int i = 0; i < KG_DIGEST_BYTES; i += 8) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        memcpy(d + i, &z, 8);
    }
}

static kg_digest_table_t *new_table(void)
{
    return kg_digest_table_new(offsetof(object_t, digest), sizeof(object_t), 0);
}

void test_digest_table_put_find_remove(void)
{
    rcu_register_thread();
    rcu_read_lock();
    kg_digest_table_t *t = new_table();
    object_t a = {1, {0}}, b = {2, {0}}, a2 = {3, {0}};
    fill_digest(a.digest, 1), fill_digest(b.digest, 2);
    memcpy(a2.digest, a.digest, KG_DIGEST_BYTES);

    CHECK(kg_digest_table_find(t, a.digest) == NULL);
    CHECK(kg_digest_table_put(t, &a, NULL) == NULL);
    CHECK(kg_digest_table_put(t, &b, NULL) == NULL);
    CHECK(kg_digest_table_find(t, a.digest) == &a);
    CHECK(kg_digest_table_find(t, b.digest) == &b);
    CHECK_INT(kg_digest_table_count(t), 2);

    /* The same digest again: the new object replaces the old, which is handed back. */
    CHECK(kg_digest_table_put(t, &a2, NULL) == &a);
    CHECK(kg_digest_table_find(t, a.digest) == &a2);
    CHECK_INT(kg_digest_table_count(t), 2);

    /* Removal is by identity: the replaced object is no longer there to remove. */
    CHECK(!kg_digest_table_remove(t, &a));
    CHECK(kg_digest_table_remove(t, &a2));
    CHECK(kg_digest_table_find(t, a.digest) == NULL);
    CHECK(kg_digest_table_find(t, b.digest) == &b);
    CHECK_INT(kg_digest_table_count(t), 1);

    /* A digest that differs from a stored one only past the tag is not that object. */
    object_t near = b;
    near.digest[31] ^= 1;
    CHECK(kg_digest_table_find(t, near.digest) == NULL);

    kg_digest_table_free(t);
    rcu_read_unlock();
    rcu_barrier();
    rcu_unregister_thread();
}

void test_digest_table_shared_home_and_tag(void)
{
    rcu_register_thread();
    rcu_read_lock();
    kg_digest_table_t *t = new_table();
    enum { N = 40 };
    object_t objs[N];
    /* Same first ten bytes (home slot and tag), different tails: one probe chain of 40. */
    for (int i = 0; i < N; i++) {
        objs[i].id = i;
        fill_digest(objs[i].digest, 1000 + (uint64_t)i);
        memset(objs[i].digest, 0xAB, 10);
        CHECK(kg_digest_table_put(t, &objs[i], NULL) == NULL);
    }
    for (int i = 0; i < N; i++)
        CHECK(kg_digest_table_find(t, objs[i].digest) == &objs[i]);

    /* Holes in the middle of the chain: the objects after them are still found. */
    for (int i = 0; i < N; i += 3)
        CHECK(kg_digest_table_remove(t, &objs[i]));
    for (int i = 0; i < N; i++)
        CHECK(kg_digest_table_find(t, objs[i].digest) == (i % 3 == 0 ? NULL : &objs[i]));
    CHECK_INT(kg_digest_table_count(t), N - (N + 2) / 3);

    /* Put back (into the holes): everything is found once, and a second put replaces. */
    for (int i = 0; i < N; i += 3)
        CHECK(kg_digest_table_put(t, &objs[i], NULL) == NULL);
    for (int i = 0; i < N; i++)
        CHECK(kg_digest_table_find(t, objs[i].digest) == &objs[i]);
    CHECK(kg_digest_table_put(t, &objs[7], NULL) == &objs[7]);
    CHECK_INT(kg_digest_table_count(t), N);

    kg_digest_table_free(t);
    rcu_read_unlock();
    rcu_barrier();
    rcu_unregister_thread();
}

static void count_object(void *ctx, void *obj)
{
    (void)obj;
    ++*(size_t *)ctx;
}

void test_digest_table_growth_and_bulk(void)
{
    rcu_register_thread();
    rcu_read_lock();
    enum { N = 20000 };
    object_t *objs = calloc(N, sizeof(*objs));
    for (int i = 0; i < N; i++)
        objs[i].id = i, fill_digest(objs[i].digest, (uint64_t)i * 7919);

    /* One by one, through several growths; then remove every other one. */
    kg_digest_table_t *t = new_table();
    for (int i = 0; i < N; i++)
        kg_digest_table_put(t, &objs[i], NULL);
    for (int i = 0; i < N; i += 2)
        CHECK(kg_digest_table_remove(t, &objs[i]));
    int wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += kg_digest_table_find(t, objs[i].digest) != (i % 2 == 0 ? NULL : &objs[i]);
    CHECK_INT(wrong, 0);
    size_t seen = 0;
    kg_digest_table_for_each(t, count_object, &seen);
    CHECK_INT(seen, N / 2);
    CHECK_INT(kg_digest_table_count(t), N / 2);
    kg_digest_table_free(t);

    /* In bulk, with two copies of one digest among them: the first is kept. */
    void **list = calloc(N + 1, sizeof(*list));
    for (int i = 0; i < N; i++)
        list[i] = &objs[i];
    object_t twin = objs[123];
    twin.id = -1;
    list[N] = &twin;
    t = new_table();
    CHECK_INT(kg_digest_table_put_many(t, list, NULL, N + 1), 1);
    CHECK_INT(kg_digest_table_count(t), N);
    wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += kg_digest_table_find(t, objs[i].digest) != &objs[i];
    CHECK_INT(wrong, 0);
    kg_digest_table_free(t);

    free(list);
    rcu_read_unlock();
    rcu_barrier(); /* the slot arrays retired by the growths */
    free(objs);
    rcu_unregister_thread();
}

/* ==== Readers racing a writer ==== */

enum { STABLE = 500, CHURN = 5000 };

typedef struct race {
    kg_digest_table_t *table;
    object_t *stable;
    atomic_bool stop;
    atomic_long misses, lookups;
} race_t;

static void *race_reader(void *arg)
{
    race_t *r = arg;
    rcu_register_thread();
    while (!atomic_load(&r->stop)) {
        for (int i = 0; i < STABLE; i++) {
            rcu_read_lock();
            if (kg_digest_table_find(r->table, r->stable[i].digest) != &r->stable[i])
                atomic_fetch_add(&r->misses, 1);
            rcu_read_unlock();
        }
        atomic_fetch_add(&r->lookups, STABLE);
    }
    rcu_unregister_thread();
    return NULL;
}

void test_digest_table_concurrent_readers(void)
{
    rcu_register_thread();
    race_t r = {.table = new_table(), .stable = calloc(STABLE, sizeof(object_t))};
    object_t *churn = calloc(CHURN, sizeof(object_t));
    for (int i = 0; i < STABLE; i++)
        r.stable[i].id = i, fill_digest(r.stable[i].digest, 77 + (uint64_t)i);
    for (int i = 0; i < CHURN; i++)
        churn[i].id = i, fill_digest(churn[i].digest, 1u << 20 | (uint64_t)i);
    rcu_read_lock();
    for (int i = 0; i < STABLE; i++)
        kg_digest_table_put(r.table, &r.stable[i], NULL);
    rcu_read_unlock();

    pthread_t readers[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&readers[i], NULL, race_reader, &r);
    /* The writer grows the table through several arrays, empties it of the churn (tombstones
     * and purges), and fills it again, while the readers look the stable objects up. */
    for (int round = 0; round < 4 || (round < 200 && atomic_load(&r.lookups) < 20 * STABLE); round++) {
        rcu_read_lock();
        for (int i = 0; i < CHURN; i++)
            kg_digest_table_put(r.table, &churn[i], &churn[i]);
        for (int i = 0; i < CHURN; i++)
            kg_digest_table_remove(r.table, &churn[i]);
        rcu_read_unlock();
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(readers[i], NULL);
    CHECK_INT(atomic_load(&r.misses), 0);
    CHECK(atomic_load(&r.lookups) > 0);
    CHECK_INT(kg_digest_table_count(r.table), STABLE);

    rcu_read_lock();
    kg_digest_table_free(r.table);
    rcu_read_unlock();
    rcu_barrier();
    free(churn);
    free(r.stable);
    rcu_unregister_thread();
}
