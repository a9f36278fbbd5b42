/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements /v1/admin/orgs (root admin only: a new org gets the configured
 * environments and its own admin key) and /v1/admin/environments (per org; the ones the config
 * file declares are read-only here).
 */
#include "admin/admin_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "core/alloc.h"
#include "keys/ephemeral.h"

static bool valid_name(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > KG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

/* ==== Orgs ==== */

static json_t *org_to_json(const kg_org_t *o)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", o->id, "object", "organization", "name", o->name, "created_at",
                     (json_int_t)o->created_at, "created_by", o->created_by);
}

/* Copies the config's environments into org_id (source "config"). */
static kg_err_t sync_config_environments(kg_admin_t *a, const char *org_id, int64_t now)
{
    for (size_t i = 0; i < a->cfg->n_environments; i++) {
        kg_environment_t e = {.org_id = (char *)org_id,
                              .name = a->cfg->environments[i].name,
                              .live = a->cfg->environments[i].live,
                              .source = "config",
                              .created_at = now};
        kg_err_t rv = kg_store_environment_upsert(a->store, &e);
        if (rv != KG_OK)
            return rv;
    }
    return KG_OK;
}

static void org_create(kg__admin_call_t *c)
{
    kg_error_t err = {0};
    json_t *admin_key = NULL;
    char id[4 + 20 + 1] = "org_";
    json_t *body = kg__admin_body(c, false);
    const char *k;
    json_t *v;

    if (body == NULL)
        return;
    json_object_foreach (body, k, v) {
        if (strcmp(k, "name") != 0) {
            kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
            json_decref(body);
            return;
        }
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!valid_name(name)) {
        kg__admin_fail(c, KG_EINVALID_VALUE, "name", "'name' must be 1 to %d characters of [a-z0-9_-].", KG_NAME_MAX);
        json_decref(body);
        return;
    }
    if (!kg_random_base62(id + 4, 20)) {
        kg__admin_fail(c, KG_EINTERNAL, NULL, "The random source failed.");
        json_decref(body);
        return;
    }
    id[sizeof(id) - 1] = '\0';
    kg_org_t org = {.id = id, .name = (char *)name, .created_at = c->req->now, .created_by = (char *)c->req->actor->id};
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        json_decref(body);
        return;
    }
    kg_err_t rv = kg_store_org_insert(c->a->store, &org);
    if (rv == KG_ECONFLICT) {
        kg_error_set(&err, KG_ECONFLICT, "name", "An organization named '%s' already exists.", name);
        goto fail;
    }
    if (rv == KG_OK)
        rv = sync_config_environments(c->a, id, c->req->now);
    json_t *obj = org_to_json(&org);
    if (rv == KG_OK)
        rv = kg__admin_record(c, id, "org.created", "org", id, obj);
    if (rv == KG_OK && c->req->actor->org_id[0] != '\0' && strcmp(c->req->actor->org_id, id) != 0)
        rv = kg__admin_record(c, c->req->actor->org_id, "org.created", "org", id, obj);
    if (rv != KG_OK) {
        json_decref(obj);
        kg_error_set(&err, rv, NULL, NULL);
        goto fail;
    }
    char key_name[64];
    snprintf(key_name, sizeof(key_name), "%s admin", name);
    json_t *key_body = json_pack("{s:s, s:s}", "token_type", "admin", "name", key_name);
    rv = kg__token_create(c, id, key_body, false, false, &admin_key, &err);
    json_decref(key_body);
    if (rv != KG_OK) {
        json_decref(obj);
        goto fail;
    }
    json_decref(body);
    if (!kg__admin_commit(c)) {
        json_decref(obj), json_decref(admin_key);
        return;
    }
    json_object_set_new(obj, "admin_key", admin_key);
    kg__admin_reply_json(c, 201, obj);
    return;
fail:
    kg_store_rollback(c->a->store);
    json_decref(body);
    kg__admin_reply_error(c, &err);
}

