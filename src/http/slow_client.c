/* SPDX-License-Identifier: Apache-2.0
 *
 * This file answers slow clients with 408 request_timeout (SPEC §5). libh2o 2.2.5 only closes
 * a connection whose request does not arrive in time, without a response, so each connection
 * gets a watch: a timer armed while no request of it is being handled. When it fires and part
 * of a request is waiting in the socket's buffer, the 408 is written straight to the socket
 * (libh2o is not writing: it is still reading) and the socket is shut down, which libh2o then
 * sees as a read error and closes through its own path. An idle keep-alive connection is left
 * to libh2o's own, longer timeout.
 *
 * The watch also lingers after an early error (413): libh2o closes a connection with unread
 * input, which resets it, and a client still uploading never reads the answer. So the watch
 * keeps a duplicate of the socket, and when libh2o closes its own, shuts down our sending side
 * and reads and discards for a bounded time (as nginx's lingering close does).
 *
 * And it spares an HTTP/1 connection two syscalls per request: libh2o stops polling the socket
 * when a request has arrived (the request points into its input buffer, which more reading
 * could move) and polls it again after the answer, an epoll_ctl each way — 8 % of a proxied
 * request's CPU (perf). The watch keeps the socket polled meanwhile, with libh2o told not to
 * read from it; if anything does arrive (a pipelined request, a close), polling stops there as
 * libh2o would have stopped it, and libh2o reads it after the answer as before.
 *
 * And it holds the secret the connection presented last, for auth.c.
 */
#include "http/http_internal.h"
#include "http/request_scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"

typedef struct conn_watch {
    kg_worker_t *worker;
    h2o_socket_t *sock;
    h2o_timeout_entry_t timer;
    size_t busy;                  /* requests of this connection being handled (HTTP/2 may have several) */
    unsigned ticks_with_input;    /* consecutive ticks (half the timeout apart) that found a partial request */
    int linger_fd;                /* a dup of the socket kept past libh2o's close, or -1 */
    bool polled;                  /* HTTP/1: kept polled (not read) while its request is handled */
    struct conn_watch *next_free; /* in the worker's free list, once its connection has closed */
    kg_secret_memo_t memo;        /* the connection's last secret (auth.c) */
} conn_watch_t;

/* Watches of closed connections, kept per worker for the next ones: clients that open
 * connections all the time cost no allocation in steady state. Loop thread only. */
#define FREE_WATCHES_MAX 1024

static conn_watch_t *watch_new(kg_worker_t *w)
{
    conn_watch_t *cw = w->free_watches;
    if (cw != NULL) {
        w->free_watches = cw->next_free, w->n_free_watches--;
        memset(cw, 0, sizeof(*cw));
        return cw;
    }
    return kg_xcalloc(1, sizeof(*cw)); /* warming up, or more connections than ever before */
}

static void watch_free(conn_watch_t *cw)
{
    kg_worker_t *w = cw->worker;
    kg_secret_wipe(&cw->memo, sizeof(cw->memo)); /* no secret outlives its connection */
    if (w->n_free_watches >= FREE_WATCHES_MAX) {
        free(cw);
        return;
    }
    cw->next_free = w->free_watches;
    w->free_watches = cw, w->n_free_watches++;
}

#define LINGER_MAX_BYTES (64u << 20)

typedef struct lingering {
    h2o_socket_t *sock;
    h2o_timeout_entry_t timer;
    size_t drained;
} lingering_t;

static void linger_end(lingering_t *l)
{
    if (h2o_timeout_is_linked(&l->timer))
        h2o_timeout_unlink(&l->timer);
    h2o_socket_close(l->sock);
    free(l);
}

static void on_lingering_timeout(h2o_timeout_entry_t *entry)
{
    linger_end(H2O_STRUCT_FROM_MEMBER(lingering_t, timer, entry));
}

static void on_linger_read(h2o_socket_t *sock, const char *err)
{
    lingering_t *l = sock->data;
    l->drained += sock->input->size;
    h2o_buffer_consume(&sock->input, sock->input->size);
    if (err != NULL || l->drained > LINGER_MAX_BYTES)
        linger_end(l);
}

/* libh2o has closed its descriptor; ours keeps the connection: finish sending, drain, close. */
static void start_linger(kg_worker_t *w, int fd)
{
    shutdown(fd, SHUT_WR);
    lingering_t *l = kg_xcalloc(1, sizeof(*l)); /* cold path: after an early error only */
    l->sock = h2o_evloop_socket_create(w->ctx.loop, fd, 0);
    l->sock->data = l;
    l->timer.cb = on_lingering_timeout;
    h2o_timeout_link(w->ctx.loop, &w->linger_timeout, &l->timer);
    h2o_socket_read_start(l->sock, on_linger_read);
}

