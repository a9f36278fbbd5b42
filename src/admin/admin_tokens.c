/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the token routes of SPEC §6 — /v1/tokens and the legacy
 * /v1/gateway-keys surface — and the validation of every key field of SPEC §3. A secret is
 * generated here, hashed at once, put into the reply and wiped; the reply leaves only after
 * the transaction holding its hash has committed.
 */
#include "admin/admin_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "keys/ephemeral.h"
#include "keys/key_hash.h"
#include "keys/key_policy.h"
#include "policy/origin.h"

#define MAX_GRACE_SECONDS (30 * 86400)
#define MAX_POLICY_TEXT (16 * 1024)

/* ==== Scopes, purposes and presets (SPEC §4) ==== */

static const char *const inference_scopes[] = {"inference:chat",   "inference:embed", "inference:transcribe",
                                               "inference:speech", "inference:image", NULL};
static const char *const upload_scopes[] = {"datasets:write", NULL};
static const char *const conversation_scopes[] = {"conversations:write", NULL};

typedef struct purpose {
    const char *name;
    const char *const *scopes;
} purpose_t;

static const purpose_t purposes[] = {
    {"inference", inference_scopes},
    {"upload", upload_scopes},
    {"conversation", conversation_scopes},
};

typedef struct preset {
    const char *name;
    const char *purpose;
    const char *scopes[4];
} preset_t;

static const preset_t presets[] = {
    {"openai-chat", "inference", {"inference:chat"}},
    {"chat-embeddings", "inference", {"inference:chat", "inference:embed"}},
    {"ide-agent", "inference", {"inference:chat", "inference:embed"}},
    {"voice", "inference", {"inference:chat", "inference:transcribe", "inference:speech"}},
    {"image", "inference", {"inference:image"}},
    {"dataset-upload", "upload", {"datasets:write"}},
    {"conversation-app", "conversation", {"conversations:write"}},
};

static const purpose_t *purpose_find(const char *name)
{
    for (size_t i = 0; i < sizeof(purposes) / sizeof(purposes[0]); i++)
        if (strcmp(purposes[i].name, name) == 0)
            return &purposes[i];
    return NULL;
}

static bool scope_in(const char *const *list, const char *s)
{
    for (; *list != NULL; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

/* ==== Field validation ==== */

/* Which fields each token type takes at creation (others are known, but do not apply). */
enum { F_ACCESS = 1, F_GATEWAY = 2, F_ADMIN = 4, F_ALL = 7 };

typedef struct field {
    const char *name;
    int applies;   /* F_* mask */
    bool editable; /* PATCH may change it */
} field_t;

static const field_t fields[] = {
    {"name", F_ALL, true},
    {"description", F_ALL, true},
    {"metadata", F_ALL, true},
    {"expires_at", F_ALL, true},
    {"enabled", F_ALL, true},
    {"team_id", F_ACCESS | F_GATEWAY, true},
    {"environment", F_ACCESS | F_GATEWAY, false},
    {"rate_limits", F_ACCESS | F_GATEWAY, true},
    {"purpose", F_ACCESS, false},
    {"scopes", F_ACCESS, true},
    {"allow", F_ACCESS, true},
    {"allowed_domains", F_ACCESS, true},
    {"prompt_modules", F_ACCESS, true},
    {"prompt_text", F_ACCESS, true},
    {"budget", F_ACCESS, true},
    {"token_type", F_ALL, false},
    {"preset", F_ACCESS, false},
};

/* Output-only members: naming them in a PATCH is an attempt to change something immutable. */
static const char *const read_only[] = {"id",         "object",     "org_id", "status",       "created_at",
                                        "created_by", "prefix",     "last4",  "last_used_at", "last_rotated_at",
                                        "revoked_at", "revoked_by", "usage",  "key",          NULL};

static const field_t *field_find(const char *name)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

static int type_mask(kg_token_type_t t)
{
    return t == KG_TOKEN_ACCESS ? F_ACCESS : t == KG_TOKEN_GATEWAY ? F_GATEWAY : F_ADMIN;
}

static bool valid_text(const json_t *v, size_t min, size_t max)
{
    return json_is_string(v) && json_string_length(v) >= min && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

static kg_err_t check_string_list(const json_t *v, const char *param, size_t max_items, size_t max_len,
                                  bool (*item_ok)(const char *), kg_error_t *err)
{
    size_t i;
    json_t *item;
    if (!json_is_array(v) || json_array_size(v) > max_items)
        return kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' must be a list of at most %zu strings.", param,
                            max_items);
    json_array_foreach (v, i, item) {
        if (!valid_text(item, 1, max_len) || (item_ok != NULL && !item_ok(json_string_value(item))))
            return kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' has an invalid entry at index %zu.", param, i);
    }
    return KG_OK;
}

/* A model/agent allowlist entry: a name, optionally ending in one '*' wildcard. */
static bool allow_entry_ok(const char *s)
{
    const char *star = strchr(s, '*');
    return star == NULL || star[1] == '\0';
}

/* A team's or key's model list: "*" or names/prefixes ending in one '*'. */
kg_err_t kg__check_model_list(const json_t *v, const char *param, kg_error_t *err)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "*") == 0)
        return KG_OK;
    if (check_string_list(v, param, 1024, 128, allow_entry_ok, err) != KG_OK)
        return kg_error_set(err, KG_EINVALID_VALUE, param,
                            "'%s' must be \"*\" or a list of names (a trailing '*' is a wildcard).", param);
    return KG_OK;
}

static kg_err_t check_allow(const json_t *v, kg_error_t *err)
{
    static const char *const kinds[] = {"agents", "models", "datasets", "prompts", NULL};
    const char *k;
    json_t *val;
    char param[48];
    if (!json_is_object(v))
        return kg_error_set(err, KG_EINVALID_VALUE, "allow",
                            "'allow' must be an object with agents, models, datasets or prompts.");
    json_object_foreach ((json_t *)v, k, val) {
        bool known = false;
        for (const char *const *kind = kinds; *kind != NULL; kind++)
            known |= strcmp(*kind, k) == 0;
        snprintf(param, sizeof(param), "allow.%s", k);
        if (!known)
            return kg_error_set(err, KG_EUNKNOWN_PARAMETER, param, "Unknown member '%s' in 'allow'.", k);
        if (json_is_string(val) && strcmp(json_string_value(val), "*") == 0)
            continue;
        kg_err_t rv = check_string_list(val, param, 1024, 128, allow_entry_ok, err);
        if (rv != KG_OK)
            return kg_error_set(err, KG_EINVALID_VALUE, param,
                                "'%s' must be \"*\" or a list of names (a trailing '*' is a wildcard).", param);
    }
    return KG_OK;
}

