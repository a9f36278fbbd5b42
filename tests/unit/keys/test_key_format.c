/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/keys/key_format.c against tests/vectors/key_format.json, which an independent
 * implementation (tests/vectors/gen_key_vectors.mjs) produced.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>

#include "../test.h"
#include "keys/key_format.h"

static json_t *load_vectors(void)
{
    char path[512];
    json_t *doc = json_load_file(kg_test_source_path("tests/vectors/key_format.json", path, sizeof(path)), 0, NULL);
    CHECK(doc != NULL);
    return doc;
}

static kg_key_kind_t kind_of(const char *name)
{
    for (int k = 0; k < KG_KEY_KIND__COUNT; k++)
        if (strcmp(kg_key_kind_name((kg_key_kind_t)k), name) == 0)
            return (kg_key_kind_t)k;
    return KG_KEY_KIND__COUNT;
}

void test_key_format_vectors(void)
{
    json_t *doc = load_vectors(), *v;
    size_t i;
    json_array_foreach (json_object_get(doc, "vectors"), i, v) {
        const char *brand = json_string_value(json_object_get(v, "brand"));
        const char *random = json_string_value(json_object_get(v, "random"));
        const char *secret = json_string_value(json_object_get(v, "secret"));
        char out[KG_KEY_SECRET_MAX], sum[KG_KEY_CHECKSUM_CHARS + 1] = {0};
        kg_key_kind_t kind = kind_of(json_string_value(json_object_get(v, "kind")));

        kg_key_checksum(random, strlen(random), sum);
        CHECK_STR(sum, json_string_value(json_object_get(v, "checksum")));
        size_t len = kg_key_secret_compose(brand, kind, random, out);
        CHECK_INT(len, strlen(secret));
        CHECK_STR(out, secret);

        kg_key_secret_ref_t ref;
        CHECK_INT(kg_key_secret_parse(secret, strlen(secret), &ref), KG_OK);
        CHECK_INT(ref.brand_len, strlen(brand));
        CHECK(memcmp(ref.brand, brand, ref.brand_len) == 0);
        CHECK_INT(ref.kind, kind);
        CHECK(memcmp(ref.random, random, KG_KEY_RANDOM_CHARS) == 0);
    }
    CHECK(i >= 8);
    json_decref(doc);
}

static void refuse(const char *s)
{
    kg_key_secret_ref_t ref;
    kg_err_t rv = kg_key_secret_parse(s, strlen(s), &ref);
    if (rv != KG_EINVALID_API_KEY)
        fprintf(stderr, "    accepted malformed secret \"%s\"\n", s);
    CHECK_INT(rv, KG_EINVALID_API_KEY);
}

