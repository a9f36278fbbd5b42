/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/admin/ through kg_admin_handle: the validation answers of SPEC §3/§5, secret
 * kinds per environment, and org isolation (another org's id is simply not found).
 */
#include <jansson.h>
#include <stdlib.h>

#include "../test.h"
#include "admin/admin.h"

static kg_config_t cfg;
static kg_store_t *st;

static json_t *call_as(const kg_actor_t *actor, const char *method, const char *path, const char *body, int status,
                       const char *code, const char *param)
{
    kg_admin_t admin = {.store = st, .cfg = &cfg};
    kg_admin_request_t req = {.method = method,
                              .path = path,
                              .body = body,
                              .body_len = body != NULL ? strlen(body) : 0,
                              .actor = actor,
                              .now = 1000000};
    kg_admin_response_t res = {0};
    kg_admin_handle(&admin, &req, &res);
    json_t *j = json_loads(res.body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    bool ok =
        res.status == status && (code == NULL || (json_is_string(json_object_get(e, "code")) &&
                                                  strcmp(json_string_value(json_object_get(e, "code")), code) == 0));
    if (ok && param != NULL)
        ok = json_is_string(json_object_get(e, "param")) &&
             strcmp(json_string_value(json_object_get(e, "param")), param) == 0;
    if (!ok)
        fprintf(stderr, "    %s %s %s -> %d %s\n", method, path, body ? body : "", res.status, res.body);
    CHECK(ok);
    free(res.body);
    return j;
}

void test_admin_validation(void)
{
    char dir[64], db[128], err[256], root[KG_KEY_SECRET_MAX], path[128];
    kg_actor_t local = {.id = "cli:local", .org_id = KG_DEFAULT_ORG_ID, .is_root = true};
    kg_test_tmpdir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/a.db", dir);
    char cfg_path[512];
    CHECK(kg_config_load(&cfg, kg_test_source_path("keygate.yaml", cfg_path, sizeof(cfg_path)), err, sizeof(err)));
    st = kg_store_open(db, err, sizeof(err));
    kg_admin_t admin = {.store = st, .cfg = &cfg};
    CHECK_INT(kg_admin_bootstrap(&admin, 1000000, root), KG_OK);

    /* Defaults and secret kinds. */
    json_t *a = call_as(&local, "POST", "/v1/tokens", "{\"name\":\"a\"}", 201, NULL, NULL);
    CHECK(strncmp(json_string_value(json_object_get(a, "key")), "kg_live_", 8) == 0);
    CHECK_STR(json_string_value(json_object_get(a, "environment")), "production");
    CHECK_STR(json_string_value(json_object_get(a, "purpose")), "inference");
    CHECK_INT(json_array_size(json_object_get(a, "scopes")), 5);
    CHECK(strncmp(json_string_value(json_object_get(a, "key")), json_string_value(json_object_get(a, "prefix")), 12) ==
          0);
    CHECK_INT(strlen(json_string_value(json_object_get(a, "prefix"))), 12);
    json_t *s = call_as(&local, "POST", "/v1/tokens",
                        "{\"name\":\"s\",\"environment\":\"staging\",\"preset\":\"ide-agent\"}", 201, NULL, NULL);
    CHECK(strncmp(json_string_value(json_object_get(s, "key")), "kg_test_", 8) == 0);
    CHECK_INT(json_array_size(json_object_get(s, "scopes")), 2);
    json_t *g = call_as(&local, "POST", "/v1/gateway-keys", "{\"name\":\"g\"}", 201, NULL, NULL);
    CHECK(strncmp(json_string_value(json_object_get(g, "key")), "kg_gk_", 6) == 0);
    CHECK_STR(json_string_value(json_object_get(g, "token_type")), "gateway");
    json_t *ad = call_as(&local, "POST", "/v1/tokens", "{\"name\":\"ad\",\"token_type\":\"admin\"}", 201, NULL, NULL);
    CHECK(strncmp(json_string_value(json_object_get(ad, "key")), "kg_admin_", 9) == 0);

    /* Refusals with their code and param. */
    json_decref(
        call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"colour\":1}", 400, "unknown_parameter", "colour"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"\"}", 400, "invalid_value", "name"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{}", 400, "invalid_value", "name"));
    json_decref(call_as(&local, "POST", "/v1/tokens",
                        "{\"name\":\"x\",\"purpose\":\"upload\",\"scopes\":[\"inference:chat\"]}", 400, "invalid_value",
                        "scopes"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"rate_limits\":{\"rpm\":0}}", 400,
                        "invalid_value", "rate_limits.rpm"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"rate_limits\":{\"rps\":1}}", 400,
                        "unknown_parameter", "rate_limits.rps"));
    json_decref(call_as(&local, "POST", "/v1/tokens",
                        "{\"name\":\"x\",\"budget\":{\"limit_credits\":5,\"period\":\"year\"}}", 400, "invalid_value",
                        "budget.period"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"expires_at\":999999}", 400, "invalid_value",
                        "expires_at"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"environment\":\"moon\"}", 400, "invalid_value",
                        "environment"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"allow\":{\"models\":[\"gpt-*-x*\"]}}", 400,
                        "invalid_value", "allow.models"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"token_type\":\"admin\",\"scopes\":[]}", 400,
                        "invalid_value", "scopes"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"prompt_modules\":[\"nope\"]}", 400,
                        "invalid_value", "prompt_modules"));
    json_decref(call_as(&local, "POST", "/v1/tokens", "{\"name\":\"x\",\"name\":\"y\"}", 400, "invalid_json", NULL));
    json_decref(call_as(&local, "POST", "/v1/tokens", "[1]", 400, "invalid_json", NULL));

    const char *id = json_string_value(json_object_get(a, "id"));
    snprintf(path, sizeof(path), "/v1/tokens/%s", id);
    json_decref(call_as(&local, "PATCH", path, "{\"environment\":\"staging\"}", 400, "immutable_field", "environment"));
    json_decref(call_as(&local, "PATCH", path, "{\"purpose\":\"upload\"}", 400, "immutable_field", "purpose"));
    json_decref(call_as(&local, "PATCH", path, "{\"token_type\":\"admin\"}", 400, "immutable_field", "token_type"));
    json_decref(call_as(&local, "PATCH", path, "{\"org_id\":\"org_x\"}", 400, "immutable_field", "org_id"));
    json_decref(call_as(&local, "PATCH", path, "{\"prefix\":\"kg_\"}", 400, "immutable_field", "prefix"));
    json_decref(call_as(&local, "PATCH", path, "{\"shoe\":1}", 400, "unknown_parameter", "shoe"));
    json_t *edited =
        call_as(&local, "PATCH", path, "{\"name\":\"renamed\",\"expires_at\":2000000,\"metadata\":{\"team\":\"x\"}}",
                200, NULL, NULL);
    CHECK_STR(json_string_value(json_object_get(edited, "name")), "renamed");
    CHECK_INT(json_integer_value(json_object_get(edited, "expires_at")), 2000000);
    CHECK(json_object_get(edited, "key") == NULL);
    json_decref(edited);

    /* Another org's admin key: every route on this key's id is 404, never 403. */
    json_t *org = call_as(&local, "POST", "/v1/admin/orgs", "{\"name\":\"other\"}", 201, NULL, NULL);
    kg_actor_t other = {.id = "pk_other", .is_root = false};
    snprintf(other.org_id, sizeof(other.org_id), "%s", json_string_value(json_object_get(org, "id")));
    json_decref(call_as(&other, "GET", path, NULL, 404, "not_found", NULL));
    json_decref(call_as(&other, "PATCH", path, "{\"name\":\"stolen\"}", 404, "not_found", NULL));
    json_decref(call_as(&other, "DELETE", path, NULL, 404, "not_found", NULL));
    snprintf(path, sizeof(path), "/v1/tokens/%s/rotate", id);
    json_decref(call_as(&other, "POST", path, NULL, 404, "not_found", NULL));
    json_decref(call_as(&other, "POST", "/v1/admin/orgs", "{\"name\":\"third\"}", 403, "admin_required", NULL));
    json_t *list = call_as(&other, "GET", "/v1/tokens", NULL, 200, NULL, NULL);
    CHECK_INT(json_array_size(json_object_get(list, "data")), 1); /* only its own admin key */
    json_decref(list);

    json_decref(a), json_decref(s), json_decref(g), json_decref(ad), json_decref(org);
    kg_store_close(st);
    kg_config_dispose(&cfg);
}
