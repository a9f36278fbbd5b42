/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the request-body scanner of body_scan.h: the fast reader first
 * (body_scan_fast.cpp), then, for any body it declines, the exact reader on yajl's callback
 * parser, which also words every refusal; and the helpers both readers share
 * (body_scan_internal.h).
 */
#include "json/body_scan.h"
#include "json/body_scan_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

typedef struct scan {
    yajl_handle h;
    const char *body;
    size_t len;
    size_t key_end; /* offset just after the current top-level key */
    const kg_body_alloc_t *alloc;
    kg_body_info_t *out;
    kg_error_t *err;
    int depth;
    bool started;
    kg_body_key_t key;   /* the top-level member whose value is being read */
    bool in_usage_key;   /* stream_options.include_usage */
    bool input_is_array; /* input's elements are counted at depth 2 */
    bool input_all_numbers;
    kg_body_names_t names;
} scan_t;

/* ==== yajl's allocator, served from the caller's pool (free is a no-op) ==== */

static void *pool_malloc(void *ctx, size_t sz)
{
    const kg_body_alloc_t *a = ctx;
    size_t *p = a->alloc(a->ctx, sz + sizeof(size_t));
    *p = sz;
    return p + 1;
}

static void *pool_realloc(void *ctx, void *ptr, size_t sz)
{
    void *grown = pool_malloc(ctx, sz);
    if (ptr != NULL) {
        size_t old = ((size_t *)ptr)[-1];
        memcpy(grown, ptr, old < sz ? old : sz);
    }
    return grown;
}

static void pool_free(void *ctx, void *ptr)
{
    (void)ctx, (void)ptr;
}

/* ==== UTF-8 ==== */

/*
 * Strict RFC 3629: yajl checks only the byte structure of strings, so overlong forms, encoded
 * surrogates and code points above U+10FFFF pass it — and an upstream may decode them
 * differently than we did (the classic way to smuggle a second "model").
 */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* Prompts are mostly ASCII: skip eight such bytes per step. */
        uint64_t word;
        while (i + 8 <= len && (memcpy(&word, s + i, 8), (word & UINT64_C(0x8080808080808080)) == 0))
            i += 8;
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c == 0xe0)
            n = 2, lo = 0xa0;
        else if (c == 0xed)
            n = 2, hi = 0x9f; /* no surrogates */
        else if (c >= 0xe1 && c <= 0xef)
            n = 2;
        else if (c == 0xf0)
            n = 3, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            n = 3;
        else if (c == 0xf4)
            n = 3, hi = 0x8f; /* nothing above U+10FFFF */
        else
            return false;
        if (n >= len - i) /* truncated sequence */
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += n + 1;
    }
    return true;
}

/* ==== Member names as lenient parsers see them ==== */

/*
 * Go's encoding/json (Ollama, LocalAI, ...) matches member names case-insensitively, with
 * Unicode simple folding, and the last match wins: for it "Model" and "model" are the same
 * member. Two top-level names equal under that folding are therefore duplicates. The only
 * non-ASCII characters that fold to ASCII letters are U+017F (long s) and U+212A (Kelvin).
 */
