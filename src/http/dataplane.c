/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the data-plane routes of SPEC §4 that exist so far: the model list and
 * the three inference routes. Each request is authenticated from the key index, its body read
 * once by the streaming scanner, its model resolved in the catalog, and then answered by the
 * mock provider or forwarded upstream. Nothing here touches the store or blocks; everything
 * per request comes from the request's memory pool.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <string.h>

#include "json/body_scan.h"
#include "proxy/mock.h"
#include "proxy/upstream.h"

typedef enum route {
    R_NONE,
    R_MODELS,
    R_MODEL,
    R_AGENTS,
    R_CHAT,
    R_COMPLETIONS,
    R_EMBEDDINGS,
} route_t;

static route_t match_route(h2o_iovec_t path, h2o_iovec_t *model_id)
{
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/chat/completions")))
        return R_CHAT;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/completions")))
        return R_COMPLETIONS;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/embeddings")))
        return R_EMBEDDINGS;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/models")))
        return R_MODELS;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/agents")))
        return R_AGENTS;
    if (path.len > 11 && memcmp(path.base, "/v1/models/", 11) == 0) {
        *model_id = h2o_iovec_init(path.base + 11, path.len - 11);
        return R_MODEL;
    }
    return R_NONE;
}

bool kg__dataplane_matches(h2o_iovec_t path)
{
    h2o_iovec_t id;
    return match_route(path, &id) != R_NONE;
}

/* ==== In-flight accounting (the drain on SIGTERM waits for these) ==== */

typedef struct in_flight_guard {
    kg_worker_t *worker;
} in_flight_guard_t;

static void on_request_done(void *p)
{
    in_flight_guard_t *g = p;
    g->worker->in_flight--;
}

static void track(kg_worker_t *w, h2o_req_t *req)
{
    in_flight_guard_t *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), on_request_done);
    g->worker = w;
    w->in_flight++;
}

/* ==== Models ==== */

static bool method_is(h2o_req_t *req, const char *m, size_t len)
{
    return h2o_memis(req->method.base, req->method.len, m, len);
}

