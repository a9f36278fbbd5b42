/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the forwarding of upstream.h. Its shape follows h2o 2.2.5's own
 * reverse proxy (lib/core/proxy.c): a generator fed through an h2o_doublebuffer so a slow
 * client applies back-pressure to the upstream; the connections are keygate's own (upconn.h).
 * Everything per request lives in the request's memory pool.
 */
#include "proxy/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/decimal.h"
#include "core/err.h"
#include "core/log.h"
#include "http/request_scope.h"
#include "proxy/upconn.h"

/*
 * TLS contexts per host and CA file (whatever the port), shared by every loop. They are
 * made when a catalog is prepared (loading CA files is disk I/O: never on the request path);
 * entries are only ever appended, so loops read them without a lock once `n` is published.
 */
#define MAX_ENDPOINTS 1024

typedef struct endpoint {
    char *key;
    SSL_CTX *ssl; /* NULL for plain http */
} endpoint_t;

struct kg_upstreams {
    pthread_mutex_t lock; /* writers only */
    endpoint_t entries[MAX_ENDPOINTS];
    _Atomic size_t n;
};

typedef struct loop_pool {
    struct loop_pool *next;
    char *key; /* the provider's endpoint */
    kg_upconn_pool_t *conns;
} loop_pool_t;

struct kg_upstream_loop {
    kg_upstreams_t *ups;
    h2o_loop_t *loop;
    h2o_timeout_t io_timeout;
    h2o_multithread_receiver_t getaddr_receiver;
    h2o_multithread_queue_t *queue;
    loop_pool_t *pools; /* one per endpoint this loop has used; loop thread only; never moved */
};

/* ==== Set-up ==== */

kg_upstreams_t *kg_upstreams_new(void)
{
    kg_upstreams_t *ups = kg_xcalloc(1, sizeof(*ups));
    pthread_mutex_init(&ups->lock, NULL);
    return ups;
}

void kg_upstreams_free(kg_upstreams_t *ups)
{
    if (ups == NULL)
        return;
    for (size_t i = 0; i < atomic_load(&ups->n); i++) {
        free(ups->entries[i].key);
        SSL_CTX_free(ups->entries[i].ssl);
    }
    pthread_mutex_destroy(&ups->lock);
    free(ups);
}

static const endpoint_t *find_endpoint(kg_upstreams_t *ups, const char *key)
{
    size_t n = atomic_load_explicit(&ups->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ups->entries[i].key, key) == 0)
            return &ups->entries[i];
    return NULL;
}

static SSL_CTX *make_ssl_ctx(const kg_provider_t *p, char *err, size_t err_cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, err_cap, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /*
     * OpenSSL checks the certificate's name during the handshake. libh2o 2.2.5 checks it too,
     * but only when no handshake bytes are left to send, which under TLS 1.3 is never the case:
     * without this, any certificate the CA signed would do.
     */
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    bool ip_literal = strchr(p->host, ':') != NULL || strspn(p->host, "0123456789.") == strlen(p->host);
    int ok =
        ip_literal ? X509_VERIFY_PARAM_set1_ip_asc(param, p->host) : X509_VERIFY_PARAM_set1_host(param, p->host, 0);
    if (ok == 1)
        ok = p->ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, p->ca_file, NULL)
                                : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, err_cap, "providers.%s: cannot set up TLS verification%s%s", p->name,
                 p->ca_file != NULL ? " with " : "", p->ca_file != NULL ? p->ca_file : "");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