static void org_list(kg__admin_call_t *c)
{
    static const char *const allowed[] = {"limit", "after", NULL};
    char after[64];
    size_t limit, n = 0;
    kg_org_t *list = NULL;
    if (!kg__admin_query_check(c, allowed) || !kg__admin_query_limit(c, &limit))
        return;
    /* One more than asked tells whether another page exists. */
    if (kg_store_org_list(c->a->store, kg__admin_query(c, "after", after, sizeof(after)), limit + 1, &list, &n) !=
        KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        if (i < limit)
            json_array_append_new(data, org_to_json(&list[i]));
        kg_org_dispose(&list[i]);
    }
    free(list);
    kg__admin_reply_json(c, 200, kg__admin_list(data, n > limit));
}

void kg__admin_orgs(kg__admin_call_t *c)
{
    const char *m = c->req->method;
    if (c->n_seg == 0 && strcmp(m, "POST") == 0) {
        org_create(c);
    } else if (c->n_seg == 0 && strcmp(m, "GET") == 0) {
        org_list(c);
    } else if (c->n_seg == 1 && strcmp(m, "GET") == 0) {
        kg_org_t o = {0};
        kg_err_t rv = kg_store_org_get(c->a->store, c->seg[0], &o);
        if (rv == KG_OK)
            kg__admin_reply_json(c, 200, org_to_json(&o));
        else
            kg__admin_fail(c, rv == KG_ENOT_FOUND ? KG_ENOT_FOUND : KG_ESTORE, NULL, "No organization '%s'.",
                           valid_name(c->seg[0]) || strncmp(c->seg[0], "org_", 4) == 0 ? c->seg[0] : "?");
        kg_org_dispose(&o);
    } else if (c->n_seg <= 1) {
        kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Method %s is not allowed on this route.", m);
    } else {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", m, c->req->path);
    }
}

/* ==== Environments ==== */

static json_t *env_to_json(const kg_environment_t *e)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:s, s:I}", "id", e->name, "object", "environment", "name", e->name, "live",
                     e->live, "source", e->source, "created_at", (json_int_t)e->created_at);
}

static void env_list(kg__admin_call_t *c)
{
    kg_environment_t *list = NULL;
    size_t n = 0;
    if (kg_store_environment_list(c->a->store, c->req->actor->org_id, &list, &n) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(data, env_to_json(&list[i]));
        kg_environment_dispose(&list[i]);
    }
    free(list);
    kg__admin_reply_json(c, 200, kg__admin_list(data, false));
}

/* Reads {name?, live?} strictly. */
static bool env_body(kg__admin_call_t *c, json_t *body, bool name_allowed, const char **name, int *live)
{
    const char *k;
    json_t *v;
    *name = NULL, *live = -1;
    json_object_foreach (body, k, v) {
        if (strcmp(k, "name") == 0 && name_allowed) {
            if (!valid_name(json_string_value(v))) {
                kg__admin_fail(c, KG_EINVALID_VALUE, "name", "'name' must be 1 to %d characters of [a-z0-9_-].",
                               KG_NAME_MAX);
                return false;
            }
            *name = json_string_value(v);
        } else if (strcmp(k, "live") == 0) {
            if (!json_is_boolean(v)) {
                kg__admin_fail(c, KG_EINVALID_VALUE, "live", "'live' must be true or false.");
                return false;
            }
            *live = json_is_true(v);
        } else if (strcmp(k, "name") == 0) {
            kg__admin_fail(c, KG_EIMMUTABLE_FIELD, "name", "An environment's name cannot be changed.");
            return false;
        } else {
            kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k, "Unknown parameter '%s'.", k);
            return false;
        }
    }
    return true;
}