kg_err_t kg__check_rate_limits(const json_t *v, kg_error_t *err)
{
    static const char *const names[] = {"rpm", "tpm", "rpd", "max_concurrency", NULL};
    const char *k;
    json_t *val;
    char param[48];
    if (!json_is_object(v))
        return kg_error_set(err, KG_EINVALID_VALUE, "rate_limits", "'rate_limits' must be an object.");
    json_object_foreach ((json_t *)v, k, val) {
        bool known = false;
        for (const char *const *n = names; *n != NULL; n++)
            known |= strcmp(*n, k) == 0;
        snprintf(param, sizeof(param), "rate_limits.%s", k);
        if (!known)
            return kg_error_set(err, KG_EUNKNOWN_PARAMETER, param, "Unknown member '%s' in 'rate_limits'.", k);
        if (!json_is_null(val) &&
            (!json_is_integer(val) || json_integer_value(val) < 1 || json_integer_value(val) > 1000000000000LL))
            return kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' must be a positive integer or null.", param);
    }
    return KG_OK;
}

kg_err_t kg__check_budget(const json_t *v, kg_error_t *err)
{
    const char *k;
    json_t *val;
    if (!json_is_object(v))
        return kg_error_set(err, KG_EINVALID_VALUE, "budget", "'budget' must be an object.");
    json_object_foreach ((json_t *)v, k, val) {
        if (strcmp(k, "limit_credits") == 0) {
            if (!json_is_number(val) || json_number_value(val) < 0 || json_number_value(val) > 1e12)
                return kg_error_set(err, KG_EINVALID_VALUE, "budget.limit_credits",
                                    "'budget.limit_credits' must be a number >= 0.");
        } else if (strcmp(k, "period") == 0) {
            const char *p = json_string_value(val);
            if (p == NULL || (strcmp(p, "none") != 0 && strcmp(p, "day") != 0 && strcmp(p, "month") != 0))
                return kg_error_set(err, KG_EINVALID_VALUE, "budget.period",
                                    "'budget.period' must be none, day or month.");
        } else {
            char param[48];
            snprintf(param, sizeof(param), "budget.%s", k);
            return kg_error_set(err, KG_EUNKNOWN_PARAMETER, param, "Unknown member '%s' in 'budget'.", k);
        }
    }
    if (json_object_get(v, "limit_credits") == NULL)
        return kg_error_set(err, KG_EINVALID_VALUE, "budget.limit_credits", "'budget.limit_credits' is required.");
    return KG_OK;
}

static kg_err_t check_scopes(const json_t *v, const purpose_t *purpose, kg_error_t *err)
{
    size_t i, j;
    json_t *item;
    kg_err_t rv = check_string_list(v, "scopes", 16, 64, NULL, err);
    if (rv != KG_OK)
        return rv;
    json_array_foreach (v, i, item) {
        const char *s = json_string_value(item);
        bool known = false;
        for (j = 0; j < sizeof(purposes) / sizeof(purposes[0]); j++)
            known |= scope_in(purposes[j].scopes, s);
        if (!known)
            return kg_error_set(err, KG_EINVALID_VALUE, "scopes", "Unknown scope '%s'.", s);
        if (!scope_in(purpose->scopes, s))
            return kg_error_set(err, KG_EINVALID_VALUE, "scopes", "Scope '%s' is outside the purpose '%s'.", s,
                                purpose->name);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(v, j)), s) == 0)
                return kg_error_set(err, KG_EINVALID_VALUE, "scopes", "Scope '%s' is listed twice.", s);
    }
    return KG_OK;
}

/* A prompt module of the key's own org (config-declared or API-made). */
static bool prompt_module_known(kg__admin_call_t *c, const char *org_id, const char *name)
{
    kg_catalog_row_t r = {0};
    bool found = name != NULL && kg_store_catalog_get(c->a->store, org_id, "prompt_module", name, &r) == KG_OK;
    kg_catalog_row_dispose(&r);
    return found;
}

/*
 * Validates one editable member and stores it into t (replacing the old value).
 * `purpose` bounds the scopes. Returns KG_OK or fills err.
 */
