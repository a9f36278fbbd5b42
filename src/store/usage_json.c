/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the JSON form of usage batches (see usage_json.h).
 */
#include "store/usage_json.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

#define STRING_FIELDS_MAX                                                                                              \
    (KG_USAGE_REQUEST_ID_MAX + 1 + KG_KEY_ID_LEN + 1 + 2 * (KG_NAME_MAX + 1) + 2 * (KG_USAGE_MODEL_MAX + 1))
/* The six strings, STRING_FIELDS_MAX bytes together, each byte escaped as \u00XX at worst, and
 * their quotes; ten integers of at most 20 characters; the brackets and commas. */
static_assert(STRING_FIELDS_MAX ==
                  sizeof(((kg_usage_record_t *)0)->request_id) + sizeof(((kg_usage_record_t *)0)->key_id) +
                      sizeof(((kg_usage_record_t *)0)->org_id) + sizeof(((kg_usage_record_t *)0)->team_id) +
                      sizeof(((kg_usage_record_t *)0)->model) + sizeof(((kg_usage_record_t *)0)->upstream_model),
              "STRING_FIELDS_MAX is what STRING() can read");
#define RECORD_MAX (6 * STRING_FIELDS_MAX + 6 * 2 + 10 * 20 + 2 + 15 + 1)

/* Whether any of the eight bytes in w is a quote, a backslash or a control character (the
 * bytes a JSON string escapes): the classic "has a zero byte" and "has a byte less than n" tests
 * of one 64-bit word, so that a clean id or model name is copied eight bytes at a time. */
static bool word_needs_escape(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t zero_byte = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    uint64_t below_space = (w - ones * 0x20) & ~w;
    return ((zero_byte | below_space) & highs) != 0;
}

/* A JSON string of the text in s[0..cap) up to its NUL: quotes, backslashes and control
 * characters escaped; other bytes as they are (the body reader let only UTF-8 in). */
static char *put_string(char *p, const char *s, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const size_t len = strnlen(s, cap);
    size_t i = 0;
    *p++ = '"';
    for (uint64_t w; i + 8 <= len; i += 8, p += 8) {
        memcpy(&w, s + i, 8);
        if (word_needs_escape(w))
            break;
        memcpy(p, &w, 8);
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\', *p++ = (char)c;
        } else if (c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[c >> 4], p[5] = hex[c & 15];
            p += 6;
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    return p;
}

static char *put_int(char *p, int64_t v)
{
    char digits[20];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *p++ = '-';
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

#define STRING(p, r, field) put_string(p, (r)->field, sizeof((r)->field))

/* Room for `more` bytes after the first `len` of *buf (which moves as it grows). */
static char *room(char **buf, size_t *cap, size_t len, size_t more)
{
    if (*cap - len < more) {
        size_t grown = *cap != 0 ? *cap : 64 * (size_t)RECORD_MAX;
        while (grown - len < more)
            grown *= 2;
        *buf = kg_xrealloc(*buf, grown);
        *cap = grown;
    }
    return *buf + len;
}

size_t kg_usage_json_encode(char **buf, size_t *cap, const kg_usage_record_t *recs, const bool *keep, size_t n)
{
    size_t len = 1;
    *room(buf, cap, 0, 2) = '[';
    for (size_t i = 0; i < n; i++) {
        const kg_usage_record_t *r = &recs[i];
        if (keep != NULL && !keep[i])
            continue;
        char *p = room(buf, cap, len, RECORD_MAX + 1); /* and the closing bracket */
        if (len > 1)
            *p++ = ',';
        *p++ = '[';
        p = STRING(p, r, request_id), *p++ = ',', p = put_int(p, r->at_ms), *p++ = ',';
        p = STRING(p, r, key_id), *p++ = ',', p = STRING(p, r, org_id), *p++ = ',';
        p = STRING(p, r, team_id), *p++ = ',', p = STRING(p, r, model), *p++ = ',';
        p = STRING(p, r, upstream_model), *p++ = ',', p = put_int(p, r->route), *p++ = ',';
        p = put_int(p, r->status), *p++ = ',', p = put_int(p, r->input_tokens), *p++ = ',';
        p = put_int(p, r->output_tokens), *p++ = ',', p = put_int(p, r->cost_micro), *p++ = ',';
        p = put_int(p, r->latency_us), *p++ = ',', p = put_int(p, r->upstream_latency_us), *p++ = ',';
        p = put_int(p, r->stream ? 1 : 0), *p++ = ',', p = put_int(p, r->estimated ? 1 : 0);
        *p++ = ']';
        len = (size_t)(p - *buf);
    }
    *room(buf, cap, len, 1) = ']';
    return len + 1;
}
