/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements what every admin route shares: strict JSON bodies (jansson, duplicate
 * member names refused), OpenAI-shaped replies and list envelopes, query parameters, and the
 * audit + change-feed record written in the same transaction as the change it describes.
 */
#include "admin/admin_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void kg__admin_reply_json(kg__admin_call_t *c, int status, json_t *body)
{
    c->res->status = status;
    c->res->body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (c->res->body == NULL) {
        c->res->status = 503;
        c->res->body = kg_xstrdup("{\"error\":{\"message\":\"Temporarily out of memory.\",\"type\":\"api_error\","
                                  "\"param\":null,\"code\":\"out_of_memory\"}}");
    }
}

void kg__admin_reply_error(kg__admin_call_t *c, const kg_error_t *err)
{
    char buf[KG_ERR_RENDER_MAX];
    kg_err_render(err, buf, sizeof(buf));
    free(c->res->body);
    c->res->status = kg_err_http_status(err->code);
    c->res->body = kg_xstrdup(buf);
}

void kg__admin_fail(kg__admin_call_t *c, kg_err_t code, const char *param, const char *fmt, ...)
{
    kg_error_t err = {.code = code};
    snprintf(err.param, sizeof(err.param), "%s", param != NULL ? param : "");
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err.message, sizeof(err.message), fmt, ap);
        va_end(ap);
    }
    kg__admin_reply_error(c, &err);
}

json_t *kg__admin_list(json_t *data, bool has_more)
{
    json_t *first = json_array_size(data) > 0 ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last =
        json_array_size(data) > 0 ? json_object_get(json_array_get(data, json_array_size(data) - 1), "id") : NULL;
    return json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list", "data", data, "first_id", first, "last_id", last,
                     "has_more", has_more);
}

json_t *kg__admin_body(kg__admin_call_t *c, bool empty_ok)
{
    json_error_t jerr;
    const kg_admin_request_t *r = c->req;
    size_t i = 0;

    while (i < r->body_len && isspace((unsigned char)r->body[i]))
        i++;
    if (i == r->body_len) {
        if (empty_ok)
            return json_object();
        kg__admin_fail(c, KG_EINVALID_JSON, NULL, "The request body must be a JSON object.");
        return NULL;
    }
    json_t *body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        kg__admin_fail(c, KG_EINVALID_JSON, NULL, "Invalid JSON body: %s (at byte %d).", jerr.text, jerr.position);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        kg__admin_fail(c, KG_EINVALID_JSON, NULL, "The request body must be a JSON object.");
        return NULL;
    }
    return body;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..len) into buf; '+' is a space as in forms. */
static void decode(const char *src, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        if (src[i] == '%' && i + 2 < len && hexval(src[i + 1]) >= 0 && hexval(src[i + 2]) >= 0) {
            buf[o++] = (char)(hexval(src[i + 1]) * 16 + hexval(src[i + 2]));
            i += 2;
        } else {
            buf[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    buf[o] = '\0';
}

/* Calls visit(name, name_len, value, value_len) per parameter; stops when it returns false. */
static bool each_param(const char *q, bool (*visit)(const char *, size_t, const char *, size_t, void *), void *ctx)
{
    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t name_len = eq != NULL ? (size_t)(eq - q) : len;
        const char *value = eq != NULL ? eq + 1 : q + len;
        size_t value_len = eq != NULL ? len - name_len - 1 : 0;
        if (len > 0 && !visit(q, name_len, value, value_len, ctx))
            return false;
        q = amp != NULL ? amp + 1 : NULL;
    }
    return true;
}

typedef struct find_ctx {
    const char *name;
    char *buf;
    size_t cap;
    bool found;
} find_ctx_t;

static bool find_visit(const char *n, size_t nl, const char *v, size_t vl, void *p)
{
    find_ctx_t *f = p;
    if (strlen(f->name) == nl && memcmp(f->name, n, nl) == 0) {
        decode(v, vl, f->buf, f->cap);
        f->found = true;
        return false;
    }
    return true;
}

const char *kg__admin_query(const kg__admin_call_t *c, const char *name, char *buf, size_t cap)
{
    find_ctx_t f = {name, buf, cap, false};
    each_param(c->req->query, find_visit, &f);
    return f.found ? buf : NULL;
}

typedef struct check_ctx {
    const char *const *allowed;
    char bad[64];
} check_ctx_t;

static bool check_visit(const char *n, size_t nl, const char *v, size_t vl, void *p)
{
    check_ctx_t *k = p;
    (void)v, (void)vl;
    for (const char *const *a = k->allowed; *a != NULL; a++)
        if (strlen(*a) == nl && memcmp(*a, n, nl) == 0)
            return true;
    decode(n, nl, k->bad, sizeof(k->bad));
    return false;
}

bool kg__admin_query_check(kg__admin_call_t *c, const char *const *allowed)
{
    check_ctx_t k = {.allowed = allowed};
    if (each_param(c->req->query, check_visit, &k))
        return true;
    kg__admin_fail(c, KG_EUNKNOWN_PARAMETER, k.bad, "Unknown query parameter '%s'.", k.bad);
    return false;
}

bool kg__admin_query_int(kg__admin_call_t *c, const char *name, int64_t *out)
{
    char buf[32];
    char *end;
    *out = 0;
    if (kg__admin_query(c, name, buf, sizeof(buf)) == NULL)
        return true;
    long long v = strtoll(buf, &end, 10);
    if (buf[0] == '\0' || *end != '\0' || v < 0) {
        kg__admin_fail(c, KG_EINVALID_VALUE, name, "'%s' must be a non-negative integer.", name);
        return false;
    }
    *out = v;
    return true;
}

bool kg__admin_query_limit(kg__admin_call_t *c, size_t *out)
{
    int64_t v;
    if (!kg__admin_query_int(c, "limit", &v))
        return false;
    if (v == 0 && kg__admin_query(c, "limit", (char[8]){0}, 8) == NULL) {
        *out = 20;
        return true;
    }
    if (v < 1 || v > 100) {
        kg__admin_fail(c, KG_EINVALID_VALUE, "limit", "'limit' must be between 1 and 100.");
        return false;
    }
    *out = (size_t)v;
    return true;
}

kg_err_t kg__admin_record(kg__admin_call_t *c, const char *org_id, const char *action, const char *object_type,
                          const char *object_id, json_t *changes)
{
    kg_err_t rv;
    char *text = changes != NULL ? json_dumps(changes, JSON_COMPACT | JSON_PRESERVE_ORDER) : kg_xstrdup("{}");
    if (text == NULL)
        return KG_ENOMEM;
    kg_audit_event_t e = {
        .org_id = (char *)org_id,
        .actor = (char *)c->req->actor->id,
        .action = (char *)action,
        .object_type = (char *)object_type,
        .object_id = (char *)object_id,
        .changes = text,
        .remote_addr = (char *)c->req->actor->remote_addr,
        .created_at = c->req->now,
    };
    rv = kg_store_audit_insert(c->a->store, &e);
    if (rv == KG_OK)
        rv = kg_store_change_add(c->a->store, object_type, object_id, c->req->now);
    free(text);
    return rv;
}

bool kg__admin_commit(kg__admin_call_t *c)
{
    if (kg_store_commit(c->a->store) == KG_OK)
        return true;
    kg__admin_fail(c, KG_ESTORE, NULL, "The change could not be committed; nothing was changed.");
    return false;
}

char *kg__json_dump(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return NULL;
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}