static kg_err_t apply_field(kg__admin_call_t *c, kg_token_t *t, const char *name, json_t *v, const purpose_t *purpose,
                            kg_error_t *err)
{
    bool is_null = json_is_null(v);
    char **text_member = NULL;
    kg_err_t rv = KG_OK;

    if (strcmp(name, "name") == 0) {
        if (!valid_text(v, 1, 128))
            return kg_error_set(err, KG_EINVALID_VALUE, name, "'name' must be a string of 1 to 128 characters.");
        free(t->name), t->name = kg_xstrdup(json_string_value(v));
        return KG_OK;
    }
    if (strcmp(name, "description") == 0 || strcmp(name, "prompt_text") == 0 || strcmp(name, "team_id") == 0) {
        size_t max = strcmp(name, "team_id") == 0       ? KG_NAME_MAX
                     : strcmp(name, "description") == 0 ? 1024
                                                        : MAX_POLICY_TEXT;
        if (!is_null && !valid_text(v, 1, max))
            return kg_error_set(err, KG_EINVALID_VALUE, name, "'%s' must be a string of 1 to %zu characters, or null.",
                                name, max);
        if (strcmp(name, "team_id") == 0 && !is_null) {
            kg_catalog_row_t team = {0};
            bool found = kg_store_catalog_get(c->a->store, t->org_id, "team", json_string_value(v), &team) == KG_OK;
            kg_catalog_row_dispose(&team);
            if (!found)
                return kg_error_set(err, KG_EINVALID_VALUE, name, "'team_id' must name a team of this organization.");
        }
        text_member = strcmp(name, "description") == 0 ? &t->description
                      : strcmp(name, "team_id") == 0   ? &t->team_id
                                                       : &t->prompt_text;
        free(*text_member);
        *text_member = is_null ? NULL : kg_xstrdup(json_string_value(v));
        return KG_OK;
    }
    if (strcmp(name, "enabled") == 0) {
        if (!json_is_boolean(v))
            return kg_error_set(err, KG_EINVALID_VALUE, name, "'enabled' must be true or false.");
        t->enabled = json_is_true(v);
        return KG_OK;
    }
    if (strcmp(name, "expires_at") == 0) {
        if (is_null) {
            t->expires_at = 0;
            return KG_OK;
        }
        if (!json_is_integer(v) || json_integer_value(v) <= c->req->now || json_integer_value(v) > 253402300799LL)
            return kg_error_set(err, KG_EINVALID_VALUE, name,
                                "'expires_at' must be a future time in unix seconds, or null.");
        t->expires_at = json_integer_value(v);
        return KG_OK;
    }
    if (is_null && (strcmp(name, "scopes") == 0 || strcmp(name, "allow") == 0)) {
        /* null would read as "no restriction"; the caller must say "*" to mean everything. */
        return kg_error_set(err, KG_EINVALID_VALUE, name, "'%s' cannot be null.", name);
    } else if (is_null) {
        rv = KG_OK;
    } else if (strcmp(name, "scopes") == 0) {
        rv = check_scopes(v, purpose, err);
    } else if (strcmp(name, "allow") == 0) {
        rv = check_allow(v, err);
    } else if (strcmp(name, "allowed_domains") == 0) {
        /* Stored normalised (lower case, punycode, no trailing dot): what the origin check compares. */
        size_t i;
        json_t *item, *norm = json_array();
        rv = check_string_list(v, name, 256, 253, NULL, err);
        json_array_foreach (v, i, item) {
            char buf[KG_ORIGIN_HOST_MAX + 2];
            if (rv == KG_OK && !kg_origin_pattern_normalize(json_string_value(item), buf, sizeof(buf)))
                rv = kg_error_set(err, KG_EINVALID_VALUE, name,
                                  "'%.64s' is not a host name or a '*.'-prefixed host name.", json_string_value(item));
            else if (rv == KG_OK)
                json_array_append_new(norm, json_string(buf));
        }
        if (rv == KG_OK && json_array_size(norm) == 0)
            json_decref(norm), norm = json_null(); /* [] means "not publishable" */
        if (rv == KG_OK) {
            free(t->allowed_domains);
            t->allowed_domains = kg__json_dump(norm);
        }
        json_decref(norm);
        return rv;
    } else if (strcmp(name, "prompt_modules") == 0) {
        size_t i;
        json_t *item;
        rv = check_string_list(v, name, 64, 128, NULL, err);
        json_array_foreach (v, i, item) {
            if (rv == KG_OK && !prompt_module_known(c, t->org_id, json_string_value(item)))
                rv = kg_error_set(err, KG_EINVALID_VALUE, name, "Unknown prompt module '%.64s'.",
                                  json_string_value(item));
        }
    } else if (strcmp(name, "rate_limits") == 0) {
        rv = kg__check_rate_limits(v, err);
    } else if (strcmp(name, "budget") == 0) {
        rv = kg__check_budget(v, err);
    } else if (strcmp(name, "metadata") == 0) {
        if (!json_is_object(v))
            rv = kg_error_set(err, KG_EINVALID_VALUE, name, "'metadata' must be a JSON object.");
    } else {
        return kg_error_set(err, KG_EUNKNOWN_PARAMETER, name, "Unknown parameter '%s'.", name);
    }
    if (rv != KG_OK)
        return rv;
    text_member = strcmp(name, "scopes") == 0            ? &t->scopes
                  : strcmp(name, "allow") == 0           ? &t->allow
                  : strcmp(name, "allowed_domains") == 0 ? &t->allowed_domains
                  : strcmp(name, "prompt_modules") == 0  ? &t->prompt_modules
                  : strcmp(name, "rate_limits") == 0     ? &t->rate_limits
                  : strcmp(name, "budget") == 0          ? &t->budget
                                                         : &t->metadata;
    char *text = kg__json_dump(v);
    if (text != NULL && strlen(text) > MAX_POLICY_TEXT) {
        free(text);
        return kg_error_set(err, KG_EINVALID_VALUE, name, "'%s' is larger than %d bytes.", name, MAX_POLICY_TEXT);
    }
    free(*text_member);
    *text_member = text;
    return KG_OK;
}

/*
 * A publishable key (one with allowed_domains) authenticates by its public id from a web page:
 * it must be low-privilege by construction (SPEC §2) — an explicit model and agent allowlist,
 * rpm, tpm and a budget.
 */
static kg_err_t check_publishable(const kg_token_t *t, kg_error_t *err)
{
    if (t->allowed_domains == NULL)
        return KG_OK;
    json_t *allow = t->allow != NULL ? json_loads(t->allow, 0, NULL) : NULL;
    json_t *limits = t->rate_limits != NULL ? json_loads(t->rate_limits, 0, NULL) : NULL;
    json_t *budget = t->budget != NULL ? json_loads(t->budget, 0, NULL) : NULL;
    const char *missing = NULL;
    json_t *models = json_object_get(allow, "models"), *agents = json_object_get(allow, "agents");
    if (!json_is_array(models) || !json_is_array(agents))
        missing = "an explicit allow.models and allow.agents (lists, not \"*\")";
    else if (json_array_size(models) + json_array_size(agents) == 0)
        missing = "at least one model or agent in allow";
    else {
        size_t i;
        json_t *item;
        json_array_foreach (models, i, item) {
            if (json_is_string(item) && strcmp(json_string_value(item), "*") == 0)
                missing = "allow.models naming models, not \"*\"";
        }
        json_array_foreach (agents, i, item) {
            if (json_is_string(item) && strcmp(json_string_value(item), "*") == 0)
                missing = "allow.agents naming agents, not \"*\"";
        }
    }
    if (missing == NULL && !json_is_integer(json_object_get(limits, "rpm")))
        missing = "rate_limits.rpm";
    if (missing == NULL && !json_is_integer(json_object_get(limits, "tpm")))
        missing = "rate_limits.tpm";
    if (missing == NULL && !json_is_number(json_object_get(budget, "limit_credits")))
        missing = "a budget (budget.limit_credits)";
    json_decref(allow), json_decref(limits), json_decref(budget);
    if (missing == NULL)
        return KG_OK;
    return kg_error_set(err, KG_EINVALID_VALUE, "allowed_domains",
                        "A publishable key (one with allowed_domains) must be low-privilege: it needs %s.", missing);
}

/* ==== JSON shape ==== */

static json_t *parsed_or_null(const char *text)
{
    json_t *v = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v != NULL ? v : json_null();
}

