/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the catalog routes of SPEC §6 — /v1/admin/{providers,models,agents,
 * prompt-modules} — and the sync of the config file's catalog into the store. Objects live
 * per org; the config's belong to org `default`, are marked `source: config` and are
 * read-only here. An API-made provider may use only a credential the config grants to its org
 * and may not target a loopback, link-local or private address (checked after resolving the
 * host) unless the config allows it.
 */
#include "admin/admin_internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "core/alloc.h"

#define MAX_PROVIDERS_PER_ORG 100 /* each distinct upstream costs pools and TLS contexts */

typedef struct kind {
    const char *path; /* the route's segment */
    const char *name; /* stored kind, audit object type */
} kind_t;

static const kind_t kinds[] = {
    {"providers", "provider"},           {"models", "model"}, {"agents", "agent"},
    {"prompt-modules", "prompt_module"}, {"teams", "team"},
};

bool kg__admin_catalog_kind(const char *object_type)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].name, object_type) == 0)
            return true;
    return false;
}

/* ==== Names ==== */

static bool name_chars(const char *s, size_t max, const char *extra, bool upper)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z') ||
              strchr(extra, c) != NULL))
            return false;
    }
    return true;
}

static bool valid_object_name(const char *kind, const char *s)
{
    if (strcmp(kind, "provider") == 0)
        return name_chars(s, KG_NAME_MAX, "_-", false);
    if (strcmp(kind, "prompt_module") == 0)
        return name_chars(s, 64, "_-", false);
    if (strcmp(kind, "team") == 0)
        return name_chars(s, KG_NAME_MAX, "_-", false); /* a key's team_id names it */
    return name_chars(s, 128, "._:/@+-", true);         /* models and agents: the characters model ids use */
}

/* ==== Address policy for API-made providers ==== */

static bool private_v4(uint32_t a)
{
    return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 || (a >> 20) == (172u << 4 | 1) ||
           (a >> 16) == (192u << 8 | 168) || (a >> 16) == (169u << 8 | 254) || (a >> 22) == (100u << 2 | 1) ||
           (a >> 28) == 14 || (a >> 28) == 15; /* loopback, private, this-net, CGNAT, multicast, reserved */
}

static bool private_addr(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return private_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        bool zero = true;
        for (int i = 0; i < 15; i++)
            zero &= b[i] == 0;
        if (zero) /* :: and ::1 */
            return true;
        static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        bool compat = true; /* ::a.b.c.d, IPv4-compatible (deprecated, still routable by some stacks) */
        for (int i = 0; i < 12; i++)
            compat &= b[i] == 0;
        /* Forms that carry an IPv4 address inside: judge that address. */
        if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || compat)
            return private_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
        if (b[0] == 0x20 && b[1] == 0x02) /* 6to4: 2002:AABB:CCDD:: */
            return private_v4((uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5]);
        return b[0] == 0xff || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
    }
    return true;
}

/* Refuses a base_url whose host resolves to a non-public address (every address is checked). */
static kg_err_t check_upstream_address(kg__admin_call_t *c, const char *url, kg_error_t *err)
{
    char port[8];
    kg_base_url_t u;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!kg_base_url_parse(url, &u))
        return kg_error_set(err, KG_EINVALID_VALUE, "base_url",
                            "'base_url' must be http(s)://host[:port][/path] (no credentials, query or spaces).");
    snprintf(port, sizeof(port), "%u", (unsigned)u.port);
    const char *host = u.host;
    if (c->a->cfg->allow_private_upstreams)
        return KG_OK;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return kg_error_set(err, KG_EINVALID_VALUE, "base_url", "The host of 'base_url' does not resolve.");
    kg_err_t rv = KG_OK;
    for (struct addrinfo *ai = res; ai != NULL && rv == KG_OK; ai = ai->ai_next)
        if (private_addr(ai->ai_addr))
            rv = kg_error_set(err, KG_EINVALID_VALUE, "base_url",
                              "'base_url' resolves to a loopback, link-local or private address, which the gateway's "
                              "configuration does not allow for API-made providers.");
    freeaddrinfo(res);
    return rv;
}

/* ==== Specs ==== */