static void send_408(conn_watch_t *cw)
{
    static const char body[] = "{\"error\":{\"message\":\"The request took too long to arrive.\",\"type\":"
                               "\"invalid_request_error\",\"param\":null,\"code\":\"request_timeout\"}}";
    char head[256];
    int fd = h2o_socket_get_fd(cw->sock);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                     "connection: close\r\nserver: keygate\r\n\r\n",
                     sizeof(body) - 1);
    if (fd < 0 || n <= 0)
        return;
    /* Best effort: the socket is idle on our side and the reply fits in its send buffer. */
    if (write(fd, head, (size_t)n) == n && write(fd, body, sizeof(body) - 1) == (ssize_t)(sizeof(body) - 1)) {
    }
    shutdown(fd, SHUT_RDWR);
}

static void on_timer(h2o_timeout_entry_t *entry)
{
    conn_watch_t *cw = H2O_STRUCT_FROM_MEMBER(conn_watch_t, timer, entry);
    if (cw->busy != 0)
        return;
    if (cw->sock->input != NULL && cw->sock->input->size > 0) {
        /* The timer ticks every half timeout: the third tick in a row with a partial request
         * waiting means it has been arriving for at least a whole timeout (at most 1.5). */
        if (++cw->ticks_with_input >= 3) {
            send_408(cw);
            return;
        }
    } else {
        cw->ticks_with_input = 0;
    }
    /* Idle between requests: libh2o closes it at its own timeout; look again later. */
    h2o_timeout_link(cw->worker->ctx.loop, &cw->worker->request_timeout, &cw->timer);
}

static void on_close(void *data)
{
    conn_watch_t *cw = data;
    if (h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_unlink(&cw->timer);
    if (cw->linger_fd >= 0)
        start_linger(cw->worker, cw->linger_fd);
    watch_free(cw);
}

void kg__watch_free_all(kg_worker_t *w)
{
    while (w->free_watches != NULL) {
        conn_watch_t *cw = w->free_watches;
        w->free_watches = cw->next_free;
        free(cw);
    }
    w->n_free_watches = 0;
}

void kg__watch_accept(kg_worker_t *w, h2o_socket_t *sock)
{
    conn_watch_t *cw = watch_new(w);
    cw->worker = w;
    cw->sock = sock;
    cw->timer.cb = on_timer;
    cw->linger_fd = -1;
    sock->on_close.cb = on_close;
    sock->on_close.data = cw;
    h2o_timeout_link(w->ctx.loop, &w->request_timeout, &cw->timer);
}

typedef struct busy_guard {
    conn_watch_t *cw;
} busy_guard_t;

/* The client sent something while its request was being handled: stop polling, as libh2o had. */
static void on_input_while_busy(h2o_socket_t *sock, const char *err)
{
    conn_watch_t *cw = sock->on_close.data;
    (void)err; /* nothing was read: a close or an error shows when libh2o reads again */
    cw->polled = false;
    h2o_socket_dont_read(sock, 0);
    h2o_socket_read_stop(sock);
}

static void on_request_end(void *p)
{
    busy_guard_t *g = p;
    conn_watch_t *cw = g->cw;
    if (cw->polled) {
        /* Left as libh2o left it, not reading. libh2o starts reading right after this, in the same
         * loop iteration (http1.c: on_send_complete disposes of the request, then reads again), so
         * the poll registration still does not change; or it closes the connection. */
        cw->polled = false;
        h2o_socket_dont_read(cw->sock, 0);
        h2o_socket_read_stop(cw->sock);
    }
    if (--cw->busy == 0 && !h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_link(cw->worker->ctx.loop, &cw->worker->request_timeout, &cw->timer);
}

/* The watch of the request's connection, if a worker accepted it. */
static conn_watch_t *watch_of(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    return sock != NULL && sock->on_close.cb == on_close ? sock->on_close.data : NULL;
}

void kg__watch_request(kg_worker_t *w, h2o_req_t *req)
{
    conn_watch_t *cw = watch_of(req);
    (void)w;
    if (cw == NULL)
        return;
    h2o_socket_t *sock = cw->sock;
    busy_guard_t *g = kg_request_scoped(req, sizeof(*g), on_request_end);
    g->cw = cw;
    cw->ticks_with_input = 0;
    if (cw->busy == 0 && req->version < 0x200) {
        /* libh2o has just stopped reading (http1.c, before handing over the request): started
         * again within the same loop iteration, the socket's poll registration never changes. */
        cw->polled = true;
        h2o_socket_dont_read(sock, 1);
        h2o_socket_read_start(sock, on_input_while_busy);
    }
    if (cw->busy++ == 0 && h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_unlink(&cw->timer);
}

kg_secret_memo_t *kg__watch_secret_memo(h2o_req_t *req)
{
    conn_watch_t *cw = watch_of(req);
    return cw != NULL ? &cw->memo : NULL;
}

void kg__watch_linger(h2o_req_t *req)
{
    conn_watch_t *cw = watch_of(req);
    if (cw != NULL && cw->linger_fd < 0)
        cw->linger_fd = dup(h2o_socket_get_fd(cw->sock));
}