static json_t *time_or_null(int64_t t)
{
    return t != 0 ? json_integer(t) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

json_t *kg__token_to_json(const kg_token_t *t, int64_t now, kg_store_t *usage_from)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "object", json_string("token"));
    json_object_set_new(o, "name", json_string(t->name != NULL ? t->name : ""));
    json_object_set_new(o, "description", str_or_null(t->description));
    json_object_set_new(o, "org_id", json_string(t->org_id));
    json_object_set_new(o, "team_id", str_or_null(t->team_id));
    json_object_set_new(o, "environment", str_or_null(t->environment));
    json_object_set_new(o, "token_type", json_string(kg_token_type_name(t->type)));
    json_object_set_new(o, "purpose", str_or_null(t->purpose));
    json_object_set_new(o, "scopes", parsed_or_null(t->scopes));
    json_object_set_new(o, "allow", parsed_or_null(t->allow));
    json_object_set_new(o, "allowed_domains", parsed_or_null(t->allowed_domains));
    json_object_set_new(o, "prompt_modules", parsed_or_null(t->prompt_modules));
    json_object_set_new(o, "prompt_text", str_or_null(t->prompt_text));
    json_object_set_new(o, "rate_limits", parsed_or_null(t->rate_limits));
    json_object_set_new(o, "budget", parsed_or_null(t->budget));
    json_object_set_new(o, "metadata", t->metadata != NULL ? parsed_or_null(t->metadata) : json_object());
    json_object_set_new(o, "enabled", json_boolean(t->enabled));
    json_object_set_new(o, "status", json_string(kg_token_status_name(kg_token_status(t, now))));
    json_object_set_new(o, "expires_at", time_or_null(t->expires_at));
    json_object_set_new(o, "created_at", json_integer(t->created_at));
    json_object_set_new(o, "created_by", str_or_null(t->created_by));
    json_object_set_new(o, "last_used_at", time_or_null(t->last_used_at));
    json_object_set_new(o, "last_rotated_at", time_or_null(t->last_rotated_at));
    json_object_set_new(o, "revoked_at", time_or_null(t->revoked_at));
    json_object_set_new(o, "revoked_by", str_or_null(t->revoked_by));
    json_object_set_new(o, "prefix", json_string(t->prefix));
    json_object_set_new(o, "last4", json_string(t->last4));
    if (t->is_root)
        json_object_set_new(o, "root", json_true());
    /* Stored usage: what the usage writer has flushed (it trails the requests by ~50 ms). */
    kg_usage_totals_t u = {0};
    if (usage_from != NULL && kg_store_usage_key_totals(usage_from, t->id, &u) != KG_OK)
        memset(&u, 0, sizeof(u));
    json_object_set_new(o, "usage",
                        json_pack("{s:I, s:I, s:I, s:I, s:f}", "requests", (json_int_t)u.requests, "errors",
                                  (json_int_t)u.errors, "input_tokens", (json_int_t)u.input_tokens, "output_tokens",
                                  (json_int_t)u.output_tokens, "cost", (double)u.cost_micro / 1e6));
    return o;
}

/* What a creation's audit event records: the fields that were set (never the secret). */
static json_t *audit_snapshot(json_t *token)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach (token, k, v) {
        if (json_is_null(v) || strcmp(k, "object") == 0 || strcmp(k, "usage") == 0 || strcmp(k, "status") == 0 ||
            strcmp(k, "created_at") == 0 || strcmp(k, "created_by") == 0 || strcmp(k, "id") == 0)
            continue;
        json_object_set(out, k, v);
    }
    return out;
}

/* ==== Secrets ==== */

/* The kind of secret a token of this type and environment gets (SPEC §2). */
static kg_err_t secret_kind(kg__admin_call_t *c, const kg_token_t *t, kg_key_kind_t *kind)
{
    kg_environment_t env = {0};
    kg_err_t rv;
    if (t->type == KG_TOKEN_ADMIN) {
        *kind = KG_KEY_KIND_ADMIN;
        return KG_OK;
    }
    if (t->legacy_gk) {
        *kind = KG_KEY_KIND_GK;
        return KG_OK;
    }
    rv = kg_store_environment_get(c->a->store, t->org_id, t->environment, &env);
    if (rv == KG_ENOT_FOUND) {
        *kind = KG_KEY_KIND_TEST; /* an environment deleted since: never live */
        return KG_OK;
    }
    if (rv == KG_OK)
        *kind = env.live ? KG_KEY_KIND_LIVE : KG_KEY_KIND_TEST;
    kg_environment_dispose(&env);
    return rv;
}

/* Makes a secret for t: fills prefix/last4 and hash; the secret text is written to secret. */
static kg_err_t make_secret(kg__admin_call_t *c, kg_token_t *t, char secret[KG_KEY_SECRET_MAX],
                            uint8_t hash[KG_KEY_HASH_BYTES])
{
    kg_key_kind_t kind;
    kg_err_t rv = secret_kind(c, t, &kind);
    if (rv != KG_OK)
        return rv;
    size_t len = kg_key_secret_generate(c->a->cfg->brand, kind, secret);
    if (len == 0 || !kg_key_hash(secret, len, hash))
        return KG_EINTERNAL;
    snprintf(t->prefix, sizeof(t->prefix), "%.*s", KG_KEY_PREFIX_CHARS, secret);
    snprintf(t->last4, sizeof(t->last4), "%s", secret + len - 4);
    return KG_OK;
}

/* ==== Create ==== */

static const char *default_environment(kg__admin_call_t *c, const char *org_id, char *buf, size_t cap)
{
    kg_environment_t *envs = NULL;
    size_t n = 0;
    const char *pick = NULL;
    if (kg_store_environment_list(c->a->store, org_id, &envs, &n) == KG_OK) {
        for (size_t i = 0; i < n && pick == NULL; i++)
            if (strcmp(envs[i].name, "production") == 0)
                pick = "production";
        for (size_t i = 0; i < n && pick == NULL; i++)
            if (envs[i].live)
                pick = envs[i].name;
        if (pick == NULL && n > 0)
            pick = envs[0].name;
        if (pick != NULL)
            snprintf(buf, cap, "%s", pick);
    }
    for (size_t i = 0; i < n; i++)
        kg_environment_dispose(&envs[i]);
    free(envs);
    return pick != NULL ? buf : NULL;
}

