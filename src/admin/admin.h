/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the admin API's semantics (SPEC §6): one entry point that takes a method,
 * path, query and JSON body on behalf of an authenticated actor and returns a status and a
 * JSON body. The HTTP server calls it from its store worker; the CLI calls it directly on a
 * local store. Both therefore validate, audit and feed changes identically.
 */
#ifndef KG_ADMIN_ADMIN_H
#define KG_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "keys/token.h"
#include "store/store.h"

#define KG_ACTOR_CLI_LOCAL "cli:local"

/** Who makes an admin call. */
typedef struct kg_actor {
    char id[KG_KEY_ID_LEN + 1 > 16 ? KG_KEY_ID_LEN + 1 : 16]; /* an admin key's pk id, or "cli:local" */
    char org_id[KG_NAME_MAX + 1];
    bool is_root;
    bool access_key;         /* an access key minting its own ephemeral tokens (only that route) */
    bool old_secret;         /* it authenticated with a secret in rotation grace */
    const char *remote_addr; /* borrowed; NULL for the local CLI */
} kg_actor_t;

typedef struct kg_admin {
    kg_store_t *store;      /* borrowed; used by one thread at a time */
    const kg_config_t *cfg; /* borrowed */
} kg_admin_t;

typedef struct kg_admin_request {
    const char *method;
    const char *path;  /* "/v1/..." (an "/api" prefix already removed), no query */
    const char *query; /* raw query string without '?', or NULL */
    const char *body;
    size_t body_len;
    const kg_actor_t *actor;
    int64_t now;
} kg_admin_request_t;

typedef struct kg_admin_response {
    int status;
    char *body; /* JSON text, heap-allocated: the caller frees it */
} kg_admin_response_t;

/** Whether a change-feed object type is a catalog object (provider, model, agent, prompt_module). */
bool kg__admin_catalog_kind(const char *object_type);

/** True when `path` belongs to the admin API (so the server routes it to the store worker). */
bool kg_admin_path_is_admin(const char *path, size_t len);

/** Handles one admin call. Never fails to fill `res`. */
void kg_admin_handle(kg_admin_t *a, const kg_admin_request_t *req, kg_admin_response_t *res);

/**
 * Creates the default org, syncs the config's environments into it, and when no root admin key
 * exists creates one: its secret is written to root_secret (else root_secret[0] = 0).
 */
kg_err_t kg_admin_bootstrap(kg_admin_t *a, int64_t now, char root_secret[KG_KEY_SECRET_MAX]) KG_MUST_CHECK;

#endif
