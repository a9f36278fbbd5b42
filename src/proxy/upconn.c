/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the upstream connections of upconn.h. One object is both a connection
 * and, while busy, the exchange running on it (so a retry on a fresh connection keeps the
 * caller's handle). States: connecting → sending → head → body → idle (or closed).
 */
#include "proxy/upconn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/alloc.h"

/* picohttpparser, built into libh2o 2.2.5 (its header is not shipped). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

#define MAX_HEADERS 100
#define MAX_HEAD_BYTES 65536

const char *const kg_upconn_error_is_eos = "end of response";

struct kg_upconn_pool {
    h2o_loop_t *loop;
    h2o_multithread_receiver_t *getaddr_receiver;
    h2o_timeout_t *io_timeout;
    h2o_timeout_t idle_timeout;
    h2o_socketpool_t sockets; /* connects only: its sockets are never given back to it */
    SSL_CTX *ssl_ctx;
    char *host;
    h2o_linklist_t idle; /* conn_t.idle_link, most recently used first */
};

typedef enum { S_CONNECTING, S_SENDING, S_HEAD, S_BODY, S_IDLE } state_t;
typedef enum { F_UNTIL_CLOSE, F_LENGTH, F_CHUNKED } framing_t;

typedef struct conn {
    kg_upconn_t super;
    kg_upconn_pool_t *pool;
    state_t state;
    h2o_socketpool_connect_request_t *connect_req;
    h2o_linklist_t idle_link;
    h2o_timeout_entry_t timeout; /* the I/O timeout while busy, the idle timeout while idle */
    bool reading;
    /* the exchange */
    kg_upconn_head_cb on_head;
    kg_upconn_body_cb on_body;
    h2o_iovec_t *reqbufs;
    size_t n_reqbufs;
    bool reused;            /* taken from the idle list: a close before any answer byte may be retried once */
    bool replayable;        /* the upstream can tell a second copy of the request (Idempotency-Key) */
    bool answered;          /* some answer byte arrived */
    const char *read_error; /* a read failed while the request was being sent */
    bool keepalive;         /* the connection may serve another exchange after this one */
    framing_t framing;
    size_t bytes_left; /* F_LENGTH */
    struct phr_chunked_decoder chunked;
} conn_t;

static void on_read(h2o_socket_t *sock, const char *err);
static void connect_new(conn_t *c);

static void set_timeout(conn_t *c, h2o_timeout_t *which)
{
    if (h2o_timeout_is_linked(&c->timeout))
        h2o_timeout_unlink(&c->timeout);
    if (which != NULL)
        h2o_timeout_link(c->pool->loop, which, &c->timeout);
}

static void close_conn(conn_t *c)
{
    set_timeout(c, NULL);
    if (h2o_linklist_is_linked(&c->idle_link))
        h2o_linklist_unlink(&c->idle_link);
    if (c->connect_req != NULL)
        h2o_socketpool_cancel_connect(c->connect_req);
    if (c->super.sock != NULL)
        h2o_socket_close(c->super.sock);
    free(c);
}

static void fail_before_head(conn_t *c, const char *errstr)
{
    kg_upconn_head_cb cb = c->on_head;
    c->on_head = NULL;
    cb(&c->super, errstr, 0, h2o_iovec_init(NULL, 0), NULL, 0);
    close_conn(c);
}

static void fail_body(conn_t *c, const char *errstr)
{
    c->on_body(&c->super, errstr);
    close_conn(c);
}

/*
 * A reused connection the upstream had closed while it was idle: the request goes out again,
 * once, on a new one — when the write itself failed (the upstream never had the request), or
 * when it closed without an answer byte and the request carries an Idempotency-Key. Otherwise
 * the upstream may have acted on it: a POST is not repeated blindly, the caller gets the 502.
 */
static bool retry_if_stale(conn_t *c, bool write_failed)
{
    if (!c->reused || c->answered || !(write_failed || c->replayable))
        return false;
    h2o_socket_close(c->super.sock);
    c->super.sock = NULL;
    c->reading = c->reused = false;
    connect_new(c);
    return true;
}