void test_key_format_malformed(void)
{
    json_t *doc = load_vectors();
    const char *good = json_string_value(json_object_get(json_array_get(json_object_get(doc, "vectors"), 0), "secret"));
    char buf[128];
    size_t len = strlen(good);

    /* Wrong checksum: each checksum character changed in turn. */
    for (size_t i = len - KG_KEY_CHECKSUM_CHARS; i < len; i++) {
        snprintf(buf, sizeof(buf), "%s", good);
        buf[i] = buf[i] == 'A' ? 'B' : 'A';
        refuse(buf);
    }
    /* A typo in the random part. */
    snprintf(buf, sizeof(buf), "%s", good);
    buf[10] = buf[10] == '1' ? '2' : '1';
    refuse(buf);
    /* Truncated at every length, and one char too long. */
    for (size_t cut = 0; cut < len; cut++) {
        snprintf(buf, sizeof(buf), "%.*s", (int)cut, good);
        refuse(buf);
    }
    snprintf(buf, sizeof(buf), "%sA", good);
    refuse(buf);
    /* Whitespace inside, before or after. */
    snprintf(buf, sizeof(buf), "%.*s %s", 20, good, good + 20);
    refuse(buf);
    snprintf(buf, sizeof(buf), " %s", good);
    refuse(buf);
    snprintf(buf, sizeof(buf), "%s\n", good);
    refuse(buf);
    /* Lower-cased. */
    snprintf(buf, sizeof(buf), "%s", good);
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    refuse(buf);
    /* Wrong brand shapes and kinds. */
    refuse("KG_live_000000000000000000000000000000002wjyrI");
    refuse("k_live_000000000000000000000000000000002wjyrI");
    refuse("1g_live_000000000000000000000000000000002wjyrI");
    refuse("kg-x_live_000000000000000000000000000000002wjyrI");
    refuse("abcdefghijklmnopq_live_000000000000000000000000000000002wjyrI");
    refuse("kg_prod_000000000000000000000000000000002wjyrI");
    refuse("kg_LIVE_000000000000000000000000000000002wjyrI");
    refuse("kg__000000000000000000000000000000002wjyrI");
    refuse("kg_live000000000000000000000000000000002wjyrI");
    refuse("pk_c5Z2InGLklLdcvRi7ICTqdUy");
    refuse("");
    refuse("_");
    /* A non-base62 byte where the checksum would still be computed. */
    refuse("kg_live_0000000000000000000000000000000-2wjyrI");
    /* Another brand with the same body is a valid shape: lookup is by hash, brand-agnostic. */
    kg_key_secret_ref_t ref;
    CHECK_INT(kg_key_secret_parse("acme_live_000000000000000000000000000000002wjyrI", 48, &ref), KG_OK);
    json_decref(doc);
}

void test_key_format_generate(void)
{
    char a[KG_KEY_SECRET_MAX], b[KG_KEY_SECRET_MAX];
    size_t la = kg_key_secret_generate("kg", KG_KEY_KIND_LIVE, a);
    size_t lb = kg_key_secret_generate("kg", KG_KEY_KIND_LIVE, b);
    kg_key_secret_ref_t ref;
    CHECK_INT(la, 8 + 32 + 6);
    CHECK_INT(lb, la);
    CHECK(strncmp(a, "kg_live_", 8) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_INT(kg_key_secret_parse(a, la, &ref), KG_OK);
    CHECK_INT(kg_key_secret_generate("Bad", KG_KEY_KIND_LIVE, a), 0);
    CHECK_INT(kg_key_secret_generate("kg", KG_KEY_KIND_ADMIN, a), 9 + 38);
    CHECK(strncmp(a, "kg_admin_", 9) == 0);

    /* Every base62 character shows up and none other: the sampler is not stuck or biased to a range. */
    int seen[256] = {0};
    for (int i = 0; i < 200; i++) {
        char r[64];
        CHECK(kg_random_base62(r, sizeof(r)));
        for (size_t j = 0; j < sizeof(r); j++)
            seen[(unsigned char)r[j]]++;
    }
    int distinct = 0, outside = 0;
    for (int c = 0; c < 256; c++) {
        bool b62 = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        distinct += b62 && seen[c] > 0;
        outside += !b62 && seen[c] > 0;
    }
    CHECK_INT(distinct, 62);
    CHECK_INT(outside, 0);
}

void test_key_id(void)
{
    char id[KG_KEY_ID_LEN + 1], other[KG_KEY_ID_LEN + 1];
    CHECK(kg_key_id_generate(id));
    CHECK(kg_key_id_generate(other));
    CHECK_INT(strlen(id), 27);
    CHECK(kg_key_id_is_valid(id, strlen(id)));
    CHECK(strcmp(id, other) != 0);
    CHECK(!kg_key_id_is_valid("pk_short", 8));
    CHECK(!kg_key_id_is_valid("sk_c5Z2InGLklLdcvRi7ICTqdUy", 27));
    CHECK(!kg_key_id_is_valid("pk_c5Z2InGLklLdcvRi7ICTqd-y", 27));
    CHECK(!kg_key_id_is_valid("pk_c5Z2InGLklLdcvRi7ICTqdUyA", 28));
}
