/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns keygate's HTTP/1.1 connections to upstream providers: one pool per event loop
 * and endpoint whose idle connections stay registered with the loop and keep reading (a byte or
 * a close on an idle connection retires it), so taking and returning one costs no syscall —
 * libh2o 2.2.5's socket pool exports and re-imports the socket each time (epoll_ctl, fcntl,
 * recv(MSG_PEEK): about six of the twelve syscalls of a proxied request). New connections are
 * made by libh2o's socket pool (name resolution, connect), TLS by h2o_socket_ssl_handshake;
 * responses are framed by content-length, chunked encoding (picohttpparser, exported by
 * libh2o) or the close. The callbacks mirror h2o_http1client's so the forwarding code reads the
 * same. Loop thread only.
 */
#ifndef KG_PROXY_UPCONN_H
#define KG_PROXY_UPCONN_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>
#include <openssl/ssl.h>

typedef struct kg_upconn_pool kg_upconn_pool_t;
typedef struct kg_upconn kg_upconn_t;

/** The `errstr` of a body callback whose response ended normally. */
extern const char *const kg_upconn_error_is_eos;

/**
 * Body bytes arrived (errstr NULL; they are in c->sock->input, which the callee may take), or
 * the response ended (kg_upconn_error_is_eos) or failed (any other string). After a non-NULL
 * errstr the exchange is over and `c` must not be used again.
 */
typedef int (*kg_upconn_body_cb)(kg_upconn_t *c, const char *errstr);
/**
 * The response head, or a failure before it (errstr non-NULL; the exchange is over). Return the
 * body callback, or NULL to abandon the exchange (the connection is closed). With errstr ==
 * kg_upconn_error_is_eos the response has no body and the exchange is over.
 */
typedef kg_upconn_body_cb (*kg_upconn_head_cb)(kg_upconn_t *c, const char *errstr, int status, h2o_iovec_t msg,
                                               h2o_header_t *headers, size_t num_headers);

struct kg_upconn {
    void *data;         /* the caller's, for the callbacks */
    h2o_socket_t *sock; /* during a body callback: the response body is in sock->input */
};

/**
 * A pool for host:port (ssl_ctx non-NULL: TLS, the certificate checked for `host`); idle
 * connections are closed after idle_ms. `io_timeout` bounds connect, send and every read.
 */
kg_upconn_pool_t *kg_upconn_pool_new(h2o_loop_t *loop, h2o_multithread_receiver_t *getaddr_receiver,
                                     h2o_timeout_t *io_timeout, const char *host, uint16_t port, SSL_CTX *ssl_ctx,
                                     uint64_t idle_ms);
/** Closes every idle connection; no exchange may be running. */
void kg_upconn_pool_free(kg_upconn_pool_t *pool);

/**
 * Sends the request (reqbufs must live until the head callback) on an idle connection, or a
 * new one; *out is the exchange's handle until its last callback. When a reused connection
 * turns out to have been closed by the upstream, the request is sent again once on a new one if
 * its write failed, or if it is `replayable` (it carries an Idempotency-Key the upstream honours).
 */
void kg_upconn_request(kg_upconn_t **out, void *data, kg_upconn_pool_t *pool, h2o_iovec_t *reqbufs, size_t n,
                       bool replayable, kg_upconn_head_cb on_head);
/** Abandons an exchange (the client left): its connection is closed, no callback follows. */
void kg_upconn_cancel(kg_upconn_t *c);

#endif
