/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/keys/key_hash.c: FIPS 180-2 vectors and the repo's key vectors (hashed by
 * node:crypto), from several threads so each gets its own EVP context.
 */
#include <jansson.h>
#include <pthread.h>

#include "../test.h"
#include "keys/key_hash.h"

static void check_hex(const char *input, const char *expect)
{
    uint8_t h[KG_KEY_HASH_BYTES];
    char hex[2 * KG_KEY_HASH_BYTES + 1];
    CHECK(kg_key_hash(input, strlen(input), h));
    kg_key_hash_hex(h, hex);
    CHECK_STR(hex, expect);
}

static void *hash_vectors(void *arg)
{
    json_t *doc = arg, *v;
    size_t i;
    check_hex("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_hex("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    json_array_foreach (json_object_get(doc, "vectors"), i, v)
        check_hex(json_string_value(json_object_get(v, "secret")), json_string_value(json_object_get(v, "sha256")));
    return NULL;
}

void test_key_hash_vectors(void)
{
    char path[512];
    pthread_t t[3];
    json_t *doc = json_load_file(kg_test_source_path("tests/vectors/key_format.json", path, sizeof(path)), 0, NULL);
    CHECK(doc != NULL);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, hash_vectors, doc);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    hash_vectors(doc);

    uint8_t a[KG_KEY_HASH_BYTES], b[KG_KEY_HASH_BYTES];
    CHECK(kg_key_hash("x", 1, a));
    CHECK(kg_key_hash("x", 1, b));
    CHECK(kg_key_hash_equal(a, b));
    b[31] ^= 1;
    CHECK(!kg_key_hash_equal(a, b));
    json_decref(doc);
}
