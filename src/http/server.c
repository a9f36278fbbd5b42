/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the HTTP front end of server.h on libh2o-evloop 2.2.5: listeners,
 * worker threads, the route table and graceful shutdown. Every route answers in JSON; every
 * error has SPEC §5's shape.
 */
#include "http/http_internal.h"
#include "http/request_scope.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/alloc.h"
#include "core/log.h"
#include "keys/key_format.h"
#include "proxy/mock.h"
#include "proxy/upstream.h"
#include "metrics/metrics.h"
#include "usage/journal.h"

/* ==== Replies ==== */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "OK";
    }
}

/* A reply body in the request pool, wiped when the pool goes (admin replies may hold a secret). */
typedef struct wiped_body {
    size_t len;
    char data[];
} wiped_body_t;

static void wipe_body(void *p)
{
    wiped_body_t *b = p;
    OPENSSL_cleanse(b->data, b->len);
}

void kg__http_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    wiped_body_t *copy = kg_request_scoped(req, sizeof(*copy) + len, wipe_body);
    copy->len = len;
    memcpy(copy->data, body, len);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len; /* without it h2o closes the connection after the reply */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_start_response(req, &generator);
    h2o_iovec_t buf = h2o_iovec_init(copy->data, len);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void kg__http_send_error(h2o_req_t *req, const kg_error_t *err)
{
    char buf[KG_ERR_RENDER_MAX];
    size_t len = kg_err_render(err, buf, sizeof(buf));
    int status = kg_err_http_status(err->code);
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    kg__http_send_json(req, status, buf, len);
}

void kg__http_fail(h2o_req_t *req, kg_err_t code, const char *message)
{
    kg_error_t err = {.code = code};
    if (message != NULL)
        snprintf(err.message, sizeof(err.message), "%s", message);
    kg__http_send_error(req, &err);
}

/* ==== Routes ==== */

typedef struct root_handler {
    h2o_handler_t super;
    kg_server_t *server;
} root_handler_t;

/* The request line and headers, as counted against max_header_bytes. */
static bool headers_too_large(h2o_req_t *req, size_t max)
{
    size_t total = req->input.method.len + req->input.path.len + 12;
    for (size_t i = 0; i < req->headers.size; i++)
        total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return total > max;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    kg_worker_t *worker = H2O_STRUCT_FROM_MEMBER(kg_worker_t, ctx, req->conn->ctx);
    h2o_iovec_t path = req->path_normalized;
    (void)self;

    kg__watch_request(worker, req);
    /* Every route is also served under /api/v1/ (SPEC §4). */
    if (path.len >= 7 && memcmp(path.base, "/api/v1", 7) == 0 && (path.len == 7 || path.base[7] == '/'))
        path.base += 4, path.len -= 4;

    if (h2o_memis(path.base, path.len, H2O_STRLIT("/healthz")) ||
        h2o_memis(path.base, path.len, H2O_STRLIT("/readyz"))) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
            !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
            kg__http_fail(req, KG_EMETHOD_NOT_ALLOWED, "Use GET on this route.");
            return 0;
        }
        if (worker->stopping && path.base[1] == 'r') {
            kg__http_fail(req, KG_EPROVIDER_UNAVAILABLE, "The gateway is shutting down.");
            return 0;
        }
        kg__http_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
        return 0;
    }
    /* Everything outside the admin API answers browsers of listed origins, errors included. */
    bool admin = kg_admin_path_is_admin(path.base, path.len);
    if (!admin)
        kg__cors_apply(worker, req);
    if (headers_too_large(req, worker->server->opts.max_header_bytes)) {
        kg__http_fail(req, KG_EHEADERS_TOO_LARGE, "The request headers are larger than this gateway accepts.");
        return 0;
    }
    if (admin) {
        kg__admin_http_handle(worker, req, path);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        kg__metrics_handle_main(worker, req);
        return 0;
    }
    if (kg__dataplane_matches(path)) {
        kg__dataplane_handle(worker, req, path);
        return 0;
    }
    kg__http_fail(req, KG_ENOT_FOUND, "Unknown route.");
    return 0;
}

/* The metrics listener: GET /metrics without a key (it listens on loopback by default). */
static int on_metrics_req(h2o_handler_t *self, h2o_req_t *req)
{
    kg_worker_t *worker = H2O_STRUCT_FROM_MEMBER(kg_worker_t, ctx, req->conn->ctx);
    (void)self;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/metrics"))) {
        kg__http_fail(req, KG_ENOT_FOUND, "Only /metrics is served here.");
        return 0;
    }
    kg__metrics_send(worker, req);
    return 0;
}