static void env_write(kg__admin_call_t *c, bool create)
{
    const char *org_id = c->req->actor->org_id, *name;
    int live;
    kg_environment_t old = {0};
    json_t *body = kg__admin_body(c, false);
    if (body == NULL)
        return;
    if (!env_body(c, body, create, &name, &live))
        goto out;
    if (create && name == NULL) {
        kg__admin_fail(c, KG_EINVALID_VALUE, "name", "'name' is required.");
        goto out;
    }
    if (!create)
        name = c->seg[0];
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        goto out;
    }
    kg_err_t rv = kg_store_environment_get(c->a->store, org_id, name, &old);
    if (create && rv == KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, KG_ECONFLICT, "name", "The environment '%s' already exists.", name);
        goto out;
    }
    if (!create && rv != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No environment '%s'.", valid_name(name) ? name : "?");
        goto out;
    }
    if (!create && strcmp(old.source, "config") == 0) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "The environment '%s' is declared in the config file (read-only).",
                       name);
        goto out;
    }
    kg_environment_t e = {.org_id = (char *)org_id,
                          .name = (char *)name,
                          .live = live >= 0 ? live : (create ? 0 : old.live),
                          .source = "api",
                          .created_at = create ? c->req->now : old.created_at};
    json_t *changes = create ? env_to_json(&e) : json_pack("{s:{s:b, s:b}}", "live", "from", old.live, "to", e.live);
    rv = kg_store_environment_upsert(c->a->store, &e);
    if (rv == KG_OK)
        rv = kg__admin_record(c, org_id, create ? "environment.created" : "environment.updated", "environment", name,
                              changes);
    json_decref(changes);
    if (rv != KG_OK) {
        kg_store_rollback(c->a->store);
        kg__admin_fail(c, rv, NULL, NULL);
    } else if (kg__admin_commit(c)) {
        kg__admin_reply_json(c, create ? 201 : 200, env_to_json(&e));
    }
out:
    kg_environment_dispose(&old);
    json_decref(body);
}

/* The name of an agent of the org that lists environment `env` (into buf), or NULL. */
static const char *agent_published_to(kg__admin_call_t *c, const char *org_id, const char *env, char *buf, size_t cap)
{
    kg_catalog_row_t *rows = NULL;
    size_t n = 0;
    const char *found = NULL;
    if (kg_store_catalog_list(c->a->store, org_id, "agent", &rows, &n) != KG_OK)
        return "(unknown: the store could not be read)";
    for (size_t i = 0; i < n && found == NULL; i++) {
        json_t *spec = json_loads(rows[i].spec, 0, NULL), *item;
        size_t k;
        json_array_foreach (json_object_get(spec, "environments"), k, item) {
            if (found == NULL && json_is_string(item) && strcmp(json_string_value(item), env) == 0) {
                snprintf(buf, cap, "%s", rows[i].name);
                found = buf;
            }
        }
        json_decref(spec);
    }
    kg_catalog_rows_free(rows, n);
    return found;
}

static void env_delete(kg__admin_call_t *c)
{
    char agent_buf[160];
    const char *agent;
    const char *org_id = c->req->actor->org_id, *name = c->seg[0];
    kg_environment_t e = {0};
    int64_t count = 0;
    if (kg_store_begin(c->a->store) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    kg_err_t rv = kg_store_environment_get(c->a->store, org_id, name, &e);
    if (rv != KG_OK) {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No environment '%s'.", valid_name(name) ? name : "?");
    } else if (strcmp(e.source, "config") == 0) {
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "The environment '%s' is declared in the config file (read-only).",
                       name);
    } else if ((agent = agent_published_to(c, org_id, name, agent_buf, sizeof(agent_buf))) != NULL) {
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL,
                       "The agent '%.128s' is published to the environment '%s'; it cannot be deleted.", agent, name);
    } else if (kg_store_environment_token_count(c->a->store, org_id, name, &count) != KG_OK || count > 0) {
        kg__admin_fail(c, KG_EINVALID_VALUE, NULL, "The environment '%s' has keys issued for it; it cannot be deleted.",
                       name);
    } else {
        json_t *changes = env_to_json(&e);
        rv = kg_store_environment_delete(c->a->store, org_id, name);
        if (rv == KG_OK)
            rv = kg__admin_record(c, org_id, "environment.deleted", "environment", name, changes);
        json_decref(changes);
        if (rv != KG_OK) {
            kg__admin_fail(c, rv, NULL, NULL);
        } else if (kg__admin_commit(c)) {
            kg__admin_reply_json(c, 200,
                                 json_pack("{s:s, s:s, s:b}", "id", name, "object", "environment", "deleted", 1));
            kg_environment_dispose(&e);
            return;
        } else {
            kg_environment_dispose(&e);
            return;
        }
    }
    kg_store_rollback(c->a->store);
    kg_environment_dispose(&e);
}

