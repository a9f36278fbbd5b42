/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the token model of SPEC §3: the row that the store persists, the admin API
 * renders and the key index is built from. Policy members that later issues interpret
 * (scopes, allow, limits, budget, ...) travel as canonical JSON text validated by the admin
 * layer, so the store never needs to know their shape.
 */
#ifndef KG_KEYS_TOKEN_H
#define KG_KEYS_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "keys/key_format.h"
#include "keys/key_hash.h"

#define KG_DEFAULT_ORG_ID "org_default" /* the org that owns the config file's objects */
#define KG_DEFAULT_ORG_NAME "default"
#define KG_NAME_MAX 31 /* org, environment and team names/ids fit the index's fixed fields */

typedef enum kg_token_type { KG_TOKEN_ACCESS, KG_TOKEN_GATEWAY, KG_TOKEN_ADMIN, KG_TOKEN__COUNT } kg_token_type_t;

typedef enum kg_token_status {
    KG_STATUS_ACTIVE,
    KG_STATUS_DISABLED,
    KG_STATUS_EXPIRED,
    KG_STATUS_REVOKED
} kg_token_status_t;

/* A string member added here is copied by store/token_stream.c too: list it in string_members. */
typedef struct kg_token {
    char id[KG_KEY_ID_LEN + 1];
    char *org_id;
    char *team_id; /* NULL: none */
    char *name;
    char *description;
    char *environment; /* NULL for admin keys */
    kg_token_type_t type;
    char *purpose; /* NULL for admin keys */
    /* Canonical JSON text of the policy members (NULL: not set). */
    char *scopes;
    char *allow;
    char *allowed_domains;
    char *prompt_modules;
    char *prompt_text;
    char *rate_limits;
    char *budget;
    char *metadata;
    bool enabled;
    bool is_root;       /* the root admin key: also manages orgs */
    bool legacy_gk;     /* minted through /v1/gateway-keys */
    int64_t expires_at; /* 0: never */
    int64_t created_at;
    char *created_by;
    int64_t last_used_at;
    int64_t last_rotated_at;
    int64_t rotations;  /* how many times it was rotated: ephemeral tokens are minted under one */
    int64_t revoked_at; /* 0: not revoked */
    char *revoked_by;
    char prefix[KG_KEY_PREFIX_CHARS + 1];
    char last4[5];
} kg_token_t;

/** One stored secret hash of a token; a token in rotation grace has two. */
typedef struct kg_token_secret {
    uint8_t hash[KG_KEY_HASH_BYTES];
    int64_t expires_at; /* 0: current secret; else the end of its rotation grace */
} kg_token_secret_t;

const char *kg_token_type_name(kg_token_type_t t);
/** Parses "access" | "gateway" | "admin"; returns false otherwise. */
bool kg_token_type_parse(const char *s, kg_token_type_t *out);
const char *kg_token_status_name(kg_token_status_t s);
bool kg_token_status_parse(const char *s, kg_token_status_t *out);

/** The status a client sees at `now` (SPEC §3): revoked, then disabled, then expired. */
kg_token_status_t kg_token_status(const kg_token_t *t, int64_t now);

/** Frees every owned member and zeroes the struct (safe on a zeroed struct). */
void kg_token_dispose(kg_token_t *t);

#endif