static size_t count_kind(kg__admin_call_t *c, const char *org_id, const char *kind)
{
    kg_catalog_row_t *rows = NULL;
    size_t n = 0;
    if (kg_store_catalog_list(c->a->store, org_id, kind, &rows, &n) != KG_OK)
        return SIZE_MAX;
    kg_catalog_rows_free(rows, n);
    return n;
}

static const char *org_name_of(kg__admin_call_t *c, const char *org_id, char *buf, size_t cap)
{
    kg_org_t o = {0};
    buf[0] = '\0';
    if (kg_store_org_get(c->a->store, org_id, &o) == KG_OK)
        snprintf(buf, cap, "%s", o.name);
    kg_org_dispose(&o);
    return buf;
}

static bool exists(kg__admin_call_t *c, const char *org_id, const char *kind, const char *name)
{
    kg_catalog_row_t r = {0};
    bool found = kg_store_catalog_get(c->a->store, org_id, kind, name, &r) == KG_OK;
    kg_catalog_row_dispose(&r);
    return found;
}

static kg_err_t check_names(kg__admin_call_t *c, const char *org_id, json_t *v, const char *kind, const char *param,
                            kg_error_t *err)
{
    size_t i;
    json_t *item;
    if (!json_is_array(v) || json_array_size(v) > 64)
        return kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' must be a list of names.", param);
    json_array_foreach (v, i, item) {
        const char *n = json_string_value(item);
        bool ok = n != NULL;
        if (ok && strcmp(kind, "environment") == 0) {
            kg_environment_t e = {0};
            ok = kg_store_environment_get(c->a->store, org_id, n, &e) == KG_OK;
            kg_environment_dispose(&e);
        } else if (ok) {
            ok = exists(c, org_id, kind, n);
        }
        if (!ok)
            return kg_error_set(err, KG_EINVALID_VALUE, param, "'%s' names something that does not exist: '%.64s'.",
                                param, n != NULL ? n : "?");
    }
    return KG_OK;
}

/*
 * Validates body over `base` (the current spec on PATCH, an empty object on create) and writes
 * the merged spec into *out. Members: see the file header of each kind in docs/decisions.md.
 */