bool kg_upstreams_prepare(kg_upstreams_t *ups, const kg_catalog_t *cat, char *err, size_t err_cap)
{
    bool ok = true;
    pthread_mutex_lock(&ups->lock);
    for (size_t i = 0; i < cat->n_providers; i++) {
        const kg_provider_t *p = &cat->providers[i];
        if (p->type != KG_PROVIDER_OPENAI || !p->tls || find_endpoint(ups, p->tls_key) != NULL)
            continue;
        size_t n = atomic_load(&ups->n);
        if (n == MAX_ENDPOINTS) {
            snprintf(err, err_cap, "more than %d distinct upstream endpoints", MAX_ENDPOINTS);
            ok = false;
            break;
        }
        SSL_CTX *ssl = make_ssl_ctx(p, err, err_cap);
        if (ssl == NULL) {
            ok = false;
            continue; /* this provider will answer 502; the others work */
        }
        ups->entries[n] = (endpoint_t){kg_xstrdup(p->tls_key), ssl};
        atomic_store_explicit(&ups->n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&ups->lock);
    return ok;
}

kg_upstream_loop_t *kg_upstream_loop_new(kg_upstreams_t *ups, h2o_loop_t *loop, h2o_multithread_queue_t *queue,
                                         uint64_t timeout_ms)
{
    kg_upstream_loop_t *ul = kg_xcalloc(1, sizeof(*ul));
    ul->ups = ups;
    ul->loop = loop;
    ul->queue = queue;
    h2o_timeout_init(loop, &ul->io_timeout, timeout_ms);
    h2o_multithread_register_receiver(queue, &ul->getaddr_receiver, h2o_hostinfo_getaddr_receiver);
    return ul;
}

void kg_upstream_loop_free(kg_upstream_loop_t *ul)
{
    if (ul == NULL)
        return;
    while (ul->pools != NULL) {
        loop_pool_t *next = ul->pools->next;
        kg_upconn_pool_free(ul->pools->conns);
        free(ul->pools->key);
        free(ul->pools);
        ul->pools = next;
    }
    h2o_multithread_unregister_receiver(ul->queue, &ul->getaddr_receiver);
    h2o_timeout_dispose(ul->loop, &ul->io_timeout);
    free(ul);
}

/* This loop's pool for the provider's endpoint, made on first use (no I/O); NULL if the
 * endpoint was never prepared (its TLS set-up failed). Pools live as long as the loop. */
static loop_pool_t *pool_for(kg_upstream_loop_t *ul, const kg_provider_t *p)
{
    for (loop_pool_t *lp = ul->pools; lp != NULL; lp = lp->next)
        if (strcmp(lp->key, p->endpoint) == 0)
            return lp;
    const endpoint_t *ep = p->tls ? find_endpoint(ul->ups, p->tls_key) : NULL;
    if (p->tls && ep == NULL)
        return NULL;
    loop_pool_t *lp = kg_xcalloc(1, sizeof(*lp)); /* cold path: once per endpoint and loop */
    lp->key = kg_xstrdup(p->endpoint);
    /* idle upstream connections live 2 s */
    lp->conns = kg_upconn_pool_new(ul->loop, &ul->getaddr_receiver, &ul->io_timeout, p->host, (uint16_t)p->port,
                                   ep != NULL ? ep->ssl : NULL, 2000);
    lp->next = ul->pools;
    ul->pools = lp;
    return lp;
}

/* ==== One forwarded request ==== */

typedef struct forward {
    h2o_generator_t super;
    h2o_req_t *req;
    kg_upconn_t *client;
    h2o_iovec_t bufs[2];        /* request head, body */
    h2o_buffer_t *last_content; /* what remained when the upstream finished */
    h2o_doublebuffer_t sending;
    bool is_sse;
    bool body_error; /* the upstream failed after the head */
    char tail[16];   /* the last bytes relayed, to find a [DONE] line split across two sends */
    size_t tail_len;
    bool seen_done; /* "data: [DONE]" went by: the stream completed */
    kg_meter_t *meter;
    bool withhold_usage;  /* drop the usage event the gateway asked for (SPEC §4) */
    h2o_buffer_t *held;   /* withholding: the start of an event not complete yet */
    h2o_buffer_t *passed; /* withholding: what the current send relays */
} forward_t;

static void send_json_error(h2o_req_t *req, kg_meter_t *meter, kg_err_t code, const char *message)
{
    static h2o_generator_t generator = {NULL, NULL};
    kg_meter_finish(meter, kg_err_http_status(code));
    kg_error_t err = {.code = code};
    char buf[KG_ERR_RENDER_MAX];
    snprintf(err.message, sizeof(err.message), "%s", message);
    size_t len = kg_err_render(&err, buf, sizeof(buf));
    h2o_iovec_t body = h2o_strdup(&req->pool, buf, len);
    req->res.status = kg_err_http_status(code);
    req->res.reason = code == KG_EUPSTREAM_TIMEOUT ? "Gateway Timeout" : "Bad Gateway";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* Errors before the head: timeouts are 504, everything else (refused, TLS, DNS, reset) 502. */
static void fail_before_head(forward_t *f, const char *errstr)
{
    bool timeout = strcmp(errstr, "I/O timeout") == 0 || strcmp(errstr, "connection timeout") == 0;
    char msg[200];
    snprintf(msg, sizeof(msg), "%s: %s.",
             timeout ? "The upstream provider did not answer in time" : "The upstream provider failed", errstr);
    h2o_req_log_error(f->req, "keygate/upstream", "%s", errstr);
    send_json_error(f->req, f->meter, timeout ? KG_EUPSTREAM_TIMEOUT : KG_EUPSTREAM_ERROR, msg);
}

/* Notes whether a stream's "[DONE]" went by and keeps its last bytes relayed (each byte passes
 * here once). Only an event stream ends at [DONE]: a JSON answer may quote it (and is metered to
 * its last byte), and skipping the search saves two memmem per read of every plain answer. */
static void remember_tail(forward_t *f, h2o_iovec_t vec)
{
    if (vec.len == 0 || !f->is_sse)
        return;
    if (!f->seen_done) {
        char seam[2 * sizeof(f->tail)];
        size_t head = vec.len < sizeof(f->tail) ? vec.len : sizeof(f->tail);
        memcpy(seam, f->tail, f->tail_len);
        memcpy(seam + f->tail_len, vec.base, head);
        static const char done[] = "data: [DONE]";
        f->seen_done = memmem(seam, f->tail_len + head, done, sizeof(done) - 1) != NULL ||
                       memmem(vec.base, vec.len, done, sizeof(done) - 1) != NULL;
    }
    if (vec.len >= sizeof(f->tail)) {
        memcpy(f->tail, vec.base + vec.len - sizeof(f->tail), sizeof(f->tail));
        f->tail_len = sizeof(f->tail);
        return;
    }
    size_t keep = sizeof(f->tail) - vec.len < f->tail_len ? sizeof(f->tail) - vec.len : f->tail_len;
    memmove(f->tail, f->tail + f->tail_len - keep, keep);
    memcpy(f->tail + keep, vec.base, vec.len);
    f->tail_len = keep + vec.len;
}

/* ==== Withholding the usage event the caller did not ask for ==== */

/* Whether text[0..len) has `"name"`, optional spaces, then `open` (and for "[]", the close). */
static bool has_member(const char *text, size_t len, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    for (const char *p = text, *end = text + len; (p = memmem(p, (size_t)(end - p), name, nlen)) != NULL;) {
        p += nlen;
        const char *v = value;
        for (const char *q = p; q < end; q++) {
            if (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
                continue;
            if (*q != *v)
                break;
            if (*++v == '\0')
                return true;
        }
    }
    return false;
}

/* The usage event of a stream: no choices, a usage object (OpenAI's final chunk). */
static bool is_usage_event(const char *ev, size_t len)
{
    return has_member(ev, len, "\"usage\":", "{") && has_member(ev, len, "\"choices\":", "[]");
}

/*
 * Passes `in` on without the usage event: complete events are relayed as they come, a partial
 * one waits for the rest (at most one event's bytes). At the end whatever is held goes out.
 */
static h2o_iovec_t withhold_usage(forward_t *f, h2o_iovec_t in, bool final)
{
    h2o_buffer_consume(&f->passed, f->passed->size); /* the previous send has completed */
    if (in.len > 0) {
        h2o_iovec_t room = h2o_buffer_reserve(&f->held, in.len);
        memcpy(room.base, in.base, in.len);
        f->held->size += in.len;
    }
    const char *buf = f->held->bytes;
    size_t size = f->held->size, start = 0;
    for (size_t i = 0; i + 1 < size; i++) {
        size_t end = buf[i] != '\n'                                             ? 0
                     : buf[i + 1] == '\n'                                       ? i + 2
                     : buf[i + 1] == '\r' && i + 2 < size && buf[i + 2] == '\n' ? i + 3
                                                                                : 0;
        if (end == 0)
            continue;
        if (!is_usage_event(buf + start, end - start)) {
            h2o_iovec_t room = h2o_buffer_reserve(&f->passed, end - start);
            memcpy(room.base, buf + start, end - start);
            f->passed->size += end - start;
        }
        start = end, i = end - 1;
    }
    if (final && start < size) {
        h2o_iovec_t room = h2o_buffer_reserve(&f->passed, size - start);
        memcpy(room.base, buf + start, size - start);
        f->passed->size += size - start;
        start = size;
    }
    h2o_buffer_consume(&f->held, start);
    return h2o_iovec_init(f->passed->bytes, f->passed->size);
}

/*
 * A stream that ends without `data: [DONE]` was cut (an I/O error or a close before the last
 * chunk, or an upstream that ended its answer early). Close any half event and end with an
 * error event, which the OpenAI SDKs raise as an APIError.
 */
static const char sse_cut_event[] = "\n\ndata: {\"error\":{\"message\":\"The upstream provider closed the stream "
                                    "early.\",\"type\":\"api_error\",\"param\":null,\"code\":\"upstream_error\"}}\n\n";

static void do_send(forward_t *f)
{
    h2o_iovec_t bufs[2];
    size_t n = 0;
    h2o_send_state_t state;

    bufs[0] = h2o_doublebuffer_prepare(&f->sending, f->client != NULL ? &f->client->sock->input : &f->last_content,
                                       f->req->preferred_chunk_size);
    h2o_iovec_t raw = bufs[0];
    bool final = f->client == NULL && raw.len == f->sending.buf->size && f->last_content->size == 0;
    remember_tail(f, raw);
    kg_meter_observe(f->meter, raw.base, raw.len); /* the meter sees everything, usage included */
    if (f->withhold_usage && f->is_sse) {
        bufs[0] = withhold_usage(f, raw, final);
        if (bufs[0].len == 0 && !final) {
            /* Nothing to relay yet (a partial event, or only the usage event): take more — now if
             * bytes are waiting or the upstream is done, else when on_body brings some. */
            if (raw.len != 0)
                h2o_doublebuffer_consume(&f->sending);
            if (f->seen_done)
                kg_meter_finish(f->meter, f->req->res.status);
            if (f->client == NULL || f->client->sock->input->size > 0)
                do_send(f);
            return;
        }
    }
    if (bufs[0].len != 0)
        n = 1;
    if (final) {
        state = H2O_SEND_STATE_FINAL;
        if (f->is_sse && !f->seen_done) {
            h2o_req_log_error(f->req, "keygate/upstream", "stream ended without [DONE]");
            bufs[n++] = h2o_iovec_init(sse_cut_event, sizeof(sse_cut_event) - 1);
        } else if (f->body_error) {
            state = H2O_SEND_STATE_ERROR; /* a cut JSON body: the client must see a broken response */
        }
    } else {
        if (n == 0)
            return;
        state = H2O_SEND_STATE_IN_PROGRESS;
    }
    /* Journaled before the client can see the answer complete: at its last byte, or as soon as
     * a stream's [DONE] is about to go out (the upstream may close its response much later). */
    if (state != H2O_SEND_STATE_IN_PROGRESS || f->seen_done)
        kg_meter_finish(f->meter, f->req->res.status);
    h2o_send(f->req, bufs, n, state);
}

static void do_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    forward_t *f = (forward_t *)generator;
    (void)req;
    h2o_doublebuffer_consume(&f->sending);
    do_send(f);
}

static void do_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    forward_t *f = (forward_t *)generator;
    (void)req;
    if (f->client != NULL) {
        kg_upconn_cancel(f->client);
        f->client = NULL;
    }
}

static int on_body(kg_upconn_t *client, const char *errstr)
{
    forward_t *f = client->data;
    if (errstr != NULL) {
        /* Detach what was received so far; the client object is gone after we return. */
        f->last_content = client->sock->input;
        h2o_buffer_init(&client->sock->input, &h2o_socket_buffer_prototype);
        f->client = NULL;
        if (errstr != kg_upconn_error_is_eos) {
            h2o_req_log_error(f->req, "keygate/upstream", "%s", errstr);
            f->body_error = true;
        }
    }
    if (f->sending.bytes_inflight == 0)
        do_send(f);
    return 0;
}

static bool name_is(const h2o_iovec_t *name, const char *lit, size_t len)
{
    return name->len == len && h2o_lcstris(name->base, name->len, lit, len);
}

static bool name_has_prefix(const h2o_iovec_t *name, const char *lit, size_t len)
{
    return name->len >= len && h2o_lcstris(name->base, len, lit, len);
}

static kg_upconn_body_cb on_head(kg_upconn_t *client, const char *errstr, int status, h2o_iovec_t msg,
                                 h2o_header_t *headers, size_t num_headers)
{
    forward_t *f = client->data;
    h2o_req_t *req = f->req;

    if (errstr != NULL && errstr != kg_upconn_error_is_eos) {
        f->client = NULL;
        fail_before_head(f, errstr);
        return NULL;
    }
    if (status == 401 || status == 403) {
        /*
         * The upstream refused the provider's credential: the caller's key is fine, and the
         * upstream's message may quote part of the provider key. A gateway error, not theirs.
         */
        f->client = NULL;
        h2o_req_log_error(req, "keygate/upstream", "the upstream refused the provider credential (%d)", status);
        send_json_error(req, f->meter, KG_EUPSTREAM_ERROR, "The upstream provider refused this gateway's credential.");
        return NULL;
    }
    req->res.status = status;
    req->res.reason = h2o_strdup(&req->pool, msg.base, msg.len).base;
    for (size_t i = 0; i != num_headers; ++i) {
        h2o_iovec_t *name = headers[i].name;
        if (h2o_iovec_is_token(name)) {
            const h2o_token_t *token = H2O_STRUCT_FROM_MEMBER(h2o_token_t, buf, name);
            if (token->proxy_should_drop_for_res || token == H2O_TOKEN_SERVER || token == H2O_TOKEN_SET_COOKIE ||
                token == H2O_TOKEN_CONTENT_ENCODING || token == H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN)
                continue;
            if (token == H2O_TOKEN_CONTENT_LENGTH) {
                if (req->res.content_length != SIZE_MAX ||
                    (req->res.content_length = h2o_strtosize(headers[i].value.base, headers[i].value.len)) ==
                        SIZE_MAX) {
                    f->client = NULL;
                    fail_before_head(f, "invalid response from upstream (malformed content-length)");
                    return NULL;
                }
                continue;
            }
            if (token == H2O_TOKEN_CONTENT_TYPE)
                f->is_sse = h2o_lcstris(headers[i].value.base, headers[i].value.len < 17 ? headers[i].value.len : 17,
                                        H2O_STRLIT("text/event-stream"));
            h2o_iovec_t value = h2o_strdup(&req->pool, headers[i].value.base, headers[i].value.len);
            h2o_add_header(&req->pool, &req->res.headers, token, headers[i].orig_name, value.base, value.len);
            continue;
        }
        /* The upstream's identity and limits are its business, not the caller's (ours replace them). */
        if (name_is(name, H2O_STRLIT("openai-organization")) || name_is(name, H2O_STRLIT("openai-project")) ||
            name_has_prefix(name, H2O_STRLIT("x-ratelimit-")) || name_has_prefix(name, H2O_STRLIT("access-control-")))
            continue;
        h2o_iovec_t value = h2o_strdup(&req->pool, headers[i].value.base, headers[i].value.len);
        if (name_is(name, H2O_STRLIT("x-request-id"))) {
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-upstream-request-id"), 0, NULL,
                                  value.base, value.len);
            continue;
        }
        h2o_iovec_t n = h2o_strdup(&req->pool, name->base, name->len);
        h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, headers[i].orig_name, value.base,
                              value.len);
    }
    if (f->is_sse)
        req->res.content_length = SIZE_MAX; /* relayed chunked: a cut stream gets its error event */
    h2o_start_response(req, &f->super);
    if (errstr == kg_upconn_error_is_eos) {
        f->client = NULL;
        kg_meter_finish(f->meter, status);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return NULL;
    }
    return on_body;
}