static size_t fold_name(const unsigned char *k, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o < cap; i++) {
        unsigned char c = k[i];
        if (c == 0xc5 && i + 1 < len && k[i + 1] == 0xbf) {
            out[o++] = 's', i += 1;
        } else if (c == 0xe2 && i + 2 < len && k[i + 1] == 0x84 && k[i + 2] == 0xaa) {
            out[o++] = 'k', i += 2;
        } else {
            out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    return o;
}

kg_body_name_verdict_t kg__body_names_add(kg_body_names_t *names, const kg_body_alloc_t *alloc, const char *name,
                                          size_t len)
{
    /* Real requests have a few dozen members; the cap keeps the duplicate check cheap. */
    if (names->n == KG_BODY_MAX_MEMBERS)
        return KG_BODY_NAME_TOO_MANY;
    if (names->n == names->cap) {
        size_t cap = names->cap != 0 ? names->cap * 2 : 16;
        kg_body_seen_name_t *grown = alloc->alloc(alloc->ctx, cap * sizeof(*grown));
        if (names->n > 0)
            memcpy(grown, names->seen, names->n * sizeof(*grown));
        names->seen = grown, names->cap = cap;
    }
    /* Names are compared by their first KG_BODY_NAME_FOLDED folded bytes (folding never
     * lengthens a name): no member name of a request is that long, and the check stays linear
     * in the body however long the names a client sends. */
    size_t cap = len < KG_BODY_NAME_FOLDED ? len : KG_BODY_NAME_FOLDED;
    char *folded = alloc->alloc(alloc->ctx, cap + 1);
    size_t flen = fold_name((const unsigned char *)name, len, folded, cap);
    for (size_t i = 0; i < names->n; i++)
        if (names->seen[i].len == flen && memcmp(names->seen[i].name, folded, flen) == 0)
            return KG_BODY_NAME_REPEATED;
    names->seen[names->n++] = (kg_body_seen_name_t){folded, flen};
    return KG_BODY_NAME_NEW;
}

/* ==== Callbacks ==== */

static int fail(scan_t *s, const char *msg)
{
    kg_error_set(s->err, KG_EINVALID_JSON, NULL, "%s", msg);
    return 0;
}

/* Every value and container start passes here first. */
static int on_value_start(scan_t *s, bool container)
{
    if (!s->started) {
        s->started = true;
        if (!container)
            return fail(s, "The request body must be a JSON object.");
    }
    if (s->depth == 2 && s->key == KG_BODY_K_INPUT && s->input_is_array) {
        s->out->n_inputs++;
    }
    return 1;
}

static int on_null(void *ctx)
{
    scan_t *s = ctx;
    if (!on_value_start(s, false))
        return 0;
    if (s->depth == 2 && s->key == KG_BODY_K_INPUT)
        s->input_all_numbers = false;
    return 1;
}

static int on_boolean(void *ctx, int v)
{
    scan_t *s = ctx;
    if (!on_value_start(s, false))
        return 0;
    if (s->depth == 1 && s->key == KG_BODY_K_STREAM)
        s->out->stream = v != 0;
    if (s->depth == 2 && s->key == KG_BODY_K_STREAM_OPTIONS && s->in_usage_key)
        s->out->include_usage = v != 0;
    if (s->depth == 2 && s->key == KG_BODY_K_INPUT)
        s->input_all_numbers = false;
    return 1;
}

/* The value of a number written as digits alone (what clients send for max_tokens and n), exact
 * up to 15 digits; -1 for any other form. */
static double plain_integer(const char *v, size_t len)
{
    if (len == 0 || len > 15)
        return -1;
    double n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

void kg__body_number(kg_body_info_t *out, kg_body_key_t key, const char *v, size_t len)
{
    if (key == KG_BODY_K_DIMENSIONS) {
        long n = 0;
        for (size_t i = 0; i < len && i < 9; i++) {
            if (v[i] < '0' || v[i] > '9') {
                n = 0;
                break;
            }
            n = n * 10 + (v[i] - '0');
        }
        out->dimensions = n;
    } else if (key == KG_BODY_K_MAX_TOKENS || key == KG_BODY_K_CHOICES) {
        /* What bounds the answer's size, read as an upstream might (4096.0, 5e4): the largest
         * value given counts, so a reservation is never smaller than what may be generated. */
        double d = plain_integer(v, len);
        if (d < 0) { /* a fraction or an exponent: strtod, which costs as much as the rest of the scan */
            char buf[32];
            if (len < sizeof(buf)) {
                memcpy(buf, v, len);
                buf[len] = '\0';
                d = strtod(buf, NULL);
            } else {
                d = 1e300; /* a number this long is huge or nonsense: assume the most */
            }
        }
        long cap = key == KG_BODY_K_MAX_TOKENS ? 1000000000L : 128L;
        long n = !(d > 0) ? 0 : d >= (double)cap ? cap : (long)ceil(d);
        long *field = key == KG_BODY_K_MAX_TOKENS ? &out->max_tokens : &out->choices;
        if (n > *field)
            *field = n;
    }
}

static int on_number(void *ctx, const char *v, size_t len)
{
    scan_t *s = ctx;
    if (!on_value_start(s, false))
        return 0;
    if (s->depth == 1)
        kg__body_number(s->out, s->key, v, len);
    return 1;
}

void kg__body_model(kg_body_info_t *out, const char *v, size_t len, size_t start, size_t end)
{
    out->model_start = start, out->model_end = end;
    out->model_is_string = true;
    if (len > KG_BODY_MODEL_MAX)
        len = KG_BODY_MODEL_MAX + 1; /* too long to be a name: kept distinct, found nowhere */
    size_t copy = len <= KG_BODY_MODEL_MAX ? len : KG_BODY_MODEL_MAX;
    memcpy(out->model, v, copy);
    out->model[copy] = '\0';
    out->model_len = len;
}

void kg__body_messages(kg_body_info_t *out, const char *body, size_t len, size_t open)
{
    size_t i = open + kg__body_first(body + open, len - open);
    out->has_messages = true;
    out->messages_open = open;
    out->messages_empty = i < len && body[i] == ']';
}

static int on_string(void *ctx, const unsigned char *v, size_t len)
{
    scan_t *s = ctx;
    if (!on_value_start(s, false))
        return 0;
    if (!utf8_valid(v, len))
        return fail(s, "The request body is not valid UTF-8.");
    if (s->depth == 1) {
        if (s->key == KG_BODY_K_MODEL) {
            /* The token ends where yajl stopped; it starts at the first '"' after the key's ':'. */
            size_t end = yajl_get_bytes_consumed(s->h), start = s->key_end;
            while (start < end && s->body[start] != '"')
                start++;
            kg__body_model(s->out, (const char *)v, len, start, end);
        } else if (s->key == KG_BODY_K_INPUT) {
            s->out->n_inputs = 1;
        } else if (s->key == KG_BODY_K_ENCODING_FORMAT) {
            s->out->encoding_base64 = len == 6 && memcmp(v, "base64", 6) == 0;
        }
    } else if (s->depth == 2 && s->key == KG_BODY_K_INPUT) {
        s->input_all_numbers = false;
    }
    return 1;
}

static int start_container(scan_t *s, bool is_map)
{
    if (!on_value_start(s, is_map))
        return 0;
    if (s->depth == 2 && s->key == KG_BODY_K_INPUT)
        s->input_all_numbers = false;
    if (++s->depth > KG_BODY_MAX_DEPTH)
        return fail(s, "The request body nests deeper than 64 levels.");
    return 1;
}

static int on_start_array(void *ctx)
{
    scan_t *s = ctx;
    if (s->depth == 1 && s->key == KG_BODY_K_MESSAGES)
        kg__body_messages(s->out, s->body, s->len, yajl_get_bytes_consumed(s->h));
    if (s->depth == 1 && s->key == KG_BODY_K_INPUT) {
        s->input_is_array = true;
        s->input_all_numbers = true;
        s->out->n_inputs = 0;
    }
    return start_container(s, false);
}

static int on_start_map(void *ctx)
{
    return start_container(ctx, true);
}

static int on_end_container(void *ctx)
{
    scan_t *s = ctx;
    s->depth--;
    if (s->depth == 1 && s->key == KG_BODY_K_INPUT && s->input_is_array) {
        if (s->input_all_numbers && s->out->n_inputs > 0)
            s->out->n_inputs = 1; /* one input given as token ids */
        s->input_is_array = false;
    }
    return 1;
}

kg_body_key_t kg__body_classify(const char *k, size_t len)
{
    /* Lengths written out: every member name of every request is looked up here. */
#define KNOWN(name, key)                                                                                               \
    {                                                                                                                  \
        name, sizeof(name) - 1, key                                                                                    \
    }
    static const struct {
        const char *name;
        size_t len;
        kg_body_key_t key;
    } known[] = {KNOWN("model", KG_BODY_K_MODEL),
                 KNOWN("stream", KG_BODY_K_STREAM),
                 KNOWN("stream_options", KG_BODY_K_STREAM_OPTIONS),
                 KNOWN("input", KG_BODY_K_INPUT),
                 KNOWN("encoding_format", KG_BODY_K_ENCODING_FORMAT),
                 KNOWN("dimensions", KG_BODY_K_DIMENSIONS),
                 KNOWN("max_tokens", KG_BODY_K_MAX_TOKENS),
                 KNOWN("max_completion_tokens", KG_BODY_K_MAX_TOKENS),
                 KNOWN("n", KG_BODY_K_CHOICES),
                 KNOWN("best_of", KG_BODY_K_CHOICES),
                 KNOWN("messages", KG_BODY_K_MESSAGES)};
#undef KNOWN
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].len == len && memcmp(known[i].name, k, len) == 0)
            return known[i].key;
    return KG_BODY_K_OTHER;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len)
{
    scan_t *s = ctx;
    if (!utf8_valid(k, len))
        return fail(s, "The request body is not valid UTF-8.");
    if (s->depth == 2 && s->key == KG_BODY_K_STREAM_OPTIONS)
        s->in_usage_key = len == 13 && memcmp(k, "include_usage", 13) == 0;
    if (s->depth != 1)
        return 1;
    switch (kg__body_names_add(&s->names, s->alloc, (const char *)k, len)) {
    case KG_BODY_NAME_NEW: break;
    case KG_BODY_NAME_REPEATED:
        /* A duplicated top-level member is refused: the upstream might read the other copy. */
        kg_error_set(s->err, KG_EINVALID_JSON, NULL, "The request body repeats the member \"%.*s\".",
                     len > 64 ? 64 : (int)len, (const char *)k);
        return 0;
    case KG_BODY_NAME_TOO_MANY: return fail(s, "The request body has more top-level members than any request needs.");
    }
    s->key = kg__body_classify((const char *)k, len);
    s->key_end = yajl_get_bytes_consumed(s->h);
    if (s->key == KG_BODY_K_MODEL)
        s->out->has_model = true;
    if (s->key == KG_BODY_K_STREAM_OPTIONS)
        s->out->has_stream_options = true;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number, /* raw numbers: no conversion, so no overflow error either */
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_container,
};