static kg_err_t build_spec(kg__admin_call_t *c, const char *org_id, const char *kind, json_t *body, json_t *base,
                           json_t **out, kg_error_t *err)
{
    json_t *spec = json_deep_copy(base);
    const char *k;
    json_t *v;
    kg_err_t rv = KG_OK;

    json_object_foreach (body, k, v) {
        if (strcmp(k, "name") == 0)
            continue;
        bool known = true;
        if (strcmp(kind, "provider") == 0) {
            if (strcmp(k, "base_url") == 0) {
                if (!json_is_string(v) || json_string_length(v) > 2048)
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'base_url' must be a URL.");
                else
                    rv = check_upstream_address(c, json_string_value(v), err);
            } else if (strcmp(k, "credential") == 0) {
                char org[64];
                if (!json_is_null(v) &&
                    (!json_is_string(v) || !kg_config_credential_granted(c->a->cfg, json_string_value(v),
                                                                         org_name_of(c, org_id, org, sizeof(org)))))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k,
                                      "'credential' must name a credential the configuration grants to this "
                                      "organization.");
            } else if (strcmp(k, "stream_usage") == 0) {
                if (!json_is_boolean(v))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'stream_usage' must be true or false.");
            } else if (strcmp(k, "forward_identity") == 0) {
                if (!json_is_boolean(v))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'forward_identity' must be true or false.");
            } else if (strcmp(k, "type") == 0) {
                const char *t = json_string_value(v);
                if (t == NULL || (strcmp(t, "openai") != 0 && strcmp(t, "mock") != 0))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'type' must be openai or mock.");
            } else {
                known = false;
            }
        } else if (strcmp(kind, "model") == 0) {
            if (strcmp(k, "provider") == 0) {
                if (!json_is_string(v) || !exists(c, org_id, "provider", json_string_value(v)))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k,
                                      "'provider' must name a provider of this organization.");
            } else if (strcmp(k, "upstream_model") == 0) {
                if (!json_is_string(v) || !valid_object_name("model", json_string_value(v)))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'upstream_model' must be a model name.");
            } else if (strcmp(k, "input") == 0 || strcmp(k, "output") == 0) {
                if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e6)
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'%s' must be a price >= 0 per 1M tokens.", k);
            } else if (strcmp(k, "prompt_modules") == 0) {
                rv = check_names(c, org_id, v, "prompt_module", k, err);
            } else {
                known = false;
            }
        } else if (strcmp(kind, "agent") == 0) {
            if (strcmp(k, "model") == 0) {
                if (!json_is_string(v) || !exists(c, org_id, "model", json_string_value(v)))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'model' must name a raw model of this organization.");
            } else if (strcmp(k, "prompt_modules") == 0) {
                rv = check_names(c, org_id, v, "prompt_module", k, err);
            } else if (strcmp(k, "environments") == 0) {
                rv = check_names(c, org_id, v, "environment", k, err);
            } else {
                known = false;
            }
        } else if (strcmp(kind, "team") == 0) {
            if (strcmp(k, "description") == 0) {
                if (!json_is_string(v) || json_string_length(v) > 1024)
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k,
                                      "'description' must be a string of up to 1024 characters.");
            } else if (strcmp(k, "tier") == 0) {
                const char *t = json_string_value(v);
                if (t == NULL || (strcmp(t, "free") != 0 && strcmp(t, "pro") != 0 && strcmp(t, "team") != 0 &&
                                  strcmp(t, "custom") != 0))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'tier' must be free, pro, team or custom.");
            } else if (strcmp(k, "metadata") == 0) {
                if (!json_is_object(v))
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'metadata' must be a JSON object.");
            } else if (strcmp(k, "rate_limits") == 0) {
                rv = json_is_null(v) ? KG_OK : kg__check_rate_limits(v, err);
            } else if (strcmp(k, "budget") == 0) {
                rv = json_is_null(v) ? KG_OK : kg__check_budget(v, err);
            } else if (strcmp(k, "models") == 0) {
                rv = kg__check_model_list(v, k, err);
            } else {
                known = false;
            }
        } else { /* prompt_module */
            if (strcmp(k, "text") == 0) {
                if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 16384)
                    rv = kg_error_set(err, KG_EINVALID_VALUE, k, "'text' must be 1 to 16384 characters.");
            } else {
                known = false;
            }
        }
        if (!known)
            rv = kg_error_set(err, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
        if (rv != KG_OK)
            break;
        json_object_set(spec, k, v);
    }
    /* Required members. */
    static const struct {
        const char *kind, *member;
    } required[] = {{"provider", "base_url"}, {"model", "provider"}, {"agent", "model"}, {"prompt_module", "text"}};
    for (size_t i = 0; rv == KG_OK && i < sizeof(required) / sizeof(required[0]); i++)
        if (strcmp(required[i].kind, kind) == 0 && json_object_get(spec, required[i].member) == NULL)
            rv = kg_error_set(err, KG_EINVALID_VALUE, required[i].member, "'%s' is required.", required[i].member);
    /* A preset tier fixes its limits; only a custom tier states its own. */
    const char *tier = json_string_value(json_object_get(spec, "tier"));
    if (rv == KG_OK && strcmp(kind, "team") == 0 && tier != NULL && strcmp(tier, "custom") != 0 &&
        json_is_object(json_object_get(spec, "rate_limits")))
        rv = kg_error_set(err, KG_EINVALID_VALUE, "rate_limits",
                          "The %s tier has preset limits; use tier 'custom' to set rate_limits.", tier);
    if (rv != KG_OK) {
        json_decref(spec);
        return rv;
    }
    *out = spec;
    return KG_OK;
}

/* Every member of a kind, with its default: objects look the same whoever made them. */
static json_t *defaults_of(const kg_catalog_row_t *r)
{
    if (strcmp(r->kind, "provider") == 0)
        return json_pack("{s:s, s:n, s:n, s:n, s:b, s:b}", "type", "openai", "base_url", "credential", "ca_file",
                         "forward_identity", 0, "stream_usage", 1);
    if (strcmp(r->kind, "model") == 0)
        return json_pack("{s:n, s:s, s:f, s:f, s:[]}", "provider", "upstream_model", r->name, "input", 0.0, "output",
                         0.0, "prompt_modules");
    if (strcmp(r->kind, "agent") == 0)
        return json_pack("{s:n, s:[], s:[]}", "model", "prompt_modules", "environments");
    if (strcmp(r->kind, "team") == 0)
        return json_pack("{s:n, s:s, s:{}, s:n, s:n, s:s}", "description", "tier", "custom", "metadata", "rate_limits",
                         "budget", "models", "*");
    return json_pack("{s:n}", "text");
}

