/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns forwarding to OpenAI-compatible upstreams (SPEC §4): h2o's HTTP/1 client on
 * a keep-alive socket pool per provider and event loop, TLS verified against the system store
 * or the provider's CA file, the provider's credential in place of the caller's, an allowlist
 * of request headers, the upstream's identifying and rate-limit headers dropped, and the
 * answer relayed as it arrives. Failures answer in SPEC §5's shape: 502 upstream_error,
 * 504 upstream_timeout, and a stream cut by the upstream ends with an error event.
 */
#ifndef KG_PROXY_UPSTREAM_H
#define KG_PROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "catalog/catalog.h"
#include "usage/meter.h"

/** Process-wide: one TLS context per upstream endpoint. */
typedef struct kg_upstreams kg_upstreams_t;
/** Per event loop: a socket pool and client context per upstream endpoint. */
typedef struct kg_upstream_loop kg_upstream_loop_t;

kg_upstreams_t *kg_upstreams_new(void);
void kg_upstreams_free(kg_upstreams_t *ups);
/**
 * Makes the TLS contexts of the catalog's endpoints not seen before (CA files are read here,
 * never on the request path). Call before publishing the catalog, from any thread. Returns
 * false (err filled) if one failed: that provider then answers 502; the others work.
 */
bool kg_upstreams_prepare(kg_upstreams_t *ups, const kg_catalog_t *cat, char *err, size_t err_cap);

/** Sets up the per-loop state; `queue` serves the asynchronous DNS lookups. Loop thread only. */
kg_upstream_loop_t *kg_upstream_loop_new(kg_upstreams_t *ups, h2o_loop_t *loop, h2o_multithread_queue_t *queue,
                                         uint64_t timeout_ms);
/** Disposes the per-loop state (pools close their idle sockets). Loop thread only. */
void kg_upstream_loop_free(kg_upstream_loop_t *ul);

/** What the gateway adds to a forwarded request. */
typedef struct kg_forward {
    const kg_provider_t *provider;
    h2o_iovec_t path_suffix; /* e.g. "/chat/completions", appended to the base URL's path */
    h2o_iovec_t body;
    bool stream;
    /* identity headers, sent only when the provider has forward_identity */
    const char *org_id, *team_id, *key_id, *environment;
    kg_meter_t *meter;   /* sees the answer's bytes; finished before the last one is sent */
    bool withhold_usage; /* the gateway asked for the stream's usage chunk: the meter sees it, the caller not */
} kg_forward_t;

/** Forwards req as described and relays the answer. Loop thread only; replies exactly once. */
void kg_upstream_forward(kg_upstream_loop_t *ul, h2o_req_t *req, const kg_forward_t *fwd);

#endif