/* The exchange is over and its body taken: the connection waits for the next one, or closes. */
static void finish(conn_t *c)
{
    if (!c->keepalive || c->super.sock->input->size != 0) {
        close_conn(c);
        return;
    }
    c->state = S_IDLE;
    c->super.data = NULL;
    c->on_head = NULL, c->on_body = NULL, c->reqbufs = NULL;
    h2o_linklist_insert(c->pool->idle.next, &c->idle_link);
    set_timeout(c, &c->pool->idle_timeout);
}

static void on_io_timeout(h2o_timeout_entry_t *entry)
{
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, timeout, entry);
    switch (c->state) {
    case S_CONNECTING: fail_before_head(c, "connection timeout"); break;
    case S_SENDING:
    case S_HEAD: fail_before_head(c, "I/O timeout"); break;
    case S_BODY: fail_body(c, "I/O timeout"); break;
    case S_IDLE: close_conn(c); break;
    }
}

static void on_sent(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    if (err != NULL || c->read_error != NULL) {
        if (!retry_if_stale(c, err != NULL))
            fail_before_head(c, "I/O error (send request)");
        return;
    }
    c->state = S_HEAD;
    set_timeout(c, c->pool->io_timeout);
    if (sock->input->size != 0) /* the answer came before the write completed */
        on_read(sock, NULL);
}

static void send_request(conn_t *c)
{
    c->state = S_SENDING;
    c->answered = false;
    c->read_error = NULL;
    c->super.sock->data = c;
    if (!c->reading) {
        h2o_socket_read_start(c->super.sock, on_read);
        c->reading = true;
    }
    set_timeout(c, c->pool->io_timeout);
    h2o_socket_write(c->super.sock, c->reqbufs, c->n_reqbufs, on_sent);
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    if (err != NULL) {
        fail_before_head(c, err);
        return;
    }
    send_request(c);
}

static void on_connect(h2o_socket_t *sock, const char *err, void *data)
{
    conn_t *c = data;
    c->connect_req = NULL;
    if (err != NULL) {
        fail_before_head(c, err);
        return;
    }
    c->super.sock = sock;
    sock->data = c;
    if (c->pool->ssl_ctx != NULL && sock->ssl == NULL) {
        h2o_socket_ssl_handshake(sock, c->pool->ssl_ctx, c->pool->host, on_handshake);
        return;
    }
    send_request(c);
}

static void connect_new(conn_t *c)
{
    kg_upconn_pool_t *pool = c->pool;
    c->state = S_CONNECTING;
    set_timeout(c, pool->io_timeout);
    h2o_socketpool_connect(&c->connect_req, &pool->sockets, pool->loop, pool->getaddr_receiver, on_connect, c);
}

/* `fresh` body bytes were just appended to sock->input (or err): frame them. */
static void on_body_bytes(conn_t *c, const char *err, size_t fresh)
{
    h2o_buffer_t *in = c->super.sock->input;
    const char *status = NULL;

    set_timeout(c, c->pool->io_timeout); /* a read resets the clock; the end unlinks it below */
    switch (c->framing) {
    case F_UNTIL_CLOSE:
        if (err != NULL && err != h2o_socket_error_closed) {
            fail_body(c, "I/O error (body; until close)"); /* a reset is not the end of the body */
            return;
        }
        if (err != NULL) {
            c->keepalive = false;
            status = kg_upconn_error_is_eos;
        } else if (fresh == 0) {
            return;
        }
        break;
    case F_LENGTH:
        if (err != NULL) {
            fail_body(c, "I/O error (body; content-length)");
            return;
        }
        if (fresh >= c->bytes_left) {
            if (fresh > c->bytes_left) { /* bytes past the body: not a connection to reuse */
                in->size -= fresh - c->bytes_left;
                c->keepalive = false;
            }
            c->bytes_left = 0;
            status = kg_upconn_error_is_eos;
        } else if (fresh == 0) {
            return;
        } else {
            c->bytes_left -= fresh;
        }
        break;
    case F_CHUNKED:
        if (err != NULL) { /* before the last chunk: a cut body, not its end */
            fail_body(c, "I/O error (body; chunked)");
            return;
        }
        if (fresh == 0)
            return;
        size_t size = fresh;
        ssize_t ret = phr_decode_chunked(&c->chunked, in->bytes + in->size - fresh, &size);
        in->size -= fresh - size; /* the decoder compacted the bytes in place, even on an error */
        if (ret == -1) {
            fail_body(c, "failed to parse the response (chunked)");
            return;
        }
        if (ret >= 0) {
            c->keepalive = c->keepalive && ret == 0;
            status = kg_upconn_error_is_eos;
        }
        break;
    }
    if (status != NULL)
        set_timeout(c, NULL);
    c->on_body(&c->super, status);
    if (status != NULL)
        finish(c);
}