static json_t *row_to_json(const kg_catalog_row_t *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", r->name, "object", r->kind, "name", r->name);
    json_t *spec = json_loads(r->spec, 0, NULL);
    json_t *defaults = defaults_of(r);
    json_object_update(o, defaults);
    if (spec != NULL)
        json_object_update(o, spec);
    json_decref(spec), json_decref(defaults);
    json_object_set_new(o, "source", json_string(r->source));
    json_object_set_new(o, "created_at", json_integer(r->created_at));
    json_object_set_new(o, "updated_at", json_integer(r->updated_at));
    return o;
}

/* What refers to kind/name in the org (so it cannot be deleted); NULL if nothing. */
static char *referenced_by(kg__admin_call_t *c, const char *org_id, const char *kind, const char *name)
{
    kg_catalog_row_t *rows = NULL;
    size_t n = 0;
    char *by = NULL;
    if (strcmp(kind, "team") == 0) { /* a team is in use while any key names it */
        kg_token_filter_t f = {
            .org_id = org_id, .type = -1, .status = -1, .team_id = name, .limit = 1, .now = c->req->now};
        kg_token_t *list = NULL;
        size_t found = 0;
        bool more;
        if (kg_store_token_list(c->a->store, &f, &list, &found, &more) != KG_OK)
            return kg_xstrdup("(the store could not be read)");
        if (found > 0) {
            by = kg_xcalloc(1, 64);
            snprintf(by, 64, "key %s", list[0].id);
        }
        kg_token_list_free(list, found);
        return by;
    }
    if (kg_store_catalog_list(c->a->store, org_id, NULL, &rows, &n) != KG_OK)
        return kg_xstrdup("(the store could not be read)");
    for (size_t i = 0; i < n && by == NULL; i++) {
        json_t *spec = json_loads(rows[i].spec, 0, NULL);
        const char *member = strcmp(kind, "provider") == 0 ? "provider" : strcmp(kind, "model") == 0 ? "model" : NULL;
        bool uses = member != NULL && json_is_string(json_object_get(spec, member)) &&
                    strcmp(json_string_value(json_object_get(spec, member)), name) == 0;
        if (strcmp(kind, "prompt_module") == 0) {
            size_t k;
            json_t *item;
            json_array_foreach (json_object_get(spec, "prompt_modules"), k, item) {
                uses |= json_is_string(item) && strcmp(json_string_value(item), name) == 0;
            }
        }
        if (uses) {
            size_t len = strlen(rows[i].kind) + strlen(rows[i].name) + 4;
            by = kg_xcalloc(1, len);
            snprintf(by, len, "%s '%s'", rows[i].kind, rows[i].name);
        }
        json_decref(spec);
    }
    kg_catalog_rows_free(rows, n);
    return by;
}

/* ==== Routes ==== */

