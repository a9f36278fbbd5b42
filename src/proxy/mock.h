/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the built-in `mock` provider (SPEC §7a): it answers chat, completions and
 * embeddings in OpenAI's wire format from the event loop itself, streaming word by word with a
 * real pause between chunks, so a newcomer can try everything without a provider account.
 */
#ifndef KG_PROXY_MOCK_H
#define KG_PROXY_MOCK_H

#include <h2o.h>

#include "json/body_scan.h"
#include "usage/meter.h"

#define KG_MOCK_TICK_MS 25          /* pause between streamed chunks */
#define KG_MOCK_MAX_INPUTS 2048     /* OpenAI's own limit per embeddings call */
#define KG_MOCK_MAX_DIMENSIONS 3072 /* the largest OpenAI embedding */

typedef enum kg_mock_route { KG_MOCK_CHAT, KG_MOCK_COMPLETIONS, KG_MOCK_EMBEDDINGS } kg_mock_route_t;

/**
 * Answers req as the demo model `model`. `tick` is the loop's KG_MOCK_TICK_MS timeout list;
 * `body_len` sizes the reported prompt tokens. What it sends passes through `meter`, finished
 * before the last byte. Loop thread only; replies exactly once.
 */
void kg_mock_respond(h2o_req_t *req, h2o_timeout_t *tick, kg_mock_route_t route, const kg_body_info_t *info,
                     size_t body_len, const char *model, const char *request_id, kg_meter_t *meter);

#endif
