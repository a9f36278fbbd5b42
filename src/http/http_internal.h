/* SPDX-License-Identifier: Apache-2.0
 *
 * Private to src/http/: the per-thread worker and the helpers the route files share.
 */
#ifndef KG_HTTP_HTTP_INTERNAL_H
#define KG_HTTP_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <h2o.h>

#include "core/err.h"
#include "keys/key_format.h"
#include "keys/key_hash.h"
#include "http/server.h"

typedef struct kg_admin_worker kg_admin_worker_t;
typedef struct kg_upstream_loop kg_upstream_loop_t;
typedef struct kg_journal_writer kg_journal_writer_t;
typedef struct kg_metrics kg_metrics_t;

typedef struct kg_worker {
    h2o_context_t ctx; /* first: handlers find their worker from req->conn->ctx */
    h2o_accept_ctx_t accept;
    h2o_socket_t *listener;
    int listen_fd;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t admin_replies; /* answers from the admin worker */
    h2o_multithread_receiver_t control;       /* shutdown requests */
    size_t in_flight;                         /* asynchronous requests not yet answered */
    kg_upstream_loop_t *upstream;             /* socket pools per provider */
    h2o_timeout_t mock_tick;                  /* paces the demo provider's streams */
    h2o_timeout_t request_timeout;            /* slow clients get 408 after this */
    h2o_timeout_t linger_timeout;             /* how long a closed connection's input is drained */
    char request_id_prefix[16];
    uint64_t request_counter;
    char request_id[32];          /* of the request being handled */
    kg_journal_writer_t *journal; /* this worker's usage journal segment (NULL: not recorded) */
    kg_metrics_t *metrics;        /* this worker's counters (only this thread writes them) */
    h2o_linklist_t metered;       /* admitted inference requests not yet released */
    /* The body scan's memory (yajl's handle, lexer and buffer, the member names), needed only while
     * it runs: a request costs no malloc for it (yajl's 2 KiB buffer is more than libh2o's pool
     * serves from a chunk). Larger needs spill into the request's pool. */
    _Alignas(16) unsigned char scan_arena[16384];
    struct conn_watch *free_watches; /* slow_client.c: watches of closed connections, for reuse */
    size_t n_free_watches;
    h2o_accept_ctx_t metrics_accept; /* worker 0 only: the metrics listener's routes */
    h2o_socket_t *metrics_listener;
    bool stopping;
    pthread_t tid;
    struct kg_server *server;
} kg_worker_t;

struct kg_server {
    h2o_globalconf_t config;
    h2o_globalconf_t metrics_config; /* the metrics listener: GET /metrics and nothing else */
    int metrics_port;                /* 0: no metrics listener */
    kg_server_options_t opts;
    kg_worker_t *workers;
    size_t n_workers;
    int port;
    int drain_ms;
    kg_admin_worker_t *admin;
    struct kg_upstreams *upstreams;
};

/** Sends a JSON reply of `len` bytes (copied into the request pool; wiped when the request ends). */
void kg__http_send_json(h2o_req_t *req, int status, const char *body, size_t len);

/** Sends SPEC §5's error JSON; 401s carry WWW-Authenticate. */
void kg__http_send_error(h2o_req_t *req, const kg_error_t *err);
void kg__http_fail(h2o_req_t *req, kg_err_t code, const char *message);

/* auth.c */
/**
 * Authenticates the request's credential (SPEC §2 forms) against the key index: KG_OK with
 * *view filled, or the error to answer (missing, invalid, conflicting, disabled, expired,
 * revoked, origin not allowed). No allocation, no store access. When a secret was presented
 * and secret_hash is not NULL, its hash is written there (the admin worker checks it again
 * when the job runs; the caller wipes it) and *has_hash set; otherwise the hash is wiped.
 * Call it inside kg_key_index_read_lock(): the view's strings and policy point into the index.
 */
kg_err_t kg__http_authenticate(kg_worker_t *worker, h2o_req_t *req, kg_key_view_t *view,
                               uint8_t secret_hash[KG_KEY_HASH_BYTES], bool *has_hash) KG_MUST_CHECK;

/* The secret a connection presented last, and its SHA-256 (auth.c). Wiped when the connection
 * closes. */
typedef struct kg_secret_memo {
    uint8_t hash[KG_KEY_HASH_BYTES];
    size_t len; /* 0: none */
    char secret[KG_KEY_SECRET_MAX];
} kg_secret_memo_t;

/* slow_client.c */
/** The memo of the request's connection, or NULL if the connection has no watch. */
kg_secret_memo_t *kg__watch_secret_memo(h2o_req_t *req);
/** Frees the worker's reusable watches (its loop has stopped). */
void kg__watch_free_all(kg_worker_t *worker);
/** Starts watching a new connection for a request that is too slow to arrive (408). */
void kg__watch_accept(kg_worker_t *worker, h2o_socket_t *sock);
/** Marks a request of the connection as being handled until it ends. */
void kg__watch_request(kg_worker_t *worker, h2o_req_t *req);
/** After an early error that closes the connection: linger so the client can read the answer. */
void kg__watch_linger(h2o_req_t *req);

/* dataplane.c */
bool kg__dataplane_matches(h2o_iovec_t path);
/** Adds Vary: Origin and, for an origin of an active publishable key, the CORS answer headers. */
void kg__cors_apply(kg_worker_t *worker, h2o_req_t *req);
void kg__dataplane_handle(kg_worker_t *worker, h2o_req_t *req, h2o_iovec_t path);
/** The drain ran out of time: journals the usage of every admitted request still running. */
void kg__dataplane_abandon(kg_worker_t *worker);

/* metrics_http.c */
/** Answers GET /metrics with every worker's counters (no authentication: the caller decided). */
void kg__metrics_send(kg_worker_t *worker, h2o_req_t *req);
/** GET /metrics on the main listener: the root admin key only. */
void kg__metrics_handle_main(kg_worker_t *worker, h2o_req_t *req);

/* admin_http.c */
kg_admin_worker_t *kg__admin_worker_start(kg_store_t *store, const kg_config_t *cfg, kg_key_index_t *index,
                                          const struct kg_feed_catalog *catalog);
void kg__admin_worker_stop(kg_admin_worker_t *w);
/** Authenticates an admin call and hands it to the admin worker; the reply comes back async. */
void kg__admin_http_handle(kg_worker_t *worker, h2o_req_t *req, h2o_iovec_t path);
/** The receiver callback for admin replies (runs on the worker's loop). */
void kg__admin_http_on_replies(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

#endif
