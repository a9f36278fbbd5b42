/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements key ids and secrets (SPEC §2): generation from getrandom(2), the
 * GitHub-style CRC32 checksum (zlib's crc32) and a parser that refuses typos and truncations
 * before any lookup.
 */
#include "keys/key_format.h"

#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#include <openssl/crypto.h>

static const char base62_digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static const char *const kind_names[KG_KEY_KIND__COUNT] = {"live", "test", "gk", "admin", "eph"};

const char *kg_key_kind_name(kg_key_kind_t kind)
{
    return (unsigned)kind < KG_KEY_KIND__COUNT ? kind_names[kind] : "?";
}

/* A table, not three range tests: a secret's characters are random, so branches on their class
 * were mispredicted about every other character (most of the parse's time, measured). */
static const bool base62_chars[256] = {['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true};

/* Whether all n characters are base62, without a branch per character. */
static bool all_base62(const char *s, size_t n)
{
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= base62_chars[(unsigned char)s[i]];
    return ok;
}

bool kg_key_brand_is_valid(const char *brand, size_t len)
{
    if (len < 2 || len > KG_KEY_BRAND_MAX || !(brand[0] >= 'a' && brand[0] <= 'z'))
        return false;
    if (len == 2 && memcmp(brand, "pk", 2) == 0) /* "pk_" starts a public id: secrets must not */
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((brand[i] >= 'a' && brand[i] <= 'z') || (brand[i] >= '0' && brand[i] <= '9')))
            return false;
    return true;
}

void kg_key_checksum(const char *random, size_t len, char out[KG_KEY_CHECKSUM_CHARS])
{
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)random, (uInt)len);
    /* 62^6 > 2^32, so six digits always suffice; most significant first, zero-padded. */
    for (int i = KG_KEY_CHECKSUM_CHARS - 1; i >= 0; i--) {
        out[i] = base62_digits[crc % 62];
        crc /= 62;
    }
}

bool kg_random_base62(char *out, size_t n)
{
    unsigned char pool[64];
    size_t have = 0, used = 0;
    while (n > 0) {
        if (used == have) {
            ssize_t got = getrandom(pool, sizeof(pool), 0);
            if (got <= 0)
                return false;
            have = (size_t)got, used = 0;
        }
        unsigned char b = pool[used++];
        /* Rejection sampling keeps the alphabet uniform: 248 = 4 * 62. */
        if (b >= 248)
            continue;
        *out++ = base62_digits[b % 62];
        n--;
    }
    OPENSSL_cleanse(pool, sizeof(pool));
    return true;
}

size_t kg_key_secret_compose(const char *brand, kg_key_kind_t kind, const char random[KG_KEY_RANDOM_CHARS],
                             char out[KG_KEY_SECRET_MAX])
{
    size_t brand_len = strlen(brand), at = 0;
    const char *kind_name = kg_key_kind_name(kind);
    size_t kind_len = strlen(kind_name);

    if (!kg_key_brand_is_valid(brand, brand_len) || (unsigned)kind >= KG_KEY_KIND__COUNT)
        return 0;
    if (!all_base62(random, KG_KEY_RANDOM_CHARS))
        return 0;
    memcpy(out + at, brand, brand_len), at += brand_len;
    out[at++] = '_';
    memcpy(out + at, kind_name, kind_len), at += kind_len;
    out[at++] = '_';
    memcpy(out + at, random, KG_KEY_RANDOM_CHARS), at += KG_KEY_RANDOM_CHARS;
    kg_key_checksum(random, KG_KEY_RANDOM_CHARS, out + at), at += KG_KEY_CHECKSUM_CHARS;
    out[at] = '\0';
    return at;
}

size_t kg_key_secret_generate(const char *brand, kg_key_kind_t kind, char out[KG_KEY_SECRET_MAX])
{
    char random[KG_KEY_RANDOM_CHARS];
    size_t len = 0;
    if (kg_random_base62(random, sizeof(random)))
        len = kg_key_secret_compose(brand, kind, random, out);
    OPENSSL_cleanse(random, sizeof(random));
    return len;
}

kg_err_t kg_key_secret_parse_shape(const char *s, size_t len, kg_key_secret_ref_t *out)
{
    const char *end = s + len, *brand_end, *kind_end, *body;
    size_t kind_len;
    int kind;

    brand_end = memchr(s, '_', len);
    if (brand_end == NULL || !kg_key_brand_is_valid(s, (size_t)(brand_end - s)))
        return KG_EINVALID_API_KEY;
    kind_end = memchr(brand_end + 1, '_', (size_t)(end - brand_end - 1));
    if (kind_end == NULL)
        return KG_EINVALID_API_KEY;
    kind_len = (size_t)(kind_end - brand_end - 1);
    for (kind = 0; kind < KG_KEY_KIND__COUNT; kind++)
        if (strlen(kind_names[kind]) == kind_len && memcmp(kind_names[kind], brand_end + 1, kind_len) == 0)
            break;
    if (kind == KG_KEY_KIND__COUNT)
        return KG_EINVALID_API_KEY;
    body = kind_end + 1;
    if ((size_t)(end - body) != KG_KEY_RANDOM_CHARS + KG_KEY_CHECKSUM_CHARS)
        return KG_EINVALID_API_KEY;
    if (!all_base62(body, (size_t)(end - body)))
        return KG_EINVALID_API_KEY;
    *out = (kg_key_secret_ref_t){.brand = s, .brand_len = (size_t)(brand_end - s), .kind = kind, .random = body};
    return KG_OK;
}

bool kg_key_secret_checksum_ok(const kg_key_secret_ref_t *ref)
{
    char expect[KG_KEY_CHECKSUM_CHARS];
    kg_key_checksum(ref->random, KG_KEY_RANDOM_CHARS, expect);
    return memcmp(expect, ref->random + KG_KEY_RANDOM_CHARS, KG_KEY_CHECKSUM_CHARS) == 0;
}

kg_err_t kg_key_secret_parse(const char *s, size_t len, kg_key_secret_ref_t *out)
{
    kg_key_secret_ref_t ref;
    if (kg_key_secret_parse_shape(s, len, &ref) != KG_OK || !kg_key_secret_checksum_ok(&ref))
        return KG_EINVALID_API_KEY;
    *out = ref;
    return KG_OK;
}

bool kg_key_id_generate(char out[KG_KEY_ID_LEN + 1])
{
    memcpy(out, "pk_", 3);
    if (!kg_random_base62(out + 3, KG_KEY_ID_RANDOM_CHARS))
        return false;
    out[KG_KEY_ID_LEN] = '\0';
    return true;
}

bool kg_key_id_is_valid(const char *s, size_t len)
{
    return len == KG_KEY_ID_LEN && memcmp(s, "pk_", 3) == 0 && all_base62(s + 3, len - 3);
}

uint64_t kg_key_id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id != '\0'; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return h;
}