static void on_dispose(void *p)
{
    forward_t *f = p;
    if (f->client != NULL) {
        kg_upconn_cancel(f->client);
        f->client = NULL;
    }
    h2o_buffer_dispose(&f->last_content);
    h2o_doublebuffer_dispose(&f->sending);
    h2o_buffer_dispose(&f->held);
    h2o_buffer_dispose(&f->passed);
}

/* Is this caller header one the upstream may see? (negotiation and SDK telemetry only; the
 * content type is always ours: the body was read as JSON, and an upstream told otherwise could
 * read another model out of it) */
static bool forwardable(const h2o_header_t *h)
{
    const h2o_iovec_t *n = h->name;
    if (h2o_iovec_is_token(n)) {
        const h2o_token_t *t = H2O_STRUCT_FROM_MEMBER(h2o_token_t, buf, n);
        return t == H2O_TOKEN_ACCEPT || t == H2O_TOKEN_USER_AGENT || t == H2O_TOKEN_ACCEPT_LANGUAGE;
    }
    return name_has_prefix(n, H2O_STRLIT("x-stainless-")) || name_is(n, H2O_STRLIT("idempotency-key")) ||
           name_is(n, H2O_STRLIT("openai-beta"));
}

/* Builds "POST <prefix><suffix> HTTP/1.1" and the headers, in the request pool; *idempotent
 * tells whether the caller's Idempotency-Key went with them (the upstream can spot a resend). */