static void write_object(kg__admin_call_t *c, const kind_t *kind, const char *name, bool create)
{
    const char *org_id = c->req->actor->org_id;
    kg_catalog_row_t cur = {0};
    kg_error_t err = {0};
    json_t *spec = NULL, *base = NULL;
    json_t *body = kg__admin_body(c, false);
    if (body == NULL)
        return;
    if (create) {
        name = json_string_value(json_object_get(body, "name"));
        if (!valid_object_name(kind->name, name)) {
            kg__admin_fail(c, KG_EINVALID_VALUE, "name", "'name' is missing or has characters a %s name cannot have.",
                           kind->name);
            goto out;
        }
    } else if (json_object_get(body, "name") != NULL) {
        kg__admin_fail(c, KG_EIMMUTABLE_FIELD, "name", "A catalog object's name cannot be changed.");
        goto out;
    }
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        goto out;
    }
    kg_err_t found = kg_store_catalog_get(c->a->store, org_id, kind->name, name, &cur);
    if (create && found == KG_OK) {
        kg_error_set(&err, KG_ECONFLICT, "name", "A %s named '%s' already exists.", kind->name, name);
        goto fail;
    }
    if (!create && found != KG_OK) {
        kg_error_set(&err, KG_ENOT_FOUND, NULL, "No %s named '%.64s'.", kind->name, name);
        goto fail;
    }
    if (!create && strcmp(cur.source, "config") == 0) {
        kg_error_set(&err, KG_EINVALID_VALUE, NULL, "The %s '%s' is declared in the config file (read-only).",
                     kind->name, name);
        goto fail;
    }
    /* A client sends one name for a model or an agent: it must mean one thing. */
    if (create && (strcmp(kind->name, "model") == 0 || strcmp(kind->name, "agent") == 0) &&
        exists(c, org_id, strcmp(kind->name, "model") == 0 ? "agent" : "model", name)) {
        kg_error_set(&err, KG_ECONFLICT, "name", "An %s named '%s' already exists.",
                     strcmp(kind->name, "model") == 0 ? "agent" : "model", name);
        goto fail;
    }
    if (create && strcmp(kind->name, "provider") == 0 && count_kind(c, org_id, "provider") >= MAX_PROVIDERS_PER_ORG) {
        kg_error_set(&err, KG_EINVALID_VALUE, NULL, "An organization may have at most %d providers.",
                     MAX_PROVIDERS_PER_ORG);
        goto fail;
    }
    base = create ? json_object() : json_loads(cur.spec, 0, NULL);
    if (base == NULL || build_spec(c, org_id, kind->name, body, base, &spec, &err) != KG_OK)
        goto fail;
    /* An update's audit event records what changed, from and to (SPEC §1); a creation, the object. */
    json_t *changes = create ? json_incref(spec) : json_object();
    if (!create) {
        const char *k;
        json_t *v;
        json_object_foreach (spec, k, v) {
            json_t *old = json_object_get(base, k);
            if (old == NULL || !json_equal(old, v))
                json_object_set_new(changes, k, json_pack("{s:O?, s:O}", "from", old, "to", v));
        }
    }
    char *text = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    kg_catalog_row_t row = {.org_id = (char *)org_id,
                            .kind = (char *)kind->name,
                            .name = (char *)name,
                            .spec = text,
                            .source = "api",
                            .created_at = create ? c->req->now : cur.created_at,
                            .updated_at = c->req->now};
    char action[48];
    snprintf(action, sizeof(action), "%s.%s", kind->name, create ? "created" : "updated");
    kg_err_t rv = kg_store_catalog_put(c->a->store, &row);
    if (rv == KG_OK)
        rv = kg__admin_record(c, org_id, action, kind->name, name, changes);
    json_decref(changes);
    free(text);
    if (rv != KG_OK) {
        kg_error_set(&err, rv, NULL, NULL);
        goto fail;
    }
    if (kg__admin_commit(c)) {
        kg_catalog_row_t now_row = {0};
        if (kg_store_catalog_get(c->a->store, org_id, kind->name, name, &now_row) == KG_OK)
            kg__admin_reply_json(c, create ? 201 : 200, row_to_json(&now_row));
        else
            kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        kg_catalog_row_dispose(&now_row);
    }
    goto out;
fail:
    kg_store_rollback(c->a->store);
    kg__admin_reply_error(c, &err);
out:
    kg_catalog_row_dispose(&cur);
    json_decref(spec), json_decref(base), json_decref(body);
}

