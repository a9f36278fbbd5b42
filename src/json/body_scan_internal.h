/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns what the two readers of a request body share (body_scan.h): the fast one on
 * simdjson's On Demand parser (body_scan_fast.cpp), which decides the bodies it fully
 * understands, and the exact one on yajl (body_scan.c), which decides every other body and
 * words every refusal. Both read member names, numbers and the model through the helpers
 * here; their parsing differs, and a differential fuzzer (fuzz/fuzz_body_scan.c) and a unit
 * test hold them to reading every body the fast one takes alike.
 */
#ifndef KG_JSON_BODY_SCAN_INTERNAL_H
#define KG_JSON_BODY_SCAN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "json/body_scan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The top-level members the gateway reads. */
typedef enum kg_body_key {
    KG_BODY_K_OTHER,
    KG_BODY_K_MODEL,
    KG_BODY_K_STREAM,
    KG_BODY_K_STREAM_OPTIONS,
    KG_BODY_K_INPUT,
    KG_BODY_K_ENCODING_FORMAT,
    KG_BODY_K_DIMENSIONS,
    KG_BODY_K_MAX_TOKENS,
    KG_BODY_K_CHOICES,
    KG_BODY_K_MESSAGES
} kg_body_key_t;

kg_body_key_t kg__body_classify(const char *name, size_t len);

/** JSON's whitespace (RFC 8259: space, tab, line feed, carriage return). */
static inline bool kg__body_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/** The offset of the first byte of body[0..len) that is not whitespace (len if none). */
static inline size_t kg__body_first(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && kg__body_is_space(body[i]))
        i++;
    return i;
}

/* The top-level member names seen so far, folded as lenient parsers match them (at most the
 * first KG_BODY_NAME_FOLDED bytes of each). */
#define KG_BODY_NAME_FOLDED 256
typedef struct kg_body_seen_name {
    const char *name;
    size_t len;
} kg_body_seen_name_t;

typedef struct kg_body_names {
    kg_body_seen_name_t *seen;
    size_t n, cap;
} kg_body_names_t;

typedef enum kg_body_name_verdict {
    KG_BODY_NAME_NEW,
    KG_BODY_NAME_REPEATED,
    KG_BODY_NAME_TOO_MANY
} kg_body_name_verdict_t;

/** Records top-level member `name` (decoded), unless it repeats one already seen or is one too many. */
kg_body_name_verdict_t kg__body_names_add(kg_body_names_t *names, const kg_body_alloc_t *alloc, const char *name,
                                          size_t len);

/** A number given to a top-level member `key` (its text as sent): dimensions, max_tokens, n, best_of. */
void kg__body_number(kg_body_info_t *out, kg_body_key_t key, const char *text, size_t len);

/** The model, a string token at body[start, end) whose decoded value is v[0..len). */
void kg__body_model(kg_body_info_t *out, const char *v, size_t len, size_t start, size_t end);

/** The "messages" array whose '[' ends at body[open - 1]. */
void kg__body_messages(kg_body_info_t *out, const char *body, size_t len, size_t open);

/**
 * The fast reader: true when it read the body (a JSON object simdjson accepts, every SPEC §4
 * rule holding) and filled *out exactly as the exact reader would; false when the exact reader
 * must decide (any error, a rule broken, a number or escape simdjson does not take, an object
 * nested deeper than KG_BODY_MAX_DEPTH). Allocates only from `alloc` once warm (a thread's
 * parser and padded copy grow to the largest body seen, up to a bound).
 */
bool kg__body_scan_fast(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out);

/** The exact reader, on yajl: what kg_body_scan returns when the fast one declines. */
kg_err_t kg__body_scan_exact(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out,
                             kg_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