void kg__admin_environments(kg__admin_call_t *c)
{
    const char *m = c->req->method;
    if (c->n_seg == 0 && strcmp(m, "GET") == 0) {
        env_list(c);
    } else if (c->n_seg == 0 && strcmp(m, "POST") == 0) {
        env_write(c, true);
    } else if (c->n_seg == 1 && strcmp(m, "GET") == 0) {
        kg_environment_t e = {0};
        if (kg_store_environment_get(c->a->store, c->req->actor->org_id, c->seg[0], &e) == KG_OK)
            kg__admin_reply_json(c, 200, env_to_json(&e));
        else
            kg__admin_fail(c, KG_ENOT_FOUND, NULL, "No environment '%s'.", valid_name(c->seg[0]) ? c->seg[0] : "?");
        kg_environment_dispose(&e);
    } else if (c->n_seg == 1 && strcmp(m, "PATCH") == 0) {
        env_write(c, false);
    } else if (c->n_seg == 1 && strcmp(m, "DELETE") == 0) {
        env_delete(c);
    } else if (c->n_seg <= 1) {
        kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Method %s is not allowed on this route.", m);
    } else {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", m, c->req->path);
    }
}

/* ==== Bootstrap ==== */

kg_err_t kg_admin_bootstrap(kg_admin_t *a, int64_t now, char root_secret[KG_KEY_SECRET_MAX])
{
    kg_org_t org = {0};
    bool root_exists = false;
    kg_error_t err = {0};
    json_t *key = NULL;
    kg_actor_t actor = {.id = KG_ACTOR_CLI_LOCAL, .org_id = KG_DEFAULT_ORG_ID, .is_root = true};
    kg_admin_request_t req = {.method = "POST", .path = "/v1/tokens", .actor = &actor, .now = now};
    kg_admin_response_t res = {0};
    kg__admin_call_t c = {.a = a, .req = &req, .res = &res};
    kg_err_t rv;

    root_secret[0] = '\0';
    if ((rv = kg_store_begin(a->store)) != KG_OK)
        return rv;
    rv = kg_store_org_get(a->store, KG_DEFAULT_ORG_ID, &org);
    if (rv == KG_ENOT_FOUND) {
        kg_org_t def = {
            .id = KG_DEFAULT_ORG_ID, .name = KG_DEFAULT_ORG_NAME, .created_at = now, .created_by = KG_ACTOR_CLI_LOCAL};
        rv = kg_store_org_insert(a->store, &def);
        if (rv == KG_OK)
            rv = kg__admin_record(&c, KG_DEFAULT_ORG_ID, "org.created", "org", KG_DEFAULT_ORG_ID, NULL);
    }
    kg_org_dispose(&org);
    if (rv == KG_OK)
        rv = sync_config_environments(a, KG_DEFAULT_ORG_ID, now);
    if (rv == KG_OK)
        rv = kg__admin_catalog_sync_config(a, now);
    if (rv == KG_OK) { /* the deployment's ephemeral-token signing key, made once */
        uint8_t key[KG_EPH_KEY_BYTES];
        if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
            rv = KG_EINTERNAL;
        else
            rv = kg_store_meta_put_new(a->store, KG_EPH_META_KEY, key, sizeof(key));
        kg_secret_wipe(key, sizeof(key));
    }
    if (rv == KG_OK)
        rv = kg_store_root_exists(a->store, &root_exists);
    if (rv == KG_OK && !root_exists) {
        json_t *body = json_pack("{s:s, s:s}", "token_type", "admin", "name", "root admin");
        rv = kg__token_create(&c, KG_DEFAULT_ORG_ID, body, false, true, &key, &err);
        json_decref(body);
    }
    if (rv != KG_OK) {
        kg_store_rollback(a->store);
        free(res.body);
        return rv;
    }
    rv = kg_store_commit(a->store);
    if (rv == KG_OK && key != NULL)
        snprintf(root_secret, KG_KEY_SECRET_MAX, "%s", json_string_value(json_object_get(key, "key")));
    json_decref(key);
    free(res.body);
    return rv;
}