kg_err_t kg__token_create(kg__admin_call_t *c, const char *org_id, json_t *body, bool legacy_gk, bool is_root,
                          json_t **out, kg_error_t *err)
{
    kg_token_t t = {0};
    char secret[KG_KEY_SECRET_MAX] = {0};
    uint8_t hash[KG_KEY_HASH_BYTES];
    char env_buf[KG_NAME_MAX + 1];
    const purpose_t *purpose = &purposes[0];
    const preset_t *preset = NULL;
    const char *k;
    json_t *v;
    kg_err_t rv;

    *out = NULL;
    /* token_type first: it decides which other fields apply. */
    t.type = legacy_gk ? KG_TOKEN_GATEWAY : KG_TOKEN_ACCESS;
    if ((v = json_object_get(body, "token_type")) != NULL) {
        if (!json_is_string(v) || !kg_token_type_parse(json_string_value(v), &t.type))
            return kg_error_set(err, KG_EINVALID_VALUE, "token_type", "'token_type' must be access, gateway or admin.");
        if (legacy_gk && t.type != KG_TOKEN_GATEWAY)
            return kg_error_set(err, KG_EINVALID_VALUE, "token_type", "/v1/gateway-keys makes gateway keys only.");
    }
    json_object_foreach (body, k, v) {
        const field_t *f = field_find(k);
        if (f == NULL)
            return kg_error_set(err, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
        if (!(f->applies & type_mask(t.type)))
            return kg_error_set(err, KG_EINVALID_VALUE, k, "'%s' does not apply to %s keys.", k,
                                kg_token_type_name(t.type));
    }
    if (json_object_get(body, "name") == NULL)
        return kg_error_set(err, KG_EINVALID_VALUE, "name", "'name' is required.");

    /* Purpose and preset bound the scopes. */
    if ((v = json_object_get(body, "preset")) != NULL) {
        for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]) && json_is_string(v); i++)
            if (strcmp(presets[i].name, json_string_value(v)) == 0)
                preset = &presets[i];
        if (preset == NULL)
            return kg_error_set(err, KG_EINVALID_VALUE, "preset", "Unknown preset.");
        if (json_object_get(body, "scopes") != NULL)
            return kg_error_set(err, KG_EINVALID_VALUE, "preset", "Give either 'preset' or 'scopes', not both.");
        purpose = purpose_find(preset->purpose);
    }
    if ((v = json_object_get(body, "purpose")) != NULL) {
        const purpose_t *p = json_is_string(v) ? purpose_find(json_string_value(v)) : NULL;
        if (p == NULL)
            return kg_error_set(err, KG_EINVALID_VALUE, "purpose",
                                "'purpose' must be inference, upload or conversation.");
        if (preset != NULL && p != purpose)
            return kg_error_set(err, KG_EINVALID_VALUE, "purpose", "The preset '%s' is for the purpose '%s'.",
                                preset->name, preset->purpose);
        purpose = p;
    }

    if (!kg_key_id_generate(t.id))
        return kg_error_set(err, KG_EINTERNAL, NULL, "The random source failed.");
    t.org_id = kg_xstrdup(org_id);
    t.enabled = true;
    t.is_root = is_root;
    t.legacy_gk = legacy_gk;
    t.created_at = c->req->now;
    t.created_by = kg_xstrdup(c->req->actor->id);
    if (t.type != KG_TOKEN_ADMIN) {
        kg_environment_t env = {0};
        v = json_object_get(body, "environment");
        const char *name = v != NULL ? json_string_value(v) : default_environment(c, org_id, env_buf, sizeof(env_buf));
        if (name == NULL || kg_store_environment_get(c->a->store, org_id, name, &env) != KG_OK) {
            rv = kg_error_set(err, KG_EINVALID_VALUE, "environment", "Unknown environment%s%s.", name ? " " : "",
                              name ? name : "");
            goto out;
        }
        kg_environment_dispose(&env);
        t.environment = kg_xstrdup(name);
    }
    if (t.type == KG_TOKEN_ACCESS) {
        json_t *scopes = json_array();
        if (preset != NULL) {
            for (size_t i = 0; i < 4 && preset->scopes[i] != NULL; i++)
                json_array_append_new(scopes, json_string(preset->scopes[i]));
        } else {
            for (const char *const *s = purpose->scopes; *s != NULL; s++)
                json_array_append_new(scopes, json_string(*s));
        }
        t.purpose = kg_xstrdup(purpose->name);
        t.scopes = kg__json_dump(scopes);
        t.allow = kg_xstrdup("{\"agents\":\"*\",\"models\":\"*\",\"datasets\":\"*\",\"prompts\":\"*\"}");
        json_decref(scopes);
    }
    json_object_foreach (body, k, v) {
        if (strcmp(k, "token_type") == 0 || strcmp(k, "preset") == 0 || strcmp(k, "purpose") == 0 ||
            strcmp(k, "environment") == 0)
            continue;
        if ((rv = apply_field(c, &t, k, v, purpose, err)) != KG_OK)
            goto out;
    }
    if ((rv = check_publishable(&t, err)) != KG_OK)
        goto out;
    if (t.type == KG_TOKEN_ACCESS && t.scopes == NULL) {
        rv = kg_error_set(err, KG_EINVALID_VALUE, "scopes", "An access key needs at least its purpose's scopes.");
        goto out;
    }

    if ((rv = make_secret(c, &t, secret, hash)) != KG_OK) {
        kg_error_set(err, rv, NULL, NULL);
        goto out;
    }
    if ((rv = kg_store_token_insert(c->a->store, &t, hash)) != KG_OK) {
        kg_error_set(err, rv, NULL, NULL);
        goto out;
    }
    json_t *obj = kg__token_to_json(&t, c->req->now, c->a->store);
    json_t *audit = audit_snapshot(obj);
    rv = kg__admin_record(c, org_id, "token.created", "token", t.id, audit);
    json_decref(audit);
    if (rv != KG_OK) {
        json_decref(obj);
        kg_error_set(err, rv, NULL, NULL);
        goto out;
    }
    json_object_set_new(obj, "key", json_string(secret));
    *out = obj;
out:
    kg_secret_wipe(secret, sizeof(secret));
    kg_secret_wipe(hash, sizeof(hash));
    kg_token_dispose(&t);
    return rv;
}

/* ==== Ephemeral tokens (SPEC §3) ==== */

/* Appends "<tag>=a,b,c;" for a requested list after checking each entry is within `parent`. */
static bool narrow_list(json_t *v, const kg_allow_list_t *parent, const char *tag, const char *param, char *out,
                        size_t cap, size_t *at, kg_error_t *err)
{
    size_t i;
    json_t *item;
    if (v == NULL)
        return true;
    if (!json_is_array(v) || json_array_size(v) > 64) {
        kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' must be a list of names within the key's own.", param);
        return false;
    }
    *at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, "%s=", tag);
    json_array_foreach (v, i, item) {
        const char *name = json_string_value(item);
        if (name == NULL || strlen(name) > 128 || strpbrk(name, ",;=") != NULL ||
            !kg_allow_list_match(parent, name, strlen(name))) {
            kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' may only narrow the key's own allowlist.", param);
            return false;
        }
        *at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, "%s%s", i > 0 ? "," : "", name);
    }
    *at += (size_t)snprintf(out + *at, *at < cap ? cap - *at : 0, ";");
    if (*at >= cap) {
        kg_error_set(err, KG_EINVALID_VALUE, param, "The narrowed allowlist is too long for a token.");
        return false;
    }
    return true;
}

