/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns ephemeral tokens (SPEC §3): short-lived, stateless credentials a backend mints
 * for a browser. A token is `<brand>_eph_<payload>.<mac>` (base64url), the payload carrying the
 * parent key's id, the issue and expiry times, the parent's rotation generation and the
 * narrowing (scopes, allowlists); the mac is HMAC-SHA256 under the deployment's secret, so a
 * token is verified without any store access and cannot be widened.
 */
#ifndef KG_KEYS_EPHEMERAL_H
#define KG_KEYS_EPHEMERAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "keys/key_format.h"

#define KG_EPH_KEY_BYTES 32
#define KG_EPH_MAX_TTL 3600
#define KG_EPH_ALLOW_MAX 1024 /* the narrowing allowlist, as compact JSON */
#define KG_EPH_TOKEN_MAX 2048
#define KG_EPH_META_KEY "ephemeral_signing_key" /* where the store keeps the deployment's key */

typedef struct kg_eph_claims {
    char parent_id[KG_KEY_ID_LEN + 1];
    int64_t issued_at;
    int64_t expires_at;
    int64_t generation;               /* the parent's rotation count when minted (0: never rotated) */
    uint32_t scopes;                  /* bit set of kg_scope_t */
    char allow[KG_EPH_ALLOW_MAX + 1]; /* {"models":[...],"agents":[...]} or "" (the parent's) */
} kg_eph_claims_t;

/** Writes a signed token for `c` into out; returns its length, or 0 if it does not fit. */
size_t kg_eph_mint(const char *brand, const uint8_t key[KG_EPH_KEY_BYTES], const kg_eph_claims_t *c, char *out,
                   size_t cap);

/** Whether s looks like an ephemeral token (`<brand>_eph_` with a valid brand). */
bool kg_eph_looks_like(const char *s, size_t len);

/**
 * Checks a token's signature (constant time) and decodes its claims; the caller checks expiry
 * and the parent. KG_EINVALID_API_KEY for anything malformed or tampered with. No allocation.
 */
kg_err_t kg_eph_verify(const char *s, size_t len, const uint8_t key[KG_EPH_KEY_BYTES],
                       kg_eph_claims_t *out) KG_MUST_CHECK;

#endif