static h2o_iovec_t build_head(h2o_req_t *req, const kg_forward_t *fwd, bool *idempotent)
{
    const kg_provider_t *p = fwd->provider;
    size_t cap = 256 + strlen(p->path_prefix) + fwd->path_suffix.len + strlen(p->authority) +
                 (p->credential != NULL ? strlen(p->credential) : 0) + 256;
    for (size_t i = 0; i < req->headers.size; i++)
        cap += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    size_t at = 0;
#define APPEND(s, l)                                                                                                   \
    do {                                                                                                               \
        memcpy(buf + at, (s), (l));                                                                                    \
        at += (l);                                                                                                     \
    } while (0)
#define APPEND_STR(s) APPEND((s), strlen(s))
#define APPEND_LIT(s) APPEND((s), sizeof(s) - 1)
    APPEND_LIT("POST ");
    APPEND_STR(p->path_prefix);
    APPEND(fwd->path_suffix.base, fwd->path_suffix.len);
    APPEND_LIT(" HTTP/1.1\r\nhost: ");
    APPEND_STR(p->authority);
    APPEND_LIT("\r\ncontent-length: ");
    at += kg_put_uint(buf + at, fwd->body.len);
    APPEND_LIT("\r\ncontent-type: application/json\r\n");
    if (p->credential != NULL) {
        APPEND_LIT("authorization: Bearer ");
        APPEND_STR(p->credential);
        APPEND_LIT("\r\n");
    }
    if (p->forward_identity) {
        const char *names[] = {"x-keygate-org: ", "x-keygate-team: ", "x-keygate-key: ", "x-keygate-environment: "};
        const char *values[] = {fwd->org_id, fwd->team_id, fwd->key_id, fwd->environment};
        for (size_t i = 0; i < 4; i++) {
            if (values[i] == NULL || values[i][0] == '\0')
                continue;
            APPEND_STR(names[i]);
            APPEND_STR(values[i]);
            APPEND_LIT("\r\n");
        }
    }
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (!forwardable(h))
            continue;
        *idempotent = *idempotent || name_is(h->name, H2O_STRLIT("idempotency-key"));
        APPEND(h->orig_name != NULL ? h->orig_name : h->name->base, h->name->len);
        APPEND_LIT(": ");
        APPEND(h->value.base, h->value.len);
        APPEND_LIT("\r\n");
    }
    APPEND_LIT("\r\n");