static void on_head_bytes(conn_t *c)
{
    h2o_socket_t *sock = c->super.sock;
    struct phr_header src[MAX_HEADERS];
    h2o_header_t headers[MAX_HEADERS];
    h2o_iovec_t names[MAX_HEADERS];
    int minor = 0, status = 0, rlen;
    const char *msg = NULL;
    size_t msg_len = 0, n;

    for (;;) { /* informational answers (1xx) are skipped */
        n = MAX_HEADERS;
        rlen = phr_parse_response(sock->input->bytes, sock->input->size, &minor, &status, &msg, &msg_len, src, &n, 0);
        if (rlen == -2 && sock->input->size < MAX_HEAD_BYTES)
            return; /* incomplete */
        if (rlen < 0) {
            fail_before_head(c, rlen == -2 ? "response head too large" : "failed to parse the response");
            return;
        }
        if (status < 100 || status > 199 || status == 101)
            break;
        h2o_buffer_consume(&sock->input, (size_t)rlen);
        if (sock->input->size == 0)
            return;
    }
    c->keepalive = minor >= 1;
    c->framing = F_UNTIL_CLOSE;
    memset(&c->chunked, 0, sizeof(c->chunked));
    for (size_t i = 0; i < n; i++) {
        if (src[i].name_len == 0) {
            fail_before_head(c, "line folding of header fields is not supported");
            return;
        }
        h2o_strtolower((char *)src[i].name, src[i].name_len);
        const h2o_token_t *token = h2o_lookup_token(src[i].name, src[i].name_len);
        names[i] = h2o_iovec_init(src[i].name, src[i].name_len);
        headers[i] = (h2o_header_t){.name = token != NULL ? (h2o_iovec_t *)&token->buf : &names[i],
                                    .value = h2o_iovec_init(src[i].value, src[i].value_len)};
        if (token == H2O_TOKEN_CONNECTION) {
            c->keepalive =
                h2o_contains_token(src[i].value, src[i].value_len, H2O_STRLIT("keep-alive"), ',') ||
                (minor >= 1 && !h2o_contains_token(src[i].value, src[i].value_len, H2O_STRLIT("close"), ','));
        } else if (token == H2O_TOKEN_TRANSFER_ENCODING) {
            if (h2o_lcstris(src[i].value, src[i].value_len, H2O_STRLIT("chunked"))) {
                c->framing = F_CHUNKED;
                c->chunked.consume_trailer = 1;
            } else if (!h2o_lcstris(src[i].value, src[i].value_len, H2O_STRLIT("identity"))) {
                fail_before_head(c, "unexpected type of transfer-encoding");
                return;
            }
        } else if (token == H2O_TOKEN_CONTENT_LENGTH && c->framing != F_CHUNKED) {
            if ((c->bytes_left = h2o_strtosize(src[i].value, src[i].value_len)) == SIZE_MAX) {
                fail_before_head(c, "invalid response from upstream (malformed content-length)");
                return;
            }
            c->framing = F_LENGTH;
        }
    }
    if (c->framing == F_CHUNKED) { /* a content-length beside chunked framing is not the body's: drop it */
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (headers[i].name != &H2O_TOKEN_CONTENT_LENGTH->buf)
                headers[kept++] = headers[i];
        c->keepalive = c->keepalive && kept == n; /* and a sender that says both is not trusted twice */
        n = kept;
    }
    bool no_body = status == 204 || status == 304 || (c->framing == F_LENGTH && c->bytes_left == 0);
    if (c->framing == F_UNTIL_CLOSE && !no_body)
        c->keepalive = false; /* the end is the close */
    c->state = S_BODY;
    kg_upconn_head_cb cb = c->on_head;
    c->on_head = NULL;
    c->on_body =
        cb(&c->super, no_body ? kg_upconn_error_is_eos : NULL, status, h2o_iovec_init(msg, msg_len), headers, n);
    h2o_buffer_consume(&sock->input, (size_t)rlen);
    if (no_body) {
        set_timeout(c, NULL);
        finish(c);
        return;
    }
    if (c->on_body == NULL) {
        close_conn(c);
        return;
    }
    on_body_bytes(c, NULL, sock->input->size);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    switch (c->state) {
    case S_IDLE: /* an idle connection that reads anything (or a close) is done */
        if (err == NULL && sock->bytes_read == 0)
            return; /* a TLS record without data (a session ticket): nothing to read */
        close_conn(c);
        return;
    case S_CONNECTING: /* not reading yet: cannot happen */
        fail_before_head(c, "unexpected read while connecting");
        return;
    case S_SENDING:
    case S_HEAD:
        if (err != NULL && c->state == S_SENDING) {
            c->read_error = err; /* dealt with when the write completes (its callback is pending) */
            h2o_socket_read_stop(sock);
            c->reading = false;
            return;
        }
        if (err != NULL) {
            if (!retry_if_stale(c, false))
                fail_before_head(c, "I/O error (head)");
            return;
        }
        c->answered = c->answered || sock->bytes_read != 0;
        if (c->state == S_HEAD)
            on_head_bytes(c);
        return;
    case S_BODY: on_body_bytes(c, err, err != NULL ? 0 : sock->bytes_read); return;
    }
}

