/* SPDX-License-Identifier: Apache-2.0
 *
 * Private to src/admin/: the pieces the route handlers share — JSON replies, strict body
 * parsing, query parameters, audit + change-feed recording, and the token JSON shape.
 */
#ifndef KG_ADMIN_ADMIN_INTERNAL_H
#define KG_ADMIN_ADMIN_INTERNAL_H

#include <jansson.h>

#include "admin/admin.h"
#include "core/err.h"

/* A route handler: the path segments after the resource name are in seg[0..n_seg). */
typedef struct kg__admin_call {
    kg_admin_t *a;
    const kg_admin_request_t *req;
    kg_admin_response_t *res;
    const char *seg[4];
    size_t n_seg;
    bool legacy_gk; /* reached through /v1/gateway-keys */
} kg__admin_call_t;

/* ---- replies (admin_json.c) ---- */
void kg__admin_reply_json(kg__admin_call_t *c, int status, json_t *body /* takes ownership */);
void kg__admin_reply_error(kg__admin_call_t *c, const kg_error_t *err);
void kg__admin_fail(kg__admin_call_t *c, kg_err_t code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
json_t *kg__admin_list(json_t *data /* takes ownership */, bool has_more);

/** Parses the body as one JSON object (duplicate keys refused); NULL after replying 400. */
json_t *kg__admin_body(kg__admin_call_t *c, bool empty_ok);

/** Query parameter `name` (percent-decoded into buf), or NULL. */
const char *kg__admin_query(const kg__admin_call_t *c, const char *name, char *buf, size_t cap);
/** Refuses query parameters outside `allowed` (NULL-terminated) with unknown_parameter. */
bool kg__admin_query_check(kg__admin_call_t *c, const char *const *allowed);
/** Reads ?limit= (1..100, default 20); false after replying 400. */
bool kg__admin_query_limit(kg__admin_call_t *c, size_t *out);
/** Reads an integer query parameter (absent: *out = 0); false after replying 400. */
bool kg__admin_query_int(kg__admin_call_t *c, const char *name, int64_t *out);

/**
 * Records an audit event and a change-feed row for `object_id`, inside the caller's transaction.
 * `changes` is borrowed (NULL: {}).
 */
kg_err_t kg__admin_record(kg__admin_call_t *c, const char *org_id, const char *action, const char *object_type,
                          const char *object_id, json_t *changes) KG_MUST_CHECK;

/** Runs the commit and replies 503 on failure; true when committed. */
bool kg__admin_commit(kg__admin_call_t *c);

/* ---- token JSON (admin_tokens.c) ---- */
json_t *kg__token_to_json(const kg_token_t *t, int64_t now, kg_store_t *usage_from /* NULL: zeros */);

/* ---- route groups ---- */
void kg__admin_tokens(kg__admin_call_t *c);
void kg__admin_orgs(kg__admin_call_t *c);
void kg__admin_environments(kg__admin_call_t *c);
void kg__admin_audit(kg__admin_call_t *c);
void kg__admin_usage(kg__admin_call_t *c);
/** Mints an ephemeral token of parent_id (POST /v1/tokens/{id}/ephemeral, /v1/ephemeral-tokens). */
void kg__admin_mint_ephemeral(kg__admin_call_t *c, const char *parent_id);
/** /v1/admin/{providers,models,agents,prompt-modules}; `resource` is the route segment. */
void kg__admin_catalog(kg__admin_call_t *c, const char *resource);
/* Shared by keys and teams (admin_tokens.c): `rate_limits`, `budget`, and a model list. */
kg_err_t kg__check_rate_limits(const json_t *v, kg_error_t *err) KG_MUST_CHECK;
kg_err_t kg__check_budget(const json_t *v, kg_error_t *err) KG_MUST_CHECK;
kg_err_t kg__check_model_list(const json_t *v, const char *param, kg_error_t *err) KG_MUST_CHECK;
/** Writes the config file's catalog into org `default` (source "config"), inside a transaction. */
kg_err_t kg__admin_catalog_sync_config(kg_admin_t *a, int64_t now) KG_MUST_CHECK;

/** Creates a token of org `org_id` (shared by /v1/tokens and org creation); see admin_tokens.c. */
kg_err_t kg__token_create(kg__admin_call_t *c, const char *org_id, json_t *body, bool legacy_gk, bool is_root,
                          json_t **out, kg_error_t *err) KG_MUST_CHECK;

/** The bounded, validated JSON text of a policy member, or NULL when absent/null. */
char *kg__json_dump(const json_t *v);

#endif
