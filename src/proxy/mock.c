/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the demo provider of mock.h. Every byte of an answer is formatted into
 * the request's memory pool; a stream's chunks are sent one per tick of the loop's timer and
 * only after the client took the previous one (the generator's proceed).
 */
#include "proxy/mock.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "http/request_scope.h"

static const char *const words[] = {"Hello!", "I",     "am", "keygate's", "built-in", "demo",
                                    "model.", "Point", "a",  "provider",  "at",       "a",
                                    "real",   "model", "to", "get",       "real",     "answers."};
#define N_WORDS (sizeof(words) / sizeof(words[0]))
/* The data plane refuses larger requests before they get here (KG_MOCK_MAX_*). */

/* printf into the request pool. */
static h2o_iovec_t pool_printf(h2o_mem_pool_t *pool, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static h2o_iovec_t pool_printf(h2o_mem_pool_t *pool, size_t cap, const char *fmt, ...)
{
    char *buf = h2o_mem_alloc_pool(pool, cap);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return h2o_iovec_init(buf, n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1);
}

static void send_whole(h2o_req_t *req, const char *content_type, h2o_iovec_t body, kg_meter_t *meter)
{
    static h2o_generator_t generator = {NULL, NULL};
    kg_meter_observe(meter, body.base, body.len);
    kg_meter_finish(meter, 200); /* journaled before the client can see the answer complete */
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

static h2o_iovec_t answer_text(h2o_mem_pool_t *pool)
{
    size_t len = 0;
    for (size_t i = 0; i < N_WORDS; i++)
        len += strlen(words[i]) + 1;
    char *buf = h2o_mem_alloc_pool(pool, len);
    size_t at = 0;
    for (size_t i = 0; i < N_WORDS; i++) {
        if (i > 0)
            buf[at++] = ' ';
        memcpy(buf + at, words[i], strlen(words[i]));
        at += strlen(words[i]);
    }
    return h2o_iovec_init(buf, at);
}

/* ==== Streaming ==== */

typedef struct mock_stream {
    h2o_generator_t super;
    h2o_req_t *req;
    h2o_timeout_t *tick;
    h2o_timeout_entry_t timer;
    h2o_iovec_t *chunks;
    size_t n_chunks, next;
    kg_meter_t *meter;
} mock_stream_t;

static void send_next(mock_stream_t *s)
{
    h2o_iovec_t chunk = s->chunks[s->next++];
    bool last = s->next == s->n_chunks;
    kg_meter_observe(s->meter, chunk.base, chunk.len);
    if (last)
        kg_meter_finish(s->meter, 200);
    h2o_send(s->req, &chunk, 1, last ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    mock_stream_t *s = H2O_STRUCT_FROM_MEMBER(mock_stream_t, timer, entry);
    send_next(s);
}

static void on_proceed(h2o_generator_t *generator, h2o_req_t *req)
{
    mock_stream_t *s = (mock_stream_t *)generator;
    h2o_timeout_link(req->conn->ctx->loop, s->tick, &s->timer);
}

static void on_stop(h2o_generator_t *generator, h2o_req_t *req)
{
    mock_stream_t *s = (mock_stream_t *)generator;
    (void)req;
    if (h2o_timeout_is_linked(&s->timer))
        h2o_timeout_unlink(&s->timer);
}

static void on_stream_dispose(void *p)
{
    mock_stream_t *s = p;
    if (h2o_timeout_is_linked(&s->timer))
        h2o_timeout_unlink(&s->timer);
}

static void stream_words(h2o_req_t *req, h2o_timeout_t *tick, kg_mock_route_t route, const kg_body_info_t *info,
                         size_t prompt_tokens, const char *model, const char *request_id, kg_meter_t *meter)
{
    mock_stream_t *s = kg_request_scoped(req, sizeof(*s), on_stream_dispose);
    memset(s, 0, sizeof(*s));
    s->meter = meter;
    s->super.proceed = on_proceed;
    s->super.stop = on_stop;
    s->req = req;
    s->tick = tick;
    s->timer.cb = on_tick;
    s->chunks = h2o_mem_alloc_pool(&req->pool, sizeof(h2o_iovec_t) * (N_WORDS + 4));
    long created = (long)time(NULL);
    bool chat = route == KG_MOCK_CHAT;
    const char *object = chat ? "chat.completion.chunk" : "text_completion";
    const char *id_prefix = chat ? "chatcmpl-" : "cmpl-";

    if (chat)
        s->chunks[s->n_chunks++] = pool_printf(
            &req->pool, 512,
            "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":[{\"index\":0,"
            "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            id_prefix, request_id, object, created, model);
    for (size_t i = 0; i < N_WORDS; i++) {
        const char *sep = i + 1 < N_WORDS ? " " : "";
        s->chunks[s->n_chunks++] =
            chat ? pool_printf(
                       &req->pool, 512,
                       "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":["
                       "{\"index\":0,\"delta\":{\"content\":\"%s%s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                       id_prefix, request_id, object, created, model, words[i], sep)
                 : pool_printf(&req->pool, 512,
                               "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":["
                               "{\"text\":\"%s%s\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                               id_prefix, request_id, object, created, model, words[i], sep);
    }
    s->chunks[s->n_chunks++] =
        chat ? pool_printf(&req->pool, 512,
                           "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":[{"
                           "\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
                           id_prefix, request_id, object, created, model)
             : pool_printf(&req->pool, 512,
                           "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":[{"
                           "\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
                           id_prefix, request_id, object, created, model);
    h2o_iovec_t usage = pool_printf(
        &req->pool, 512,
        "data: {\"id\":\"%s%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"%s\",\"choices\":[],\"usage\":{"
        "\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}}\n\n",
        id_prefix, request_id, object, created, model, prompt_tokens, N_WORDS, prompt_tokens + N_WORDS);
    if (info->include_usage)
        s->chunks[s->n_chunks++] = usage;
    else
        kg_meter_observe(meter, usage.base, usage.len); /* billed exactly, as a provider's would be (SPEC §4) */
    s->chunks[s->n_chunks++] = h2o_iovec_init(H2O_STRLIT("data: [DONE]\n\n"));

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_start_response(req, &s->super);
    send_next(s); /* the first chunk goes at once; the rest one per tick */
}

/* ==== Whole answers ==== */

static void embeddings(h2o_req_t *req, const kg_body_info_t *info, size_t prompt_tokens, const char *model,
                       kg_meter_t *meter)
{
    size_t n = info->n_inputs > 0 ? info->n_inputs : 1;
    size_t dims = info->dimensions > 0 && info->dimensions <= KG_MOCK_MAX_DIMENSIONS ? (size_t)info->dimensions : 16;
    /* Worst cases: base64 of 4*dims bytes is 4*ceil(4*dims/3) chars; "%.7f" of a unit value is at most 10. */
    size_t per_item = info->encoding_base64 ? 4 * ((4 * dims + 2) / 3) + 2 : dims * 11 + 2;
    size_t cap = 256 + strlen(model) + n * (per_item + 96);
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    float *vec = h2o_mem_alloc_pool(&req->pool, dims * sizeof(float));
    size_t at = (size_t)snprintf(buf, cap, "{\"object\":\"list\",\"data\":[");

    for (size_t i = 0; i < n; i++) {
        /* A deterministic unit-length vector per input position. */
        double norm = 0;
        for (size_t j = 0; j < dims; j++) {
            vec[j] = (float)sin((double)(i + 1) * (double)(j + 1));
            norm += (double)vec[j] * vec[j];
        }
        for (size_t j = 0; j < dims; j++)
            vec[j] = (float)(vec[j] / sqrt(norm));
        at += (size_t)snprintf(buf + at, cap - at,
                               "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i > 0 ? "," : "", i);
        if (info->encoding_base64) {
            /* float32 little-endian, base64 (what the OpenAI SDKs ask for by default) */
            buf[at++] = '"';
            at += (size_t)EVP_EncodeBlock((unsigned char *)buf + at, (const unsigned char *)vec, (int)(dims * 4));
            buf[at++] = '"';
        } else {
            buf[at++] = '[';
            for (size_t j = 0; j < dims; j++)
                at += (size_t)snprintf(buf + at, cap - at, "%s%.7f", j > 0 ? "," : "", (double)vec[j]);
            buf[at++] = ']';
        }
        buf[at++] = '}';
    }
    at += (size_t)snprintf(buf + at, cap - at,
                           "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}", model,
                           prompt_tokens, prompt_tokens);
    send_whole(req, "application/json", h2o_iovec_init(buf, at < cap ? at : cap - 1), meter);
}

void kg_mock_respond(h2o_req_t *req, h2o_timeout_t *tick, kg_mock_route_t route, const kg_body_info_t *info,
                     size_t body_len, const char *model, const char *request_id, kg_meter_t *meter)
{
    size_t prompt_tokens = body_len / 4 > 0 ? body_len / 4 : 1;
    long created = (long)time(NULL);

    if (route == KG_MOCK_EMBEDDINGS) {
        embeddings(req, info, prompt_tokens, model, meter);
        return;
    }
    if (info->stream) {
        stream_words(req, tick, route, info, prompt_tokens, model, request_id, meter);
        return;
    }
    h2o_iovec_t text = answer_text(&req->pool);
    h2o_iovec_t body =
        route == KG_MOCK_CHAT
            ? pool_printf(
                  &req->pool, 1024 + text.len,
                  "{\"id\":\"chatcmpl-%s\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":\"%s\","
                  "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%.*s\","
                  "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":"
                  "%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu},\"system_fingerprint\":null}",
                  request_id, created, model, (int)text.len, text.base, prompt_tokens, N_WORDS, prompt_tokens + N_WORDS)
            : pool_printf(&req->pool, 1024 + text.len,
                          "{\"id\":\"cmpl-%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":\"%s\","
                          "\"choices\":[{\"text\":\"%.*s\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                          "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}}",
                          request_id, created, model, (int)text.len, text.base, prompt_tokens, N_WORDS,
                          prompt_tokens + N_WORDS);
    send_whole(req, "application/json", body, meter);
}