void kg__admin_mint_ephemeral(kg__admin_call_t *c, const char *parent_id)
{
    kg_token_t t = {0};
    kg_error_t err = {0};
    kg_eph_claims_t claims = {0};
    uint8_t key[KG_EPH_KEY_BYTES];
    char token[KG_EPH_TOKEN_MAX];
    kg_key_policy_t *policy = NULL;
    json_t *body = kg__admin_body(c, true);
    const char *k;
    json_t *v;
    int64_t ttl = 600;

    if (body == NULL)
        return;
    json_object_foreach (body, k, v) {
        if (strcmp(k, "ttl_seconds") != 0 && strcmp(k, "scopes") != 0 && strcmp(k, "allow") != 0) {
            kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
            goto out;
        }
    }
    if ((v = json_object_get(body, "ttl_seconds")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > KG_EPH_MAX_TTL) {
            kg__admin_fail(c, KG_EINVALID_VALUE, "ttl_seconds", "'ttl_seconds' must be 1 to %d.", KG_EPH_MAX_TTL);
            goto out;
        }
        ttl = json_integer_value(v);
    }
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        goto out;
    }
    if (!kg_key_id_is_valid(parent_id, strlen(parent_id)) ||
        kg_store_token_get(c->a->store, parent_id, c->req->actor->org_id, &t) != KG_OK) {
        kg_error_set(&err, KG_ENOT_FOUND, NULL, "No token with that id.");
        goto fail;
    }
    if (t.type != KG_TOKEN_ACCESS || kg_token_status(&t, c->req->now) != KG_STATUS_ACTIVE) {
        kg_error_set(&err, KG_EINVALID_VALUE, NULL, "Ephemeral tokens are minted from an active access key.");
        goto fail;
    }
    policy = kg_key_policy_new(&t);
    claims.scopes = policy->scopes;
    if ((v = json_object_get(body, "scopes")) != NULL) {
        size_t i;
        json_t *item;
        claims.scopes = 0;
        if (!json_is_array(v) || json_array_size(v) == 0) {
            kg_error_set(&err, KG_EINVALID_VALUE, "scopes", "'scopes' must be a non-empty list.");
            goto fail;
        }
        json_array_foreach (v, i, item) {
            uint32_t bit = json_is_string(item) ? kg_scope_parse(json_string_value(item)) : 0;
            if (bit == 0 || (policy->scopes & bit) == 0) {
                kg_error_set(&err, KG_EINVALID_VALUE, "scopes", "'scopes' may only narrow the key's own scopes.");
                goto fail;
            }
            claims.scopes |= bit;
        }
    }
    if ((v = json_object_get(body, "allow")) != NULL) {
        size_t at = 0;
        const char *ak;
        json_t *av;
        if (!json_is_object(v)) {
            kg_error_set(&err, KG_EINVALID_VALUE, "allow", "'allow' must be an object with models and/or agents.");
            goto fail;
        }
        json_object_foreach (v, ak, av) {
            if (strcmp(ak, "models") != 0 && strcmp(ak, "agents") != 0) {
                kg_error_set(&err, KG_EUNKNOWN_PARAMETER, "allow", "Unknown member '%s' in 'allow'.", ak);
                goto fail;
            }
        }
        if (!narrow_list(json_object_get(v, "models"), &policy->models, "m", "allow.models", claims.allow,
                         sizeof(claims.allow), &at, &err) ||
            !narrow_list(json_object_get(v, "agents"), &policy->agents, "a", "allow.agents", claims.allow,
                         sizeof(claims.allow), &at, &err))
            goto fail;
    }
    if (kg_store_meta_get(c->a->store, KG_EPH_META_KEY, key, sizeof(key)) != KG_OK) {
        kg_error_set(&err, KG_ESTORE, NULL, "The deployment's signing key is missing: run keygate init.");
        goto fail;
    }
    snprintf(claims.parent_id, sizeof(claims.parent_id), "%s", t.id);
    claims.issued_at = c->req->now;
    claims.expires_at = c->req->now + ttl;
    /* Minted with the secret of the previous rotation (still in its grace)? Then the token lives
     * under that generation, and dies with that secret's grace. */
    claims.generation = t.rotations - (c->req->actor->old_secret && t.rotations > 0 ? 1 : 0);
    size_t len = kg_eph_mint(c->a->cfg->brand, key, &claims, token, sizeof(token));
    kg_secret_wipe(key, sizeof(key));
    if (len == 0) {
        kg_error_set(&err, KG_EINTERNAL, NULL, "The token could not be made.");
        goto fail;
    }
    /* One audit event per mint, on the parent; never the token itself. */
    json_t *changes =
        json_pack("{s:I, s:I, s:O?, s:O?}", "ttl_seconds", (json_int_t)ttl, "expires_at", (json_int_t)claims.expires_at,
                  "scopes", json_object_get(body, "scopes"), "allow", json_object_get(body, "allow"));
    char *changes_text = json_dumps(changes, JSON_COMPACT);
    kg_audit_event_t event = {.org_id = t.org_id,
                              .actor = (char *)c->req->actor->id,
                              .action = "token.ephemeral_minted",
                              .object_type = "token",
                              .object_id = t.id,
                              .changes = changes_text,
                              .remote_addr = (char *)c->req->actor->remote_addr,
                              .created_at = c->req->now};
    kg_err_t rv = changes_text != NULL ? kg_store_audit_insert(c->a->store, &event) : KG_ENOMEM;
    json_decref(changes);
    free(changes_text);
    if (rv != KG_OK) {
        kg_error_set(&err, rv, NULL, NULL);
        goto fail;
    }
    if (kg__admin_commit(c))
        kg__admin_reply_json(c, 201,
                             json_pack("{s:s, s:s, s:s, s:I, s:I}", "object", "ephemeral_token", "token", token,
                                       "parent_id", t.id, "expires_at", (json_int_t)claims.expires_at, "ttl_seconds",
                                       (json_int_t)ttl));
    kg_secret_wipe(token, sizeof(token));
    goto out;
fail:
    kg_store_rollback(c->a->store);
    kg__admin_reply_error(c, &err);
out:
    kg_key_policy_free(policy);
    kg_token_dispose(&t);
    json_decref(body);
}

/* ==== Routes ==== */

/* The org whose tokens the actor manages. */
static const char *actor_org(kg__admin_call_t *c)
{
    return c->req->actor->org_id;
}