#undef APPEND
#undef APPEND_STR
#undef APPEND_LIT
    return h2o_iovec_init(buf, at);
}

void kg_upstream_forward(kg_upstream_loop_t *ul, h2o_req_t *req, const kg_forward_t *fwd)
{
    loop_pool_t *pl = pool_for(ul, fwd->provider);
    if (pl == NULL) {
        send_json_error(req, fwd->meter, KG_EUPSTREAM_ERROR,
                        "The provider's TLS set-up failed; see the gateway's log.");
        return;
    }
    forward_t *f = kg_request_scoped(req, sizeof(*f), on_dispose);
    memset(f, 0, sizeof(*f));
    f->super.proceed = do_proceed;
    f->super.stop = do_stop;
    f->req = req;
    f->meter = fwd->meter;
    f->withhold_usage = fwd->withhold_usage;
    h2o_buffer_init(&f->held, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&f->passed, &h2o_socket_buffer_prototype);
    if (fwd->meter != NULL)
        fwd->meter->upstream_ns = kg_meter_now_ns();
    bool replayable = false;
    f->bufs[0] = build_head(req, fwd, &replayable);
    f->bufs[1] = fwd->body;
    h2o_buffer_init(&f->last_content, &h2o_socket_buffer_prototype);
    h2o_doublebuffer_init(&f->sending, &h2o_socket_buffer_prototype);
    kg_upconn_request(&f->client, f, pl->conns, f->bufs, f->bufs[1].len != 0 ? 2 : 1, replayable, on_head);
}