kg_upconn_pool_t *kg_upconn_pool_new(h2o_loop_t *loop, h2o_multithread_receiver_t *getaddr_receiver,
                                     h2o_timeout_t *io_timeout, const char *host, uint16_t port, SSL_CTX *ssl_ctx,
                                     uint64_t idle_ms)
{
    kg_upconn_pool_t *pool = kg_xcalloc(1, sizeof(*pool));
    pool->loop = loop;
    pool->getaddr_receiver = getaddr_receiver;
    pool->io_timeout = io_timeout;
    pool->ssl_ctx = ssl_ctx;
    pool->host = kg_xstrdup(host);
    h2o_timeout_init(loop, &pool->idle_timeout, idle_ms);
    h2o_socketpool_init_by_hostport(&pool->sockets, h2o_iovec_init(host, strlen(host)), port, ssl_ctx != NULL,
                                    SIZE_MAX);
    h2o_socketpool_set_timeout(&pool->sockets, loop, idle_ms); /* its connect reads the loop's clock from here */
    h2o_linklist_init_anchor(&pool->idle);
    return pool;
}

void kg_upconn_pool_free(kg_upconn_pool_t *pool)
{
    if (pool == NULL)
        return;
    while (!h2o_linklist_is_empty(&pool->idle))
        close_conn(H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, pool->idle.next));
    h2o_timeout_dispose(pool->loop, &pool->idle_timeout);
    h2o_socketpool_dispose(&pool->sockets);
    free(pool->host);
    free(pool);
}

void kg_upconn_request(kg_upconn_t **out, void *data, kg_upconn_pool_t *pool, h2o_iovec_t *reqbufs, size_t n,
                       bool replayable, kg_upconn_head_cb on_head)
{
    conn_t *c;
    if (!h2o_linklist_is_empty(&pool->idle)) { /* the most recently used: the warmest */
        c = H2O_STRUCT_FROM_MEMBER(conn_t, idle_link, pool->idle.next);
        h2o_linklist_unlink(&c->idle_link);
        c->reused = true;
    } else {
        c = kg_xcalloc(1, sizeof(*c)); /* a new connection: not per request once the pool is warm */
        c->pool = pool;
        c->timeout.cb = on_io_timeout;
    }
    c->super.data = data;
    c->on_head = on_head;
    c->reqbufs = reqbufs, c->n_reqbufs = n;
    c->replayable = replayable;
    *out = &c->super;
    if (c->reused)
        send_request(c);
    else
        connect_new(c);
}

void kg_upconn_cancel(kg_upconn_t *c)
{
    close_conn((conn_t *)c);
}
