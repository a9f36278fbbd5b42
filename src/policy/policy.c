/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the decision of policy.h. Order of the checks (each refusal names its
 * rule): the route's scope; the name's existence in the key's org (404 model_not_found); the
 * key's allowlist (403 model_not_allowed); an agent's environments (403
 * environment_mismatch); prompt policy on /v1/completions (403 policy_unsupported_route);
 * the provider's availability (503 provider_unavailable).
 */
#include "policy/policy.h"

#include <stdio.h>
#include <string.h>

bool kg_route_parse(const char *path, size_t len, kg_route_kind_t *out)
{
    static const struct {
        const char *path;
        kg_route_kind_t route;
    } routes[] = {
        {"/v1/chat/completions", KG_ROUTE_CHAT}, {"/v1/completions", KG_ROUTE_COMPLETIONS},
        {"/v1/embeddings", KG_ROUTE_EMBEDDINGS}, {"/v1/models", KG_ROUTE_MODELS},
        {"/v1/agents", KG_ROUTE_MODELS},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strlen(routes[i].path) == len && memcmp(routes[i].path, path, len) == 0)
            return *out = routes[i].route, true;
    if (len > 11 && memcmp(path, "/v1/models/", 11) == 0)
        return *out = KG_ROUTE_MODELS, true;
    return false;
}

uint32_t kg_route_scope(kg_route_kind_t route)
{
    switch (route) {
    case KG_ROUTE_CHAT:
    case KG_ROUTE_COMPLETIONS: return KG_SCOPE_CHAT;
    case KG_ROUTE_EMBEDDINGS: return KG_SCOPE_EMBED;
    case KG_ROUTE_MODELS: return 0;
    }
    return 0;
}

