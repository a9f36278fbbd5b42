/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/core/err.c: the error JSON shape every client parses (SPEC §5).
 */
#include <jansson.h>

#include "../test.h"
#include "core/err.h"

void test_err_render_shape(void)
{
    kg_error_t err = {0};
    char buf[512];
    kg_error_set(&err, KG_EUNKNOWN_PARAMETER, "foo", "Unknown parameter '%s'.", "foo");
    kg_err_render(&err, buf, sizeof(buf));
    json_t *j = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
    CHECK(j != NULL);
    json_t *e = json_object_get(j, "error");
    CHECK_INT(json_object_size(j), 1);
    CHECK_INT(json_object_size(e), 4);
    CHECK_STR(json_string_value(json_object_get(e, "message")), "Unknown parameter 'foo'.");
    CHECK_STR(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    CHECK_STR(json_string_value(json_object_get(e, "param")), "foo");
    CHECK_STR(json_string_value(json_object_get(e, "code")), "unknown_parameter");
    json_decref(j);

    /* No param: the member is present and null; no message: the table's. */
    kg_error_t bare = {.code = KG_EMISSING_API_KEY};
    kg_err_render(&bare, buf, sizeof(buf));
    j = json_loads(buf, 0, NULL);
    e = json_object_get(j, "error");
    CHECK(json_is_null(json_object_get(e, "param")));
    CHECK(json_object_get(e, "param") != NULL);
    CHECK_STR(json_string_value(json_object_get(e, "code")), "missing_api_key");
    CHECK(strstr(json_string_value(json_object_get(e, "message")), "Authorization: Bearer") != NULL);
    json_decref(j);
}

void test_err_render_escapes_and_truncates(void)
{
    kg_error_t err = {0};
    char buf[512], small[40];
    kg_error_set(&err, KG_EINVALID_VALUE, "a\"b", "quote \" backslash \\ newline \n tab \t");
    kg_err_render(&err, buf, sizeof(buf));
    json_t *j = json_loads(buf, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
              "quote \" backslash \\ newline \n tab \t");
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "param")), "a\"b");
    json_decref(j);
    /* A tiny buffer is never overrun and stays NUL-terminated. */
    size_t n = kg_err_render(&err, small, sizeof(small));
    CHECK(n < sizeof(small));
    CHECK_INT(strlen(small), n);
}

void test_err_table_statuses(void)
{
    CHECK_INT(kg_err_http_status(KG_EINVALID_API_KEY), 401);
    CHECK_INT(kg_err_http_status(KG_EADMIN_REQUIRED), 403);
    CHECK_STR(kg_err_oai_type(KG_EADMIN_REQUIRED), "permission_error");
    CHECK_INT(kg_err_http_status(KG_ENOT_FOUND), 404);
    CHECK_INT(kg_err_http_status(KG_EPAYLOAD_TOO_LARGE), 413);
    CHECK_INT(kg_err_http_status(KG_EHEADERS_TOO_LARGE), 431);
    CHECK_STR(kg_err_oai_type(KG_EINSUFFICIENT_QUOTA), "insufficient_quota");
    CHECK_INT(kg_err_http_status(KG_EUPSTREAM_TIMEOUT), 504);
    CHECK_STR(kg_err_code(KG_ECONFLICTING_CREDENTIALS), "conflicting_credentials");
    /* Every entry of the table is found by its own value (the lookup relies on their order). */
#define X(name, val, http, type, code, msg)                                                                            \
    CHECK_STR(kg_err_code(KG_E##name), code);                                                                          \
    CHECK_INT(kg_err_http_status(KG_E##name), http);
    KG_ERR_MAP(X)
#undef X
    CHECK_STR(kg_err_code((kg_err_t)-999), "internal_error");
}
