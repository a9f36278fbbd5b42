/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the usage record of issue 6: one per inference request, written by the worker
 * that served it into the journal (journal.h) before the response's last byte leaves, and from
 * there into the store in batches, once per request id. Fixed-size and pointer-free, so a
 * record can be copied into an mmap'd journal slot as it is.
 */
#ifndef KG_USAGE_USAGE_H
#define KG_USAGE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "keys/key_format.h"
#include "keys/token.h"

#define KG_USAGE_REQUEST_ID_MAX 31
#define KG_USAGE_MODEL_MAX 128 /* catalog model and agent names are at most 128 characters */

typedef enum kg_usage_route {
    KG_USAGE_CHAT = 1,
    KG_USAGE_COMPLETIONS = 2,
    KG_USAGE_EMBEDDINGS = 3,
} kg_usage_route_t;

typedef struct kg_usage_record {
    int64_t at_ms; /* unix milliseconds when the request finished */
    char request_id[KG_USAGE_REQUEST_ID_MAX + 1];
    char key_id[KG_KEY_ID_LEN + 1];
    char org_id[KG_NAME_MAX + 1];
    char team_id[KG_NAME_MAX + 1];               /* "" when the key has no team */
    char model[KG_USAGE_MODEL_MAX + 1];          /* as the client named it: a raw model or an agent */
    char upstream_model[KG_USAGE_MODEL_MAX + 1]; /* what the provider was asked for */
    int32_t route;                               /* kg_usage_route_t */
    int32_t status;                              /* the HTTP status the client got */
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cost_micro; /* micro-credits, from the model's prices */
    int64_t latency_us; /* request received → last byte queued */
    int64_t upstream_latency_us;
    bool stream;
    bool estimated; /* no usage came back: the reservation was billed */
} kg_usage_record_t;

const char *kg_usage_route_name(kg_usage_route_t r); /* "chat" | "completions" | "embeddings" */

#endif
