/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the HTTP front end: one libh2o event loop per worker thread, each with its
 * own SO_REUSEPORT listener, the route table (health, admin; the data plane joins later), and
 * graceful shutdown (stop accepting, let in-flight requests finish, then stop).
 */
#ifndef KG_HTTP_SERVER_H
#define KG_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin/admin.h"
#include "catalog/catalog.h"
#include "keys/key_index.h"

typedef struct kg_server kg_server_t;
struct kg_upstreams;
struct kg_feed_catalog;
struct kg_journal;

typedef struct kg_server_options {
    const char *listen;     /* "host:port" */
    int workers;            /* >= 1 */
    const uint8_t *eph_key; /* borrowed: the ephemeral-token signing key (NULL: none accepted) */
    size_t max_body_bytes;
    size_t max_header_bytes;
    uint64_t upstream_timeout_ms;
    uint64_t request_timeout_ms;
    int64_t default_max_tokens;                 /* completion tokens reserved for a request without max_tokens */
    struct kg_upstreams *upstreams;             /* borrowed: TLS contexts per endpoint (the catalog itself is
                                                   read through kg_catalog_current()) */
    const struct kg_feed_catalog *catalog_feed; /* borrowed: how the admin worker applies catalog changes */
    kg_key_index_t *index;                      /* borrowed: read on every request */
    kg_store_t *admin_store;                    /* taken: the admin worker's own connection */
    const kg_config_t *cfg;                     /* borrowed */
    struct kg_journal *journal;                 /* borrowed: usage records go here (NULL: not recorded) */
    const char *metrics_listen;                 /* "host:port" of the metrics listener; NULL, "" or "off": none */
} kg_server_options_t;

/** Binds the listeners and starts the worker threads. NULL with err filled on failure. */
kg_server_t *kg_server_start(const kg_server_options_t *opts, char *err, size_t err_cap);

/** The port actually bound (useful with port 0). */
int kg_server_port(const kg_server_t *s);
/** The metrics listener's port, 0 when there is none. */
int kg_server_metrics_port(const kg_server_t *s);

/**
 * Stops accepting, waits up to drain_ms for in-flight requests to finish, joins every thread
 * and frees the server (closing the admin store).
 */
void kg_server_stop(kg_server_t *s, int drain_ms);

#endif