static void delete_object(kg__admin_call_t *c, const kind_t *kind, const char *name)
{
    const char *org_id = c->req->actor->org_id;
    kg_catalog_row_t cur = {0};
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    char *by = NULL;
    if (kg_store_catalog_get(c->a->store, org_id, kind->name, name, &cur) != KG_OK) {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No %s named '%.64s'.", kind->name, name);
    } else if (strcmp(cur.source, "config") == 0) {
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "The %s '%s' is declared in the config file (read-only).",
                       kind->name, name);
    } else if ((by = referenced_by(c, org_id, kind->name, name)) != NULL) {
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "The %s '%s' is in use by %s.", kind->name, name, by);
    } else {
        char action[48];
        snprintf(action, sizeof(action), "%s.deleted", kind->name);
        json_t *spec = json_loads(cur.spec, 0, NULL);
        kg_err_t rv = kg_store_catalog_delete(c->a->store, org_id, kind->name, name);
        if (rv == KG_OK)
            rv = kg__admin_record(c, org_id, action, kind->name, name, spec);
        json_decref(spec);
        if (rv != KG_OK) {
            kg__admin_fail(c, rv, NULL, NULL);
        } else if (kg__admin_commit(c)) {
            kg__admin_reply_json(c, 200, json_pack("{s:s, s:s, s:b}", "id", name, "object", kind->name, "deleted", 1));
        }
        free(by);
        kg_catalog_row_dispose(&cur);
        return;
    }
    free(by);
    kg_store_rollback(c->a->store);
    kg_catalog_row_dispose(&cur);
}

void kg__admin_catalog(kg__admin_call_t *c, const char *resource)
{
    const kind_t *kind = NULL;
    const char *m = c->req->method;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].path, resource) == 0)
            kind = &kinds[i];
    if (kind == NULL || c->n_seg > 1) {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", m, c->req->path);
        return;
    }
    if (c->n_seg == 0 && strcmp(m, "GET") == 0) {
        static const char *const allowed[] = {"limit", "after", NULL};
        kg_catalog_row_t *rows = NULL;
        size_t n = 0, limit, start = 0;
        char after[160];
        if (!kg__admin_query_check(c, allowed) || !kg__admin_query_limit(c, &limit))
            return;
        if (kg_store_catalog_list(c->a->store, c->req->actor->org_id, kind->name, &rows, &n) != KG_OK) {
            kg__admin_fail(c, KG_ESTORE, NULL, NULL);
            return;
        }
        /* Listed by name; `after` is the last name of the previous page. */
        if (kg__admin_query(c, "after", after, sizeof(after)) != NULL)
            while (start < n && strcmp(rows[start].name, after) <= 0)
                start++;
        json_t *data = json_array();
        for (size_t i = start; i < n && i < start + limit; i++)
            json_array_append_new(data, row_to_json(&rows[i]));
        kg_catalog_rows_free(rows, n);
        kg__admin_reply_json(c, 200, kg__admin_list(data, n > start + limit));
    } else if (c->n_seg == 0 && strcmp(m, "POST") == 0) {
        write_object(c, kind, NULL, true);
    } else if (c->n_seg == 1 && strcmp(m, "GET") == 0) {
        kg_catalog_row_t r = {0};
        if (kg_store_catalog_get(c->a->store, c->req->actor->org_id, kind->name, c->seg[0], &r) == KG_OK)
            kg__admin_reply_json(c, 200, row_to_json(&r));
        else
            kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No %s named '%.64s'.", kind->name, c->seg[0]);
        kg_catalog_row_dispose(&r);
    } else if (c->n_seg == 1 && strcmp(m, "PATCH") == 0) {
        write_object(c, kind, c->seg[0], false);
    } else if (c->n_seg == 1 && strcmp(m, "DELETE") == 0) {
        delete_object(c, kind, c->seg[0]);
    } else {
        kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Method %s is not allowed on this route.", m);
    }
}

/* ==== The config's catalog ==== */

kg_err_t kg__admin_catalog_sync_config(kg_admin_t *a, int64_t now)
{
    kg_catalog_row_t *rows;
    size_t n;
    kg_err_t rv = kg_store_catalog_delete_source(a->store, KG_DEFAULT_ORG_ID, "config");
    kg_catalog_config_rows(a->cfg, &rows, &n);
    for (size_t i = 0; rv == KG_OK && i < n; i++) {
        rows[i].created_at = rows[i].updated_at = now;
        rv = kg_store_catalog_put(a->store, &rows[i]);
    }
    kg_catalog_rows_free(rows, n);
    if (rv == KG_OK)
        rv = kg_store_change_add(a->store, "provider", "*config*", now); /* running gateways rebuild */
    return rv;
}