/* Appends one model object ("id", "object", "created", "owned_by") and keygate's availability. */
static size_t model_json(char *buf, size_t cap, const char *id, const char *owner, int64_t created, bool available,
                         const char *kind)
{
    int n = snprintf(buf, cap,
                     "{\"id\":\"%s\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"%s\",\"keygate\":{"
                     "\"kind\":\"%s\",\"available\":%s}}",
                     id, (long long)created, owner, kind, available ? "true" : "false");
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void list_models(kg_worker_t *w, h2o_req_t *req, const kg_key_view_t *view, bool agents_only)
{
    const kg_catalog_t *cat = w->server->opts.catalog;
    size_t cap = 64 + (cat->n_models + cat->n_agents) * 512;
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    size_t at = (size_t)snprintf(buf, cap, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    if (kg_catalog_org_visible(view->org_id)) {
        for (size_t i = 0; i < cat->n_models && !agents_only; i++) {
            const kg_model_t *m = &cat->models[i];
            at += (size_t)snprintf(buf + at, cap - at, "%s", first ? "" : ",");
            at += model_json(buf + at, cap - at, m->name, m->provider->name, cat->created_at, m->provider->available,
                             "model");
            first = false;
        }
        for (size_t i = 0; i < cat->n_agents; i++) {
            const kg_agent_t *a = &cat->agents[i];
            at += (size_t)snprintf(buf + at, cap - at, "%s", first ? "" : ",");
            at += model_json(buf + at, cap - at, a->name, "keygate", cat->created_at,
                             a->model != NULL && a->model->provider->available, "agent");
            first = false;
        }
    }
    at += (size_t)snprintf(buf + at, cap - at, "],\"has_more\":false}");
    kg__http_send_json(req, 200, buf, at);
}

static void get_model(kg_worker_t *w, h2o_req_t *req, const kg_key_view_t *view, h2o_iovec_t id)
{
    const kg_catalog_t *cat = w->server->opts.catalog;
    const kg_model_t *m = kg_catalog_model(cat, view->org_id, id.base, id.len);
    const kg_agent_t *a = m == NULL ? kg_catalog_agent(cat, view->org_id, id.base, id.len) : NULL;
    char buf[1024];
    size_t len;
    if (m != NULL)
        len =
            model_json(buf, sizeof(buf), m->name, m->provider->name, cat->created_at, m->provider->available, "model");
    else if (a != NULL)
        len = model_json(buf, sizeof(buf), a->name, "keygate", cat->created_at,
                         a->model != NULL && a->model->provider->available, "agent");
    else {
        kg_error_t err = {.code = KG_EMODEL_NOT_FOUND};
        snprintf(err.message, sizeof(err.message), "The model '%.*s' does not exist.", id.len > 128 ? 128 : (int)id.len,
                 id.base);
        snprintf(err.param, sizeof(err.param), "model");
        kg__http_send_error(req, &err);
        return;
    }
    kg__http_send_json(req, 200, buf, len);
}

/* ==== Inference ==== */

static void *pool_alloc(void *ctx, size_t size)
{
    return h2o_mem_alloc_pool((h2o_mem_pool_t *)ctx, size);
}

static void inference(kg_worker_t *w, h2o_req_t *req, const kg_key_view_t *view, route_t route)
{
    const kg_catalog_t *cat = w->server->opts.catalog;
    kg_body_alloc_t alloc = {pool_alloc, &req->pool};
    kg_body_info_t info;
    kg_error_t err = {0};
    h2o_iovec_t body = req->entity.base != NULL ? req->entity : h2o_iovec_init("", 0);

    if (kg_body_scan(body.base, body.len, &alloc, &info, &err) != KG_OK) {
        kg__http_send_error(req, &err);
        return;
    }
    if (!info.has_model) {
        kg__http_fail(req, KG_EMISSING_MODEL, "You must provide a model parameter.");
        return;
    }
    if (!info.model_is_string) {
        kg_error_set(&err, KG_EINVALID_VALUE, "model", "'model' must be a string.");
        kg__http_send_error(req, &err);
        return;
    }
    const kg_model_t *model = kg_catalog_model(cat, view->org_id, info.model, info.model_len);
    if (model == NULL) {
        /* Agents (aliases with prompt policy) are served by the key-policy milestone. */
        kg_error_set(&err, KG_EMODEL_NOT_FOUND, "model", "The model '%.128s' does not exist.", info.model);
        kg__http_send_error(req, &err);
        return;
    }
    const kg_provider_t *p = model->provider;
    if (!p->available) {
        kg_error_set(&err, KG_EPROVIDER_UNAVAILABLE, "model",
                     "The provider '%s' of model '%s' is unavailable: its credential is not configured.", p->name,
                     model->name);
        kg__http_send_error(req, &err);
        return;
    }
    track(w, req);
    if (p->type == KG_PROVIDER_MOCK) {
        kg_mock_route_t mr = route == R_CHAT          ? KG_MOCK_CHAT
                             : route == R_COMPLETIONS ? KG_MOCK_COMPLETIONS
                                                      : KG_MOCK_EMBEDDINGS;
        kg_mock_respond(req, &w->mock_tick, mr, &info, body.len, model->name, w->request_id);
        return;
    }
    static const h2o_iovec_t suffixes[] = {
        [R_CHAT] = {H2O_STRLIT("/chat/completions")},
        [R_COMPLETIONS] = {H2O_STRLIT("/completions")},
        [R_EMBEDDINGS] = {H2O_STRLIT("/embeddings")},
    };
    kg_forward_t fwd = {
        .provider = p,
        .path_suffix = suffixes[route],
        .body = body,
        .stream = info.stream,
        .org_id = view->org_id,
        .key_id = view->id,
        .environment = view->environment,
    };
    kg_upstream_forward(w->upstream, req, &fwd);
}

/* A fresh request id per request: the worker's random prefix and a counter (no syscall). */
static void next_request_id(kg_worker_t *w, h2o_req_t *req)
{
    snprintf(w->request_id, sizeof(w->request_id), "%s%08llx", w->request_id_prefix,
             (unsigned long long)++w->request_counter);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, w->request_id, strlen(w->request_id)).base, strlen(w->request_id));
}

void kg__dataplane_handle(kg_worker_t *w, h2o_req_t *req, h2o_iovec_t path)
{
    h2o_iovec_t model_id = {NULL, 0};
    route_t route = match_route(path, &model_id);
    kg_key_view_t view;

    next_request_id(w, req);
    bool is_get = method_is(req, H2O_STRLIT("GET")) || method_is(req, H2O_STRLIT("HEAD"));
    bool wants_get = route == R_MODELS || route == R_MODEL || route == R_AGENTS;
    if (wants_get != is_get && !(!wants_get && method_is(req, H2O_STRLIT("POST")))) {
        kg__http_fail(req, KG_EMETHOD_NOT_ALLOWED, wants_get ? "Use GET on this route." : "Use POST on this route.");
        return;
    }
    kg_err_t rv = kg__http_authenticate(w, req, &view);
    if (rv != KG_OK) {
        kg__http_fail(req, rv, NULL);
        return;
    }
    if (view.type != KG_TOKEN_ACCESS) {
        kg__http_fail(req, KG_EINSUFFICIENT_SCOPE,
                      view.type == KG_TOKEN_ADMIN ? "Admin keys cannot call data-plane routes; use an access key."
                                                  : "Gateway keys may call runtime routes only; use an access key.");
        return;
    }
    switch (route) {
    case R_MODELS: list_models(w, req, &view, false); break;
    case R_AGENTS: list_models(w, req, &view, true); break;
    case R_MODEL: get_model(w, req, &view, model_id); break;
    default: inference(w, req, &view, route); break;
    }
}
