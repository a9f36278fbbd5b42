/* SPDX-License-Identifier: Apache-2.0
 *
 * This file answers slow clients with 408 request_timeout (SPEC §5). libh2o 2.2.5 only closes
 * a connection whose request does not arrive in time, without a response, so each connection
 * gets a watch: a timer armed while no request of it is being handled. When it fires and part
 * of a request is waiting in the socket's buffer, the 408 is written straight to the socket
 * (libh2o is not writing: it is still reading) and the socket is shut down, which libh2o then
 * sees as a read error and closes through its own path. An idle keep-alive connection is left
 * to libh2o's own, longer timeout.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"

typedef struct conn_watch {
    kg_worker_t *worker;
    h2o_socket_t *sock;
    h2o_timeout_entry_t timer;
    size_t busy; /* requests of this connection being handled (HTTP/2 may have several) */
} conn_watch_t;

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
        send_408(cw);
        return;
    }
    /* Idle between requests: libh2o closes it at its own timeout; look again later. */
    h2o_timeout_link(cw->worker->ctx.loop, &cw->worker->request_timeout, &cw->timer);
}

static void on_close(void *data)
{
    conn_watch_t *cw = data;
    if (h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_unlink(&cw->timer);
    free(cw);
}

void kg__watch_accept(kg_worker_t *w, h2o_socket_t *sock)
{
    conn_watch_t *cw = kg_xcalloc(1, sizeof(*cw)); /* cold path: once per connection */
    cw->worker = w;
    cw->sock = sock;
    cw->timer.cb = on_timer;
    sock->on_close.cb = on_close;
    sock->on_close.data = cw;
    h2o_timeout_link(w->ctx.loop, &w->request_timeout, &cw->timer);
}

typedef struct busy_guard {
    conn_watch_t *cw;
} busy_guard_t;

static void on_request_end(void *p)
{
    busy_guard_t *g = p;
    conn_watch_t *cw = g->cw;
    if (--cw->busy == 0 && !h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_link(cw->worker->ctx.loop, &cw->worker->request_timeout, &cw->timer);
}

void kg__watch_request(kg_worker_t *w, h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    (void)w;
    if (sock == NULL || sock->on_close.cb != on_close)
        return;
    conn_watch_t *cw = sock->on_close.data;
    busy_guard_t *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), on_request_end);
    g->cw = cw;
    if (cw->busy++ == 0 && h2o_timeout_is_linked(&cw->timer))
        h2o_timeout_unlink(&cw->timer);
}