/* How much of a caller's name a message quotes: at most 128 bytes, never half a character. */
static int shown_len(const char *s, size_t len)
{
    size_t n = len > 128 ? 128 : len;
    while (n > 0 && n < len && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return (int)n;
}

static kg_err_t refuse(kg_decision_t *d, kg_err_t code, const char *rule, const char *message)
{
    d->code = code;
    snprintf(d->rule, sizeof(d->rule), "%s", rule);
    snprintf(d->message, sizeof(d->message), "%s", message);
    return code;
}

static bool has_prompt(const kg_key_policy_t *policy, const kg_decision_t *d)
{
    return d->model->prompt_json != NULL || (d->agent != NULL && d->agent->prompt_json != NULL) ||
           kg_key_policy_has_prompt(policy);
}

/* A team's tier may narrow the models its keys reach (its `models`, names or prefixes). */
static const kg_team_t *team_refusing(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_model_t *m)
{
    const kg_team_t *team = key->team_id[0] != '\0' ? kg_catalog_team(cat, key->org_id, key->team_id) : NULL;
    return team != NULL && !kg_allow_list_match(&team->models, m->name, strlen(m->name)) ? team : NULL;
}

kg_err_t kg_policy_decide(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                          kg_route_kind_t route, const char *name, size_t len, kg_decision_t *d)
{
    char rule[192], msg[256];
    int shown = shown_len(name, len);
    uint32_t need = kg_route_scope(route);

    /* Not a memset: the rule and message buffers are written only by a refusal. */
    d->code = KG_OK, d->model = NULL, d->agent = NULL, d->prompt = false;
    d->rule[0] = d->message[0] = '\0';
#ifndef KG_BREAK_RULE_SCOPE
    if (need != 0 && (policy->scopes & need) == 0) {
        snprintf(rule, sizeof(rule), "scopes: the key lacks %s", kg_scope_name((kg_scope_t)need));
        snprintf(msg, sizeof(msg), "This key may not call this route: it lacks the scope %s.",
                 kg_scope_name((kg_scope_t)need));
        return refuse(d, KG_EINSUFFICIENT_SCOPE, rule, msg);
    }
#endif
    d->model = kg_catalog_model(cat, key->org_id, name, len);
    if (d->model == NULL) {
        d->agent = kg_catalog_agent(cat, key->org_id, name, len);
        if (d->agent == NULL || d->agent->model == NULL) {
            snprintf(rule, sizeof(rule), "catalog: no model or agent '%.*s' in the key's organization", shown, name);
            snprintf(msg, sizeof(msg), "The model '%.*s' does not exist or you do not have access to it.", shown, name);
            return refuse(d, KG_EMODEL_NOT_FOUND, rule, msg);
        }
#ifndef KG_BREAK_RULE_ALLOWLIST
        if (!kg_allow_list_match(&policy->agents, name, len)) {
            snprintf(rule, sizeof(rule), "allow.agents does not list '%.*s'", shown, name);
            snprintf(msg, sizeof(msg), "This key may not use the agent '%.*s' (%s).", shown, name, rule);
            return refuse(d, KG_EMODEL_NOT_ALLOWED, rule, msg);
        }
#endif
#ifndef KG_BREAK_RULE_ENVIRONMENT
        if (!kg_agent_published_to(d->agent, key->environment)) {
            snprintf(rule, sizeof(rule), "agent '%.*s' is not published to environment '%s'", shown, name,
                     key->environment);
            snprintf(msg, sizeof(msg), "The agent '%.*s' is not published to this key's environment '%s'.", shown, name,
                     key->environment);
            return refuse(d, KG_EENVIRONMENT_MISMATCH, rule, msg);
        }
#endif
        d->model = d->agent->model;
    }
#ifndef KG_BREAK_RULE_ALLOWLIST
    else if (!kg_allow_list_match(&policy->models, name, len)) {
        snprintf(rule, sizeof(rule), "allow.models does not list '%.*s'", shown, name);
        snprintf(msg, sizeof(msg), "This key may not use the model '%.*s' (%s).", shown, name, rule);
        return refuse(d, KG_EMODEL_NOT_ALLOWED, rule, msg);
    }
#endif
    const kg_team_t *team = team_refusing(cat, key, d->model);
    if (team != NULL) {
        snprintf(rule, sizeof(rule), "team '%s' (tier %s): its models do not list '%s'", team->name, team->tier,
                 d->model->name);
        snprintf(msg, sizeof(msg), "The team '%s' (tier %s) may not use the model '%.*s'.", team->name, team->tier,
                 shown, name);
        return refuse(d, KG_EMODEL_NOT_ALLOWED, rule, msg);
    }
    d->prompt = route == KG_ROUTE_CHAT && has_prompt(policy, d);
    for (size_t i = 0; d->prompt && i < policy->n_prompt_modules; i++) {
        /* A guardrail that no longer exists must not silently stop applying: fail closed. */
        if (kg_catalog_prompt_module(cat, key->org_id, policy->prompt_modules[i]) == NULL) {
            snprintf(rule, sizeof(rule), "the key's prompt module '%.64s' no longer exists", policy->prompt_modules[i]);
            snprintf(msg, sizeof(msg),
                     "This key's prompt module '%.64s' no longer exists; an administrator must "
                     "update the key.",
                     policy->prompt_modules[i]);
            return refuse(d, KG_EINTERNAL, rule, msg);
        }
    }
    if (route == KG_ROUTE_COMPLETIONS && has_prompt(policy, d)) {
        snprintf(rule, sizeof(rule), "prompt policy applies to '%.*s' and cannot be applied on /v1/completions", shown,
                 name);
        snprintf(msg, sizeof(msg),
                 "Prompt policy applies to this call and cannot be applied on /v1/completions; use "
                 "/v1/chat/completions.");
        return refuse(d, KG_EPOLICY_UNSUPPORTED_ROUTE, rule, msg);
    }
    if (!d->model->provider->available) {
        snprintf(rule, sizeof(rule), "provider '%s' has no credential configured", d->model->provider->name);
        snprintf(msg, sizeof(msg), "The provider of model '%.*s' is unavailable: its credential is not configured.",
                 shown, name);
        return refuse(d, KG_EPROVIDER_UNAVAILABLE, rule, msg);
    }
    d->code = KG_OK; /* the rule that allowed it is worded on demand: kg_policy_allowed_rule */
    return KG_OK;
}

void kg_policy_allowed_rule(const kg_decision_t *d, kg_route_kind_t route, const char *name, size_t len, char *buf,
                            size_t cap)
{
    uint32_t need = kg_route_scope(route);
    snprintf(buf, cap, "allowed: scope %s; %s '%.*s' in allow.%s%s",
             need != 0 ? kg_scope_name((kg_scope_t)need) : "(none needed)", d->agent != NULL ? "agent" : "model",
             shown_len(name, len), name, d->agent != NULL ? "agents" : "models",
             d->prompt ? "; policy system message inserted" : "");
}

bool kg_policy_lists_model(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                           const kg_model_t *m)
{
    return kg_allow_list_match(&policy->models, m->name, strlen(m->name)) && team_refusing(cat, key, m) == NULL;
}

bool kg_policy_lists_agent(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                           const kg_agent_t *a)
{
    return a->model != NULL && kg_allow_list_match(&policy->agents, a->name, strlen(a->name)) &&
           kg_agent_published_to(a, key->environment) && team_refusing(cat, key, a->model) == NULL;
}

/* Calls emit for each piece of the system message's content, in SPEC §4's order. */
static size_t build(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                    const kg_decision_t *d, char *buf, size_t cap)
{
    static const char head[] = "{\"role\":\"system\",\"content\":\"", tail[] = "\"}", sep[] = "\\n\\n";
    const char *pieces[64];
    size_t n = 0, at = 0, total;
    /* An agent's text already holds its raw model's modules first (catalog.c), each once. */
    const char *target = d->agent != NULL ? d->agent->prompt_json : d->model->prompt_json;
    if (target != NULL)
        pieces[n++] = target;
    for (size_t i = 0; i < policy->n_prompt_modules && n < 62; i++) {
        const kg_prompt_module_t *m = kg_catalog_prompt_module(cat, key->org_id, policy->prompt_modules[i]);
        if (m != NULL)
            pieces[n++] = m->text_json;
    }
    if (policy->prompt_text_json != NULL)
        pieces[n++] = policy->prompt_text_json;
    total = sizeof(head) - 1 + sizeof(tail) - 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(pieces[i]) + (i > 0 ? sizeof(sep) - 1 : 0);
    if (buf == NULL || cap < total)
        return buf == NULL ? total : 0;
    memcpy(buf + at, head, sizeof(head) - 1), at += sizeof(head) - 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            memcpy(buf + at, sep, sizeof(sep) - 1), at += sizeof(sep) - 1;
        memcpy(buf + at, pieces[i], strlen(pieces[i])), at += strlen(pieces[i]);
    }
    memcpy(buf + at, tail, sizeof(tail) - 1), at += sizeof(tail) - 1;
    return at;
}

size_t kg_policy_system_message_len(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                                    const kg_decision_t *d)
{
    return build(cat, key, policy, d, NULL, 0);
}

size_t kg_policy_system_message(const kg_catalog_t *cat, const kg_key_view_t *key, const kg_key_policy_t *policy,
                                const kg_decision_t *d, char *buf, size_t cap)
{
    return build(cat, key, policy, d, buf, cap);
}
