/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements ephemeral tokens (see ephemeral.h) with OpenSSL's HMAC and base64.
 * Payload layout (big-endian): version 1 | parent id 27 | issued_at 8 | expires_at 8 |
 * generation 8 | scopes 4 | allow length 2 | allow JSON.
 */
#include "keys/ephemeral.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define VERSION 1
#define FIXED_LEN (1 + KG_KEY_ID_LEN + 8 + 8 + 8 + 4 + 2)
#define MAC_LEN 32

static void put64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)(v & 0xff);
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* base64url without padding, via OpenSSL's base64. Returns the length written, or 0. */
static size_t b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    if (4 * ((len + 2) / 3) + 1 > cap)
        return 0;
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[n] = '\0';
    return (size_t)n;
}

/* Decodes base64url (no padding) into out; returns the length, or -1. */
static long b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    char buf[KG_EPH_TOKEN_MAX + 4];
    if (len % 4 == 1 || len + 4 > sizeof(buf) || (len + 3) / 4 * 3 > cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return -1;
        buf[i] = c;
    }
    size_t pad = (4 - len % 4) % 4;
    memset(buf + len, '=', pad);
    int n = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)(len + pad));
    return n < 0 ? -1 : n - (long)pad;
}

static bool mac(const uint8_t key[KG_EPH_KEY_BYTES], const char *signed_part, size_t len, uint8_t out[MAC_LEN])
{
    unsigned int out_len = 0;
    return HMAC(EVP_sha256(), key, KG_EPH_KEY_BYTES, (const unsigned char *)signed_part, len, out, &out_len) != NULL &&
           out_len == MAC_LEN;
}

bool kg_eph_looks_like(const char *s, size_t len)
{
    const char *u = memchr(s, '_', len);
    return u != NULL && kg_key_brand_is_valid(s, (size_t)(u - s)) && (size_t)(s + len - u) > 5 &&
           memcmp(u, "_eph_", 5) == 0;
}

size_t kg_eph_mint(const char *brand, const uint8_t key[KG_EPH_KEY_BYTES], const kg_eph_claims_t *c, char *out,
                   size_t cap)
{
    uint8_t payload[FIXED_LEN + KG_EPH_ALLOW_MAX], m[MAC_LEN];
    size_t allow_len = strlen(c->allow), at = 0;
    if (allow_len > KG_EPH_ALLOW_MAX || strlen(c->parent_id) != KG_KEY_ID_LEN)
        return 0;
    payload[at++] = VERSION;
    memcpy(payload + at, c->parent_id, KG_KEY_ID_LEN), at += KG_KEY_ID_LEN;
    put64(payload + at, c->issued_at), at += 8;
    put64(payload + at, c->expires_at), at += 8;
    put64(payload + at, c->generation), at += 8;
    for (int i = 3; i >= 0; i--)
        payload[at + (size_t)(3 - i)] = (uint8_t)(c->scopes >> (8 * i));
    at += 4;
    payload[at++] = (uint8_t)(allow_len >> 8), payload[at++] = (uint8_t)allow_len;
    memcpy(payload + at, c->allow, allow_len), at += allow_len;

    int n = snprintf(out, cap, "%s_eph_", brand);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n, e = b64url_encode(payload, at, out + len, cap - len);
    if (e == 0 || len + e + 2 + 44 > cap)
        return 0;
    len += e;
    if (!mac(key, out, len, m))
        return 0;
    out[len++] = '.';
    e = b64url_encode(m, MAC_LEN, out + len, cap - len);
    OPENSSL_cleanse(m, sizeof(m));
    return e == 0 ? 0 : len + e;
}

kg_err_t kg_eph_verify(const char *s, size_t len, const uint8_t key[KG_EPH_KEY_BYTES], kg_eph_claims_t *out)
{
    uint8_t payload[FIXED_LEN + KG_EPH_ALLOW_MAX + 4], given[MAC_LEN + 4], expect[MAC_LEN];
    if (len > KG_EPH_TOKEN_MAX || !kg_eph_looks_like(s, len))
        return KG_EINVALID_API_KEY;
    const char *dot = memchr(s, '.', len), *body = (const char *)memchr(s, '_', len) + 5;
    if (dot == NULL || dot < body)
        return KG_EINVALID_API_KEY;
    /* The signature first: nothing of an unsigned payload is read. */
    /* The mac's text must be the one canonical spelling (its 43rd character carries 2 spare
     * bits): one token, one string, so a token can be matched or blocked by its text. */
    char canonical[4 * ((MAC_LEN + 2) / 3) + 1];
    size_t mac_text_len = (size_t)(s + len - dot - 1);
    if (b64url_decode(dot + 1, mac_text_len, given, sizeof(given)) != MAC_LEN ||
        b64url_encode(given, MAC_LEN, canonical, sizeof(canonical)) != mac_text_len ||
        memcmp(canonical, dot + 1, mac_text_len) != 0 || !mac(key, s, (size_t)(dot - s), expect) ||
        CRYPTO_memcmp(given, expect, MAC_LEN) != 0)
        return KG_EINVALID_API_KEY;
    long n = b64url_decode(body, (size_t)(dot - body), payload, sizeof(payload));
    if (n < FIXED_LEN || payload[0] != VERSION)
        return KG_EINVALID_API_KEY;
    size_t at = 1;
    memcpy(out->parent_id, payload + at, KG_KEY_ID_LEN), at += KG_KEY_ID_LEN;
    out->parent_id[KG_KEY_ID_LEN] = '\0';
    out->issued_at = get64(payload + at), at += 8;
    out->expires_at = get64(payload + at), at += 8;
    out->generation = get64(payload + at), at += 8;
    out->scopes = (uint32_t)payload[at] << 24 | (uint32_t)payload[at + 1] << 16 | (uint32_t)payload[at + 2] << 8 |
                  payload[at + 3];
    at += 4;
    size_t allow_len = (size_t)payload[at] << 8 | payload[at + 1];
    at += 2;
    if (allow_len > KG_EPH_ALLOW_MAX || at + allow_len != (size_t)n ||
        !kg_key_id_is_valid(out->parent_id, KG_KEY_ID_LEN))
        return KG_EINVALID_API_KEY;
    memcpy(out->allow, payload + at, allow_len);
    out->allow[allow_len] = '\0';
    return KG_OK;
}