kg_err_t kg__body_scan_exact(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out,
                             kg_error_t *err)
{
    yajl_alloc_funcs funcs = {pool_malloc, pool_realloc, pool_free, (void *)alloc};
    scan_t s = {.body = body, .len = len, .alloc = alloc, .out = out, .err = err};
    memset(out, 0, sizeof(*out));
    err->code = KG_OK;

    if (kg__body_first(body, len) == len)
        return kg_error_set(err, KG_EINVALID_JSON, NULL, "The request body must be a JSON object.");
    yajl_handle h = yajl_alloc(&callbacks, &funcs, &s);
    s.h = h;
    yajl_status st = yajl_parse(h, (const unsigned char *)body, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st != yajl_status_ok && err->code == KG_OK) {
        /* yajl's own message, without the verbose excerpt of the body */
        unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)body, len);
        char text[160];
        snprintf(text, sizeof(text), "%s", (const char *)msg);
        for (char *p = text + strlen(text); p > text && (p[-1] == '\n' || p[-1] == ' ' || p[-1] == '.'); p--)
            p[-1] = '\0';
        yajl_free_error(h, msg);
        kg_error_set(err, KG_EINVALID_JSON, NULL, "The request body is not valid JSON: %s.", text);
    }
    if (st == yajl_status_ok && !s.started)
        kg_error_set(err, KG_EINVALID_JSON, NULL, "The request body must be a JSON object.");
    yajl_free(h);
    return err->code;
}

kg_err_t kg_body_scan(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out, kg_error_t *err)
{
    if (kg__body_scan_fast(body, len, alloc, out)) {
        err->code = KG_OK;
        return KG_OK;
    }
    return kg__body_scan_exact(body, len, alloc, out, err);
}