static void route_create(kg__admin_call_t *c)
{
    kg_error_t err = {0};
    json_t *out = NULL;
    json_t *body = kg__admin_body(c, false);
    if (body == NULL)
        return;
    if (kg_store_begin(c->a->store) != KG_OK) {
        json_decref(body);
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    kg_err_t rv = kg__token_create(c, actor_org(c), body, c->legacy_gk, false, &out, &err);
    json_decref(body);
    if (rv != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_reply_error(c, &err);
        return;
    }
    /* The secret leaves only once its hash is durable (synchronous=FULL). */
    if (!kg__admin_commit(c)) {
        json_decref(out);
        return;
    }
    kg__admin_reply_json(c, 201, out);
}

static void route_list(kg__admin_call_t *c)
{
    static const char *const allowed[] = {"type", "status", "environment", "team", "limit", "after", NULL};
    static const char *const allowed_gk[] = {"status", "environment", "team", "limit", "after", NULL};
    char type[16], status[16], env[64], team[64], after[64];
    kg_token_filter_t f = {.org_id = actor_org(c), .type = -1, .status = -1, .now = c->req->now};
    kg_token_t *list = NULL;
    size_t n = 0;
    bool has_more = false;

    if (!kg__admin_query_check(c, c->legacy_gk ? allowed_gk : allowed) || !kg__admin_query_limit(c, &f.limit))
        return;
    if (c->legacy_gk) {
        f.type = KG_TOKEN_GATEWAY;
    } else if (kg__admin_query(c, "type", type, sizeof(type)) != NULL) {
        kg_token_type_t t;
        if (!kg_token_type_parse(type, &t)) {
            kg__admin_fail(c, KG_EINVALID_VALUE, "type", "'type' must be access, gateway or admin.");
            return;
        }
        f.type = (int)t;
    }
    if (kg__admin_query(c, "status", status, sizeof(status)) != NULL) {
        kg_token_status_t s;
        if (!kg_token_status_parse(status, &s)) {
            kg__admin_fail(c, KG_EINVALID_VALUE, "status", "'status' must be active, disabled, expired or revoked.");
            return;
        }
        f.status = (int)s;
    }
    f.environment = kg__admin_query(c, "environment", env, sizeof(env));
    f.team_id = kg__admin_query(c, "team", team, sizeof(team));
    f.after = kg__admin_query(c, "after", after, sizeof(after));
    if (kg_store_token_list(c->a->store, &f, &list, &n, &has_more) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, kg__token_to_json(&list[i], c->req->now, c->a->store));
    kg_token_list_free(list, n);
    kg__admin_reply_json(c, 200, kg__admin_list(data, has_more));
}

/* Loads the token named in the path; a token of another org (or of another type on the legacy
 * surface) is simply not found. Replies and returns false when missing. */
static bool load_token(kg__admin_call_t *c, kg_token_t *t)
{
    const char *id = c->seg[0];
    kg_err_t rv =
        kg_key_id_is_valid(id, strlen(id)) ? kg_store_token_get(c->a->store, id, actor_org(c), t) : KG_ENOT_FOUND;
    if (rv == KG_OK && c->legacy_gk && t->type != KG_TOKEN_GATEWAY) {
        kg_token_dispose(t);
        rv = KG_ENOT_FOUND;
    }
    if (rv == KG_ENOT_FOUND)
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No token with id '%s'.", kg_key_id_is_valid(id, strlen(id)) ? id : "?");
    else if (rv != KG_OK)
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
    return rv == KG_OK;
}

static void route_get(kg__admin_call_t *c)
{
    kg_token_t t;
    if (!load_token(c, &t))
        return;
    kg__admin_reply_json(c, 200, kg__token_to_json(&t, c->req->now, c->a->store));
    kg_token_dispose(&t);
}

/* Writes t, records the audit event with `changes` and replies with t (plus `extra` members). */
static void save_and_reply(kg__admin_call_t *c, kg_token_t *t, const char *action, json_t *changes, json_t *extra)
{
    kg_err_t rv = kg_store_token_update(c->a->store, t);
    if (rv == KG_OK)
        rv = kg__admin_record(c, t->org_id, action, "token", t->id, changes);
    if (rv != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, rv, NULL, NULL);
    } else if (kg__admin_commit(c)) {
        json_t *obj = kg__token_to_json(t, c->req->now, c->a->store);
        if (extra != NULL)
            json_object_update(obj, extra);
        kg__admin_reply_json(c, 200, obj);
    }
    json_decref(changes);
    json_decref(extra);
}

/*
 * The root admin key can be changed only by itself or the local operator: another admin key
 * of its org must not rotate it (and so learn its secret), disable or revoke it.
 */
static bool may_change(kg__admin_call_t *c, const kg_token_t *t)
{
    if (!t->is_root || c->req->actor->is_root)
        return true;
    kg__admin_fail(c, KG_EADMIN_REQUIRED, NULL, "Only the root admin key can change the root admin key.");
    return false;
}

/* Begins the transaction and loads the token inside it, so the read and the write agree. */
static bool begin_with_token(kg__admin_call_t *c, kg_token_t *t)
{
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return false;
    }
    if (!load_token(c, t)) {
        kg_store_rollback(c->a->store);
        return false;
    }
    if (t->revoked_at != 0) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "Token '%s' is revoked; revoked keys cannot be changed.", t->id);
        kg_token_dispose(t);
        return false;
    }
    if (!may_change(c, t)) {
        kg_store_rollback(c->a->store);
        kg_token_dispose(t);
        return false;
    }
    return true;
}

static void route_update(kg__admin_call_t *c)
{
    kg_token_t t;
    kg_error_t err = {0};
    const char *k;
    json_t *v;
    json_t *body = kg__admin_body(c, false);
    if (body == NULL)
        return;
    /* Shape checks first: they need no store access. */
    json_object_foreach (body, k, v) {
        const field_t *f = field_find(k);
        bool ro = false;
        for (const char *const *r = read_only; *r != NULL; r++)
            ro |= strcmp(*r, k) == 0;
        if (ro || (f != NULL && !f->editable)) {
            kg__admin_fail(c, KG_EIMMUTABLE_FIELD, k, "'%s' cannot be changed.", k);
            json_decref(body);
            return;
        }
        if (f == NULL) {
            kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
            json_decref(body);
            return;
        }
    }
    if (!begin_with_token(c, &t)) {
        json_decref(body);
        return;
    }
    json_t *before = kg__token_to_json(&t, c->req->now, NULL);
    const purpose_t *purpose = t.purpose != NULL ? purpose_find(t.purpose) : &purposes[0];
    json_t *changes = json_object();
    json_object_foreach (body, k, v) {
        const field_t *f = field_find(k);
        if (!(f->applies & type_mask(t.type))) {
            kg_error_set(&err, KG_EINVALID_VALUE, k, "'%s' does not apply to %s keys.", k, kg_token_type_name(t.type));
            break;
        }
        if (apply_field(c, &t, k, v, purpose != NULL ? purpose : &purposes[0], &err) != KG_OK)
            break;
    }
    if (err.code == KG_OK)
        check_publishable(&t, &err);
    if (err.code != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_reply_error(c, &err);
        json_decref(changes), json_decref(before), json_decref(body);
        kg_token_dispose(&t);
        return;
    }
    json_t *after = kg__token_to_json(&t, c->req->now, NULL);
    json_object_foreach (body, k, v) {
        json_t *old = json_object_get(before, k), *new = json_object_get(after, k);
        if (!json_equal(old, new))
            json_object_set_new(changes, k, json_pack("{s:O, s:O}", "from", old, "to", new));
    }
    json_decref(before), json_decref(after), json_decref(body);
    save_and_reply(c, &t, "token.updated", changes, NULL);
    kg_token_dispose(&t);
}

