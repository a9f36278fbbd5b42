/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the reading of an inference request body on the request path: one pass that
 * finds what the gateway decides on (model, stream, the shape of input) without building a
 * tree, and refuses what could make the gateway and the upstream disagree (SPEC §4): a
 * duplicated top-level member, invalid UTF-8, nesting deeper than 64. simdjson reads the bodies
 * it fully understands, yajl the rest (body_scan_internal.h). Memory for the result comes from
 * the caller's allocator (the request pool), nothing freed piecemeal; each thread also keeps
 * simdjson's parser and a padded copy of the body, sized to the bodies it has read.
 */
#ifndef KG_JSON_BODY_SCAN_H
#define KG_JSON_BODY_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define KG_BODY_MAX_DEPTH 64
#define KG_BODY_MODEL_MAX 256
#define KG_BODY_MAX_MEMBERS 256 /* top-level members; OpenAI's request objects have under 50 */

typedef struct kg_body_info {
    bool has_model;
    bool model_is_string;
    char model[KG_BODY_MODEL_MAX + 1]; /* NUL-terminated copy */
    size_t model_len;
    bool stream;             /* "stream": true */
    bool include_usage;      /* "stream_options": {"include_usage": true} */
    bool has_stream_options; /* a top-level "stream_options" member, whatever its value */
    size_t n_inputs;         /* embeddings: 1 for a string or token array, else the list's length */
    bool encoding_base64;    /* "encoding_format": "base64" */
    long dimensions;         /* "dimensions", 0 if absent */
    long max_tokens;         /* the larger of "max_tokens" and "max_completion_tokens" (capped at 1e9), 0 if absent */
    long choices;            /* the larger of "n" and "best_of" (capped at 128), 0 if absent */
    /* Byte offsets for the permitted rewrites of SPEC §4 (every other byte is kept): */
    size_t model_start, model_end; /* the model's string token, quotes included */
    bool has_messages;             /* "messages" is an array */
    size_t messages_open;          /* just after its '[' */
    bool messages_empty;
} kg_body_info_t;

/** An allocator for the parser: `alloc` never fails (it aborts or uses a pool that grows). */
typedef struct kg_body_alloc {
    void *(*alloc)(void *ctx, size_t size);
    void *ctx;
} kg_body_alloc_t;

/**
 * Scans body[0..len). Returns KG_OK with *out filled, or fills err (400 invalid_json with a
 * message naming the problem). A missing or non-string model is reported through out, not as
 * an error: routes decide what they need.
 */
kg_err_t kg_body_scan(const char *body, size_t len, const kg_body_alloc_t *alloc, kg_body_info_t *out,
                      kg_error_t *err) KG_MUST_CHECK;

#endif
