/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the key material formats of SPEC §2: public ids (`pk_` + 24 base62) and
 * secrets (`<brand>_<kind>_<R><C>`, R = 32 base62 chars from the OS CSPRNG, C = CRC32(R) in
 * base62 left-padded to 6). Parsing is zero-copy: it returns slices of the caller's buffer.
 */
#ifndef KG_KEYS_KEY_FORMAT_H
#define KG_KEYS_KEY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define KG_KEY_RANDOM_CHARS 32
#define KG_KEY_CHECKSUM_CHARS 6
#define KG_KEY_ID_RANDOM_CHARS 24
#define KG_KEY_ID_LEN (3 + KG_KEY_ID_RANDOM_CHARS) /* "pk_" + 24 */
#define KG_KEY_BRAND_MAX 16
#define KG_KEY_SECRET_MAX 64   /* 16 brand + '_' + 5 kind + '_' + 38 = 61, plus NUL */
#define KG_KEY_PREFIX_CHARS 12 /* the display prefix stored beside the hash */
#define KG_KEY_DEFAULT_BRAND "kg"

typedef enum kg_key_kind {
    KG_KEY_KIND_LIVE,  /* access/gateway key of a live environment */
    KG_KEY_KIND_TEST,  /* access/gateway key of any other environment */
    KG_KEY_KIND_GK,    /* minted by the legacy /v1/gateway-keys surface */
    KG_KEY_KIND_ADMIN, /* admin keys */
    KG_KEY_KIND_EPH,   /* ephemeral tokens (later) */
    KG_KEY_KIND__COUNT
} kg_key_kind_t;

/** A parsed secret: borrowed slices of the buffer given to kg_key_secret_parse(). */
typedef struct kg_key_secret_ref {
    const char *brand;
    size_t brand_len;
    kg_key_kind_t kind;
    const char *random; /* KG_KEY_RANDOM_CHARS chars */
} kg_key_secret_ref_t;

const char *kg_key_kind_name(kg_key_kind_t kind);

/** True when `brand` matches [a-z][a-z0-9]{1,15}. */
bool kg_key_brand_is_valid(const char *brand, size_t len);

/** Writes the 6-char base62 CRC32 (IEEE) of `random[0..len)` into out (no NUL). */
void kg_key_checksum(const char *random, size_t len, char out[KG_KEY_CHECKSUM_CHARS]);

/**
 * Builds a secret from given random chars (deterministic: used by generate and the test
 * vectors). `out` receives a NUL-terminated string; returns its length, or 0 when the brand
 * or the random part is invalid.
 */
size_t kg_key_secret_compose(const char *brand, kg_key_kind_t kind, const char random[KG_KEY_RANDOM_CHARS],
                             char out[KG_KEY_SECRET_MAX]);

/** Builds a fresh secret from the OS CSPRNG. Returns its length, or 0 on failure. */
size_t kg_key_secret_generate(const char *brand, kg_key_kind_t kind, char out[KG_KEY_SECRET_MAX]) KG_MUST_CHECK;

/**
 * Checks shape and checksum of a presented secret without touching any store: any valid brand
 * is accepted (a brand change never invalidates issued keys). Returns KG_OK or
 * KG_EINVALID_API_KEY.
 */
kg_err_t kg_key_secret_parse(const char *s, size_t len, kg_key_secret_ref_t *out) KG_MUST_CHECK;
/** kg_key_secret_parse in two halves: the shape alone (brand, kind, length, alphabet)... */
kg_err_t kg_key_secret_parse_shape(const char *s, size_t len, kg_key_secret_ref_t *out) KG_MUST_CHECK;
/** ...and the checksum of a secret whose shape passed. */
bool kg_key_secret_checksum_ok(const kg_key_secret_ref_t *ref);

/** Writes a fresh public id ("pk_" + 24 base62 + NUL). Returns false if the CSPRNG failed. */
bool kg_key_id_generate(char out[KG_KEY_ID_LEN + 1]) KG_MUST_CHECK;

/** True when s is "pk_" followed by exactly 24 base62 chars. */
bool kg_key_id_is_valid(const char *s, size_t len);

/** A 64-bit hash of an id (FNV-1a), for the tables that find keys by id. */
uint64_t kg_key_id_hash(const char *id);

/** Fills out[0..n) with uniformly random base62 chars from the OS CSPRNG. */
bool kg_random_base62(char *out, size_t n) KG_MUST_CHECK;

#endif