static void route_set_enabled(kg__admin_call_t *c, bool enabled)
{
    kg_token_t t;
    json_t *body = kg__admin_body(c, true);
    if (body == NULL)
        return;
    if (json_object_size(body) > 0) {
        kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, json_object_iter_key(json_object_iter(body)),
                       "This route takes no parameters.");
        json_decref(body);
        return;
    }
    json_decref(body);
    if (!begin_with_token(c, &t))
        return;
    json_t *changes = json_pack("{s:{s:b, s:b}}", "enabled", "from", t.enabled, "to", enabled);
    t.enabled = enabled;
    save_and_reply(c, &t, enabled ? "token.enabled" : "token.disabled", changes, NULL);
    kg_token_dispose(&t);
}

static void route_revoke(kg__admin_call_t *c)
{
    kg_token_t t;
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    if (!load_token(c, &t)) {
        kg_store_rollback(c->a->store);
        return;
    }
    if (!may_change(c, &t)) {
        kg_store_rollback(c->a->store);
        kg_token_dispose(&t);
        return;
    }
    if (t.revoked_at != 0) { /* already revoked: nothing changes, nothing is audited */
        kg_store_rollback(c->a->store);
        json_t *obj = kg__token_to_json(&t, c->req->now, c->a->store);
        json_object_set_new(obj, "deleted", json_true());
        kg__admin_reply_json(c, 200, obj);
        kg_token_dispose(&t);
        return;
    }
    t.revoked_at = c->req->now;
    free(t.revoked_by);
    t.revoked_by = kg_xstrdup(c->req->actor->id);
    save_and_reply(c, &t, "token.revoked",
                   json_pack("{s:{s:n, s:I}}", "revoked_at", "from", "to", (json_int_t)t.revoked_at),
                   json_pack("{s:b}", "deleted", 1));
    kg_token_dispose(&t);
}

static void route_rotate(kg__admin_call_t *c)
{
    kg_token_t t;
    char secret[KG_KEY_SECRET_MAX] = {0};
    uint8_t hash[KG_KEY_HASH_BYTES];
    int64_t grace = 0;
    const char *k;
    json_t *v;
    json_t *body = kg__admin_body(c, true);
    if (body == NULL)
        return;
    json_object_foreach (body, k, v) {
        if (strcmp(k, "grace_seconds") != 0) {
            kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
            json_decref(body);
            return;
        }
        if (!json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_GRACE_SECONDS)) {
            kg__admin_fail(c, KG_EINVALID_VALUE, k, "'grace_seconds' must be an integer from 0 to %d.",
                           MAX_GRACE_SECONDS);
            json_decref(body);
            return;
        }
        grace = json_is_integer(v) ? json_integer_value(v) : 0;
    }
    json_decref(body);
    if (!begin_with_token(c, &t))
        return;
    char old_prefix[sizeof(t.prefix)], old_last4[sizeof(t.last4)];
    memcpy(old_prefix, t.prefix, sizeof(old_prefix));
    memcpy(old_last4, t.last4, sizeof(old_last4));
    kg_err_t rv = make_secret(c, &t, secret, hash);
    if (rv == KG_OK)
        rv = kg_store_token_rotate(c->a->store, t.id, hash, c->req->now, grace > 0 ? c->req->now + grace : 0);
    kg_secret_wipe(hash, sizeof(hash));
    if (rv != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, rv, NULL, NULL);
        kg_secret_wipe(secret, sizeof(secret));
        kg_token_dispose(&t);
        return;
    }
    t.last_rotated_at = c->req->now;
    t.rotations++;
    json_t *changes = json_pack("{s:I, s:{s:s, s:s}, s:{s:s, s:s}}", "grace_seconds", (json_int_t)grace, "prefix",
                                "from", old_prefix, "to", t.prefix, "last4", "from", old_last4, "to", t.last4);
    json_t *extra = json_pack("{s:s, s:o}", "key", secret, "grace_until",
                              grace > 0 ? json_integer(c->req->now + grace) : json_null());
    kg_secret_wipe(secret, sizeof(secret));
    save_and_reply(c, &t, "token.rotated", changes, extra);
    kg_token_dispose(&t);
}

void kg__admin_tokens(kg__admin_call_t *c)
{
    const char *m = c->req->method;
    bool post = strcmp(m, "POST") == 0, get = strcmp(m, "GET") == 0;

    if (c->n_seg == 0) {
        if (post)
            route_create(c);
        else if (get)
            route_list(c);
        else
            kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Use GET or POST on this route.");
        return;
    }
    if (c->n_seg == 1) {
        if (get)
            route_get(c);
        else if (strcmp(m, "PATCH") == 0 && !c->legacy_gk)
            route_update(c);
        else if (strcmp(m, "DELETE") == 0)
            route_revoke(c);
        else
            kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Method %s is not allowed on this route.", m);
        return;
    }
    if (c->n_seg == 2) {
        const char *verb = c->seg[1];
        bool known = strcmp(verb, "rotate") == 0 ||
                     (!c->legacy_gk &&
                      (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0 || strcmp(verb, "ephemeral") == 0));
        if (!known)
            goto not_found;
        if (!post) {
            kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Use POST on this route.");
            return;
        }
        if (strcmp(verb, "rotate") == 0)
            route_rotate(c);
        else if (strcmp(verb, "ephemeral") == 0)
            kg__admin_mint_ephemeral(c, c->seg[0]);
        else
            route_set_enabled(c, strcmp(verb, "enable") == 0);
        return;
    }
not_found:
    kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", m, c->req->path);
}
