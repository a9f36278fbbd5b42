/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the authorization decision of SPEC §4 for one call: may this key, on this
 * route, reach this model or agent — and if so, which raw model and provider serve it and
 * whether a policy system message goes in front. The data plane and `keygate explain` both
 * decide through it, so what explain prints is what the gateway does. Every refusal names the
 * rule that made it, without revealing another org's objects.
 */
#ifndef KG_POLICY_POLICY_H
#define KG_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "catalog/catalog.h"
#include "core/err.h"
#include "keys/key_index.h"

typedef enum kg_route_kind {
    KG_ROUTE_CHAT,
    KG_ROUTE_COMPLETIONS,
    KG_ROUTE_EMBEDDINGS,
    KG_ROUTE_MODELS, /* GET /v1/models, /v1/models/{id}, /v1/agents: any active access key */
} kg_route_kind_t;

/** The route of a path ("/v1/chat/completions", ...); false if it is not a data-plane route. */
bool kg_route_parse(const char *path, size_t len, kg_route_kind_t *out);
/** The scope a route needs (0: none beyond being an active access key). */
uint32_t kg_route_scope(kg_route_kind_t route);

typedef struct kg_decision {
    kg_err_t code; /* KG_OK, or the refusal to answer */
    char message[256];
    char rule[192];          /* a refusal's rule, e.g. "allow.models does not list 'gpt-4o'" */
    const kg_model_t *model; /* the raw model that serves the call */
    const kg_agent_t *agent; /* the alias called, or NULL */
    bool prompt;             /* a policy system message goes before the caller's messages */
} kg_decision_t;

/**
 * Decides whether `key` (an access key) may call `route` with model name[0..len). `policy` is
 * the key's compiled policy (read under the index's read lock). Fills *out; returns out->code.
 */
kg_err_t kg_policy_decide(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                          kg_route_kind_t route, const char *name, size_t len, kg_decision_t *out);

/** Words the rule that allowed decision `d` (keygate explain; the request path never needs it). */
void kg_policy_allowed_rule(const kg_decision_t *d, kg_route_kind_t route, const char *name, size_t len, char *buf,
                            size_t cap);

/** Whether a model or agent shows in the key's /v1/models (reachable with some scope it has). */
bool kg_policy_lists_model(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                           const kg_model_t *m);
bool kg_policy_lists_agent(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                           const kg_agent_t *a);

/**
 * Writes the policy system message for an allowed chat call into buf:
 * {"role":"system","content":"<model or agent modules>\n\n<key modules>\n\n<key prompt_text>"}.
 * Returns its length, or 0 if cap is too small (then size it with kg_policy_system_message_len).
 */
size_t kg_policy_system_message(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                                const kg_decision_t *d, char *buf, size_t cap);
size_t kg_policy_system_message_len(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                                    const kg_decision_t *d);

#endif
