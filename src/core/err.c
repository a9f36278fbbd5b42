/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the error table lookups and the one renderer of SPEC §5's error JSON.
 */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct err_entry {
    kg_err_t err;
    int http_status;
    const char *type;
    const char *code;
    const char *message;
} err_entry_t;

static const err_entry_t table[] = {
#define X(name, val, http, type, code, msg) {KG_E##name, http, type, code, msg},
    KG_ERR_MAP(X)
#undef X
};

static const err_entry_t unknown = {KG_EINTERNAL, 500, "api_error", "internal_error", "Internal error."};

/* Values run -1, -2, ... in table order, so the entry of `e` is at index -e - 1. */
static const err_entry_t *entry_of(kg_err_t e)
{
    size_t i = (size_t)(-(long)e - 1);
    return e < 0 && i < sizeof(table) / sizeof(table[0]) && table[i].err == e ? &table[i] : &unknown;
}

int kg_err_http_status(kg_err_t e)
{
    return e == KG_OK ? 200 : entry_of(e)->http_status;
}

const char *kg_err_oai_type(kg_err_t e)
{
    return entry_of(e)->type;
}

const char *kg_err_code(kg_err_t e)
{
    return entry_of(e)->code;
}

const char *kg_err_message(kg_err_t e)
{
    return entry_of(e)->message;
}

kg_err_t kg_error_set(kg_error_t *err, kg_err_t code, const char *param, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    snprintf(err->param, sizeof(err->param), "%s", param != NULL ? param : "");
    if (fmt == NULL) {
        snprintf(err->message, sizeof(err->message), "%s", kg_err_message(code));
    } else {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Appends s as a JSON string body (without quotes); stops cleanly when the buffer is full. */
static size_t append_escaped(char *buf, size_t cap, size_t at, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[7];
        size_t n;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c, n = 2;
        } else if (c < 0x20) {
            tmp[0] = '\\', tmp[1] = 'u', tmp[2] = '0', tmp[3] = '0', tmp[4] = hex[c >> 4], tmp[5] = hex[c & 15], n = 6;
        } else {
            tmp[0] = (char)c, n = 1;
        }
        if (at + n >= cap)
            break;
        memcpy(buf + at, tmp, n);
        at += n;
    }
    return at;
}

static size_t append_raw(char *buf, size_t cap, size_t at, const char *s)
{
    size_t n = strlen(s);
    if (at + n >= cap)
        n = cap - at - 1;
    memcpy(buf + at, s, n);
    return at + n;
}

size_t kg_err_render(const kg_error_t *err, char *buf, size_t cap)
{
    const char *message = err->message[0] != '\0' ? err->message : kg_err_message(err->code);
    size_t at = 0;
    if (cap == 0)
        return 0;
    at = append_raw(buf, cap, at, "{\"error\":{\"message\":\"");
    at = append_escaped(buf, cap, at, message);
    at = append_raw(buf, cap, at, "\",\"type\":\"");
    at = append_raw(buf, cap, at, kg_err_oai_type(err->code));
    at = append_raw(buf, cap, at, "\",\"param\":");
    if (err->param[0] != '\0') {
        at = append_raw(buf, cap, at, "\"");
        at = append_escaped(buf, cap, at, err->param);
        at = append_raw(buf, cap, at, "\"");
    } else {
        at = append_raw(buf, cap, at, "null");
    }
    at = append_raw(buf, cap, at, ",\"code\":\"");
    at = append_raw(buf, cap, at, kg_err_code(err->code));
    at = append_raw(buf, cap, at, "\"}}");
    buf[at] = '\0';
    return at;
}