/* ==== libh2o's own early errors, in SPEC §5's shape ==== */

/*
 * libh2o answers a few errors itself before any handler runs (a body over
 * max_request_entity_size, a broken chunked encoding, a bad content-length), as text/plain.
 * It binds such requests to the host's fallback path, so a filter there rewrites them as JSON.
 */
typedef struct json_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} json_error_ostream_t;

static void json_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n, h2o_send_state_t state)
{
    json_error_ostream_t *o = (json_error_ostream_t *)self;
    (void)bufs, (void)n;
    h2o_ostream_send_next(&o->super, req, &o->body, 1,
                          state == H2O_SEND_STATE_IN_PROGRESS ? H2O_SEND_STATE_FINAL : state);
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (req->res.status >= 400) {
        kg_error_t err = {.code = req->res.status == 413 ? KG_EPAYLOAD_TOO_LARGE : KG_EINVALID_VALUE};
        if (req->res.status == 413)
            snprintf(err.message, sizeof(err.message), "The request body is larger than this gateway accepts.");
        else
            snprintf(err.message, sizeof(err.message), "The request could not be read: %s.",
                     req->res.reason != NULL ? req->res.reason : "malformed");
        char buf[KG_ERR_RENDER_MAX];
        size_t len = kg_err_render(&err, buf, sizeof(buf));
        if (!req->http1_is_persistent)
            kg__watch_linger(req); /* libh2o closes after this answer, maybe with input unread */
        h2o_iovec_t path = req->path_normalized;
        if (path.len >= 7 && memcmp(path.base, "/api/v1", 7) == 0)
            path.base += 4, path.len -= 4;
        if (!kg_admin_path_is_admin(path.base, path.len) && req->conn != NULL)
            kg__cors_apply(H2O_STRUCT_FROM_MEMBER(kg_worker_t, ctx, req->conn->ctx), req);
        json_error_ostream_t *o = (json_error_ostream_t *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = json_error_send;
        o->body = h2o_strdup(&req->pool, buf, len);
        req->res.content_length = len;
        ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (i != -1)
            req->res.headers.entries[i].value = h2o_iovec_init(H2O_STRLIT("application/json"));
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

/* ==== Workers ==== */

static void on_accept(h2o_socket_t *listener, const char *err)
{
    kg_worker_t *w = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    kg__watch_accept(w, sock);
    h2o_accept(&w->accept, sock);
}

static void on_metrics_accept(h2o_socket_t *listener, const char *err)
{
    kg_worker_t *w = listener->data;
    h2o_socket_t *sock;
    if (err == NULL && (sock = h2o_evloop_socket_accept(listener)) != NULL)
        h2o_accept(&w->metrics_accept, sock);
}

typedef struct control_msg {
    h2o_multithread_message_t super;
} control_msg_t;

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    kg_worker_t *w = H2O_STRUCT_FROM_MEMBER(kg_worker_t, control, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        free(m);
    }
    if (!w->stopping) {
        w->stopping = true;
        /* Stop accepting: new connections are refused by the kernel once the socket closes. */
        if (w->listener != NULL) {
            h2o_socket_read_stop(w->listener);
            h2o_socket_close(w->listener);
            w->listener = NULL;
        }
        if (w->metrics_listener != NULL) {
            h2o_socket_read_stop(w->metrics_listener);
            h2o_socket_close(w->metrics_listener);
            w->metrics_listener = NULL;
        }
        h2o_context_request_shutdown(&w->ctx);
    }
}

static void *worker_main(void *arg)
{
    kg_worker_t *w = arg;
    int64_t deadline_ms = 0;
    char name[16];

    /* Named for operators (top -H) and for the allocation test, which counts on these threads. */
    snprintf(name, sizeof(name), "kg-worker-%u", (unsigned)(w - w->server->workers) % 1000);
    pthread_setname_np(pthread_self(), name);
    kg_key_index_thread_online();
    while (!w->stopping || w->in_flight > 0) {
        if (w->stopping) {
            uint64_t now = h2o_now(w->ctx.loop);
            if (deadline_ms == 0)
                deadline_ms = (int64_t)now + w->server->drain_ms;
            else if ((int64_t)now >= deadline_ms) {
                kg__dataplane_abandon(w);
                break;
            }
        }
        /* -1 means a signal interrupted epoll_wait: not fatal, loop again. */
        h2o_evloop_run(w->ctx.loop, w->stopping ? 50 : INT32_MAX);
    }
    kg_key_index_thread_offline();
    return NULL;
}

/* Parses "host:port" / "[v6]:port" and binds a SO_REUSEPORT listener. Returns the fd or -1. */
static int bind_listener(const char *listen_addr, int *port_out, char *err, size_t err_cap)
{
    char host[256];
    const char *colon = strrchr(listen_addr, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int fd = -1, one = 1;

    if (colon == NULL || (size_t)(colon - listen_addr) >= sizeof(host)) {
        snprintf(err, err_cap, "listen address '%s' must be host:port", listen_addr);
        return -1;
    }
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_cap, "listen address '%s': %s", listen_addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, err_cap, "cannot listen on %s: %s", listen_addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(res);
    return fd;
}

/*
 * SO_REUSEPORT would let this process join a port another gateway already listens on, and the
 * two would split the traffic silently. A probe bind without it fails if anyone holds the port.
 */
static bool port_free(const char *listen_addr, char *err, size_t err_cap)
{
    char host[256];
    const char *colon = strrchr(listen_addr, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    if (colon == NULL || (size_t)(colon - listen_addr) >= sizeof(host) || strcmp(colon + 1, "0") == 0)
        return true; /* bind_listener reports bad addresses; port 0 is always free */
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    if (getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &res) != 0)
        return true;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
              bind(fd, res->ai_addr, res->ai_addrlen) == 0;
    if (!ok)
        snprintf(err, err_cap, "cannot listen on %s: %s", listen_addr, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return ok;
}

kg_server_t *kg_server_start(const kg_server_options_t *opts, char *err, size_t err_cap)
{
    kg_server_t *s = kg_xcalloc(1, sizeof(*s));
    char addr[300];

    s->opts = *opts;
    s->n_workers = (size_t)(opts->workers > 0 ? opts->workers : 1);
    s->workers = kg_xcalloc(s->n_workers, sizeof(*s->workers));
    h2o_config_init(&s->config);
    s->config.max_request_entity_size = opts->max_body_bytes;
    s->config.server_name = h2o_iovec_init(H2O_STRLIT("keygate"));
    /* HTTP/1.1 only: no cleartext HTTP/2 upgrade (libh2o 2.2.5 predates the rapid-reset fixes). */
    s->config.http1.upgrade_to_http2 = 0;
    /* libh2o closes a connection silently at this timeout; ours (408) fires first. */
    s->config.http1.req_timeout = opts->request_timeout_ms + 5000;
    h2o_hostconf_t *host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    kg_request_scope_enable(pathconf);
    root_handler_t *handler = (root_handler_t *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->server = s;
    h2o_filter_t *rewrite = h2o_create_filter(&host->fallback_path, sizeof(*rewrite));
    rewrite->on_setup_ostream = json_error_setup;

    /* Bind every listener first: a bad address fails start-up before any thread runs. The first
     * bind may pick the port (":0"); the others join it through SO_REUSEPORT. */
    snprintf(addr, sizeof(addr), "%s", opts->listen);
    if (!port_free(addr, err, err_cap)) {
        h2o_config_dispose(&s->config);
        free(s->workers);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->n_workers; i++) {
        s->workers[i].listen_fd = bind_listener(addr, &s->port, err, err_cap);
        if (s->workers[i].listen_fd < 0) {
            for (size_t j = 0; j < i; j++)
                close(s->workers[j].listen_fd);
            h2o_config_dispose(&s->config);
            free(s->workers);
            free(s);
            return NULL;
        }
        if (i == 0) {
            const char *colon = strrchr(opts->listen, ':');
            snprintf(addr, sizeof(addr), "%.*s:%d", (int)(colon - opts->listen), opts->listen, s->port);
        }
    }
    /* The metrics listener is a convenience: when its port is taken the gateway still serves
     * (and /metrics stays on the main listener for the root admin key). */
    int metrics_fd = -1;
    if (opts->metrics_listen != NULL && opts->metrics_listen[0] != '\0' && strcmp(opts->metrics_listen, "off") != 0) {
        char merr[300];
        if (port_free(opts->metrics_listen, merr, sizeof(merr)))
            metrics_fd = bind_listener(opts->metrics_listen, &s->metrics_port, merr, sizeof(merr));
        if (metrics_fd < 0) {
            kg_log_warn("metrics listener not started: %s", merr);
            s->metrics_port = 0;
        }
        h2o_config_init(&s->metrics_config);
        s->metrics_config.server_name = h2o_iovec_init(H2O_STRLIT("keygate"));
        s->metrics_config.http1.upgrade_to_http2 = 0;
        h2o_hostconf_t *mhost =
            h2o_config_register_host(&s->metrics_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
        h2o_pathconf_t *mpath = h2o_config_register_path(mhost, "/", 0);
        kg_request_scope_enable(mpath);
        h2o_handler_t *mh = h2o_create_handler(mpath, sizeof(*mh));
        mh->on_req = on_metrics_req;
    }
    s->upstreams = opts->upstreams;
    s->admin = kg__admin_worker_start(opts->admin_store, opts->cfg, opts->index, opts->catalog_feed);
    for (size_t i = 0; i < s->n_workers; i++) {
        kg_worker_t *w = &s->workers[i];
        w->server = s;
        h2o_context_init(&w->ctx, h2o_evloop_create(), &s->config);
        w->accept.ctx = &w->ctx;
        w->accept.hosts = s->config.hosts;
        w->queue = h2o_multithread_create_queue(w->ctx.loop);
        h2o_multithread_register_receiver(w->queue, &w->admin_replies, kg__admin_http_on_replies);
        h2o_multithread_register_receiver(w->queue, &w->control, on_control);
        w->upstream = kg_upstream_loop_new(s->upstreams, w->ctx.loop, w->queue, opts->upstream_timeout_ms);
        h2o_timeout_init(w->ctx.loop, &w->mock_tick, KG_MOCK_TICK_MS);
        h2o_timeout_init(w->ctx.loop, &w->request_timeout, opts->request_timeout_ms / 2); /* see slow_client.c */
        h2o_timeout_init(w->ctx.loop, &w->linger_timeout, 2000);
        if (!kg_random_base62(w->request_id_prefix, 12))
            snprintf(w->request_id_prefix, sizeof(w->request_id_prefix), "w%u", (unsigned)(i % 1000));
        else
            w->request_id_prefix[12] = '\0';
        w->journal = opts->journal != NULL ? kg_journal_writer_new(opts->journal) : NULL;
        w->metrics = kg_xcalloc(1, sizeof(*w->metrics));
        h2o_linklist_init_anchor(&w->metered);
        if (i == 0 && metrics_fd >= 0) { /* one loop serves scrapes: they are rare and cheap */
            w->metrics_accept.ctx = &w->ctx;
            w->metrics_accept.hosts = s->metrics_config.hosts;
            w->metrics_listener = h2o_evloop_socket_create(w->ctx.loop, metrics_fd, H2O_SOCKET_FLAG_DONT_READ);
            w->metrics_listener->data = w;
            h2o_socket_read_start(w->metrics_listener, on_metrics_accept);
        }
        w->listener = h2o_evloop_socket_create(w->ctx.loop, w->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
        w->listener->data = w;
        h2o_socket_read_start(w->listener, on_accept);
        h2o_multithread_create_thread(&w->tid, NULL, worker_main, w);
    }
    return s;
}

int kg_server_port(const kg_server_t *s)
{
    return s->port;
}

int kg_server_metrics_port(const kg_server_t *s)
{
    return s->metrics_port;
}

void kg_server_stop(kg_server_t *s, int drain_ms)
{
    s->drain_ms = drain_ms;
    for (size_t i = 0; i < s->n_workers; i++) {
        control_msg_t *m = kg_xcalloc(1, sizeof(*m));
        h2o_multithread_send_message(&s->workers[i].control, &m->super);
    }
    for (size_t i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i].tid, NULL);
    /* The admin worker goes last: in-flight admin calls have been answered or abandoned. */
    kg__admin_worker_stop(s->admin);
    for (size_t i = 0; i < s->n_workers; i++) {
        kg_worker_t *w = &s->workers[i];
        if (w->listener != NULL)
            h2o_socket_close(w->listener);
        kg_journal_writer_free(w->journal); /* every request it served has been answered or abandoned */
        kg__watch_free_all(w);
        free(w->metrics);
        /* Receivers stay registered (libh2o asserts that none has a message pending, and a late
         * admin reply may be); connections still open (idle keep-alive) end with the process,
         * and the loop is not destroyed: libh2o 2.2.5 cannot dispose of a loop with sockets. */
    }
    free(s->workers);
    s->workers = NULL;
}
