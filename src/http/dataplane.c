/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the data-plane routes of SPEC §4 that exist so far: the model list and
 * the three inference routes. Each request is authenticated from the key index, its body read
 * once by the streaming scanner, its model resolved in the catalog, and then answered by the
 * mock provider or forwarded upstream. Nothing here touches the store or blocks; everything
 * per request comes from the request's memory pool.
 */
#include "http/http_internal.h"
#include "http/request_scope.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/decimal.h"
#include "json/body_scan.h"
#include "policy/origin.h"
#include "policy/policy.h"
#include "proxy/mock.h"
#include "proxy/upstream.h"
#include "metrics/metrics.h"
#include "usage/meter.h"

/* What an x-ratelimit-* header says of a measure with no limit (a number, as clients parse it). */
#define UNLIMITED "2147483647"

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

/* ==== Metrics: every data-plane request is counted when its memory is released ==== */

/* Every data-plane request's accounting, in one pool object with one destructor (libh2o frees
 * a pool's objects in an order of its own: a second object could be gone when this one runs). */
typedef struct request_metric {
    kg_worker_t *worker;
    h2o_req_t *req;
    kg_metrics_route_t route;
    int64_t started_ns;
    bool metered;        /* an inference request that reached admission: `meter` is in use */
    h2o_linklist_t link; /* in worker->metered while metered */
    kg_meter_t meter;    /* its limits and usage record */
} request_metric_t;

/* Copies a string into a fixed record field, cut to fit (printf costs more than the rest here). */
static void copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}
#define COPY_FIELD(dst, src) copy_field((dst), sizeof(dst), (src))

/* A request abandoned by its client still gets its record, with the status it was sent (h2o
 * runs pool destructors while the request itself is still intact). */
static void on_metric_dispose(void *p)
{
    request_metric_t *rm = p;
    kg_meter_t *m = rm->metered ? &rm->meter : NULL;
    if (h2o_linklist_is_linked(&rm->link))
        h2o_linklist_unlink(&rm->link);
    int status = rm->req->res.status != 0 ? rm->req->res.status : 499;
    kg_meter_finish(m, status);
    kg_metrics_request(rm->worker->metrics, rm->route, status, m != NULL ? m->record.model : "",
                       (kg_meter_now_ns() - rm->started_ns) / 1000,
                       m != NULL && m->upstream_ns != 0 ? m->record.upstream_latency_us : -1);
    if (m != NULL && m->journal_failed)
        kg_metrics_journal_failure(rm->worker->metrics);
}

static request_metric_t *count_request(kg_worker_t *w, h2o_req_t *req, route_t route)
{
    static const kg_metrics_route_t routes[] = {
        [R_NONE] = KG_MROUTE_OTHER,
        [R_MODELS] = KG_MROUTE_MODELS,
        [R_MODEL] = KG_MROUTE_MODELS,
        [R_AGENTS] = KG_MROUTE_AGENTS,
        [R_CHAT] = KG_MROUTE_CHAT,
        [R_COMPLETIONS] = KG_MROUTE_COMPLETIONS,
        [R_EMBEDDINGS] = KG_MROUTE_EMBEDDINGS,
    };
    request_metric_t *rm = kg_request_scoped(req, sizeof(*rm), on_metric_dispose);
    rm->worker = w, rm->req = req, rm->route = routes[route], rm->started_ns = kg_meter_now_ns();
    rm->metered = false; /* the meter is cleared only when it is used */
    rm->link = (h2o_linklist_t){NULL, NULL};
    return rm;
}

void kg__dataplane_abandon(kg_worker_t *w)
{
    /* These requests will never end: their clients get no more bytes, but what they were sent
     * is accounted (the journal writer is freed after this returns). */
    for (h2o_linklist_t *l = w->metered.next; l != &w->metered; l = l->next) {
        request_metric_t *rm = H2O_STRUCT_FROM_MEMBER(request_metric_t, link, l);
        kg_meter_finish(&rm->meter, rm->req->res.status != 0 ? rm->req->res.status : 499);
    }
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
    in_flight_guard_t *g = kg_request_scoped(req, sizeof(*g), on_request_done);
    g->worker = w;
    w->in_flight++;
}

/*
 * An ephemeral token's narrowing: "m=a,b*;a=c;" — a tag that is absent leaves the key's own list;
 * a present one must also allow the name (exact, or a prefix ending in '*').
 */
static bool eph_allows(const char *allow, char tag, const char *name, size_t len)
{
    for (const char *p = allow; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ';');
        if (end == NULL)
            return false;
        if (p[0] == tag && p[1] == '=') {
            for (const char *e = p + 2; e < end;) {
                const char *comma = memchr(e, ',', (size_t)(end - e));
                const char *stop = comma != NULL ? comma : end;
                size_t elen = (size_t)(stop - e);
                if (elen > 0 && e[elen - 1] == '*' ? len >= elen - 1 && memcmp(e, name, elen - 1) == 0
                                                   : elen == len && memcmp(e, name, len) == 0)
                    return true;
                e = stop + 1;
            }
            return false;
        }
        p = end + 1;
    }
    return true;
}

/* ==== Models ==== */

/* The key's team (NULL: none): its limits and credit pool apply to the key's calls. */
static const kg_team_t *team_of(const kg_catalog_t *cat, const kg_key_view_t *view)
{
    return view->team_id[0] != '\0' ? kg_catalog_team(cat, view->org_id, view->team_id) : NULL;
}
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

static void list_models(h2o_req_t *req, const kg_key_view_t *view, bool agents_only)
{
    const kg_catalog_t *cat = kg_catalog_current(); /* under the read lock */
    size_t cap = 64 + (cat->n_models + cat->n_agents) * 512;
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    size_t at = (size_t)snprintf(buf, cap, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    {
        for (size_t i = 0; i < cat->n_models && !agents_only; i++) {
            const kg_model_t *m = &cat->models[i];
            if (!kg_catalog_same_org(m->org_id, view->org_id) || !kg_policy_lists_model(cat, view, view->policy, m) ||
                (view->ephemeral && !eph_allows(view->eph_allow, 'm', m->name, strlen(m->name))))
                continue;
            at += (size_t)snprintf(buf + at, cap - at, "%s", first ? "" : ",");
            at += model_json(buf + at, cap - at, m->name, m->provider->name, cat->created_at, m->provider->available,
                             "model");
            first = false;
        }
        for (size_t i = 0; i < cat->n_agents; i++) {
            const kg_agent_t *a = &cat->agents[i];
            if (!kg_catalog_same_org(a->org_id, view->org_id) || !kg_policy_lists_agent(cat, view, view->policy, a) ||
                (view->ephemeral && !eph_allows(view->eph_allow, 'a', a->name, strlen(a->name))))
                continue;
            at += (size_t)snprintf(buf + at, cap - at, "%s", first ? "" : ",");
            at += model_json(buf + at, cap - at, a->name, "keygate", cat->created_at,
                             a->model != NULL && a->model->provider->available, "agent");
            first = false;
        }
    }
    at += (size_t)snprintf(buf + at, cap - at, "],\"has_more\":false}");
    kg__http_send_json(req, 200, buf, at);
}

static void get_model(h2o_req_t *req, const kg_key_view_t *view, h2o_iovec_t id)
{
    const kg_catalog_t *cat = kg_catalog_current(); /* under the read lock */
    kg_decision_t d;
    char buf[1024];
    size_t len;
    kg_policy_decide(cat, view, view->policy, KG_ROUTE_MODELS, id.base, id.len, &d);
    if ((d.code == KG_OK || d.code == KG_EPROVIDER_UNAVAILABLE) && view->ephemeral &&
        !eph_allows(view->eph_allow, d.agent != NULL ? 'a' : 'm', id.base, id.len)) {
        d.code = KG_EMODEL_NOT_ALLOWED;
        snprintf(d.message, sizeof(d.message), "This ephemeral token may not use this model.");
    }
    if (d.code != KG_OK && d.code != KG_EPROVIDER_UNAVAILABLE) {
        kg_error_t err = {.code = d.code};
        snprintf(err.message, sizeof(err.message), "%s", d.message);
        snprintf(err.param, sizeof(err.param), "model");
        kg__http_send_error(req, &err);
        return;
    }
    if (d.agent != NULL)
        len = model_json(buf, sizeof(buf), d.agent->name, "keygate", cat->created_at, d.model->provider->available,
                         "agent");
    else
        len = model_json(buf, sizeof(buf), d.model->name, d.model->provider->name, cat->created_at,
                         d.model->provider->available, "model");
    kg__http_send_json(req, 200, buf, len);
}

/* ==== Inference ==== */

typedef struct scan_memory {
    unsigned char *arena; /* the worker's scan_arena */
    size_t used;
    h2o_mem_pool_t *spill; /* the request's pool */
} scan_memory_t;

static void *scan_alloc(void *ctx, size_t size)
{
    scan_memory_t *m = ctx;
    size_t at = (m->used + 15) & ~(size_t)15;
    if (size <= sizeof(((kg_worker_t *)NULL)->scan_arena) - at) {
        m->used = at + size;
        return m->arena + at;
    }
    return h2o_mem_alloc_pool(m->spill, size);
}

/*
 * The permitted rewrites of SPEC §4, and nothing else: an agent's alias (or a catalog name with
 * another upstream name) becomes the upstream model, and the policy system message goes first
 * in `messages`. Every other byte of the body
 * (order, spacing, unknown members, numbers) is copied as it came, from the offsets the
 * scanner recorded.
 */
static h2o_iovec_t rewrite_body(h2o_req_t *req, const kg_key_view_t *view, const kg_decision_t *d,
                                const kg_body_info_t *info, h2o_iovec_t body, bool renamed, bool ask_usage)
{
    const kg_catalog_t *cat = kg_catalog_current(); /* under the read lock */
    typedef struct edit {
        size_t from, to; /* body[from, to) is replaced */
        h2o_iovec_t with;
    } edit_t;
    edit_t edits[3];
    size_t n = 0, extra = 0;

    if (ask_usage) { /* first member of the top-level object (the scanner saw an object) */
        size_t open = 0;
        while (open < body.len && body.base[open] != '{')
            open++;
        edits[n++] =
            (edit_t){open + 1, open + 1, h2o_iovec_init(H2O_STRLIT("\"stream_options\":{\"include_usage\":true},"))};
    }
    if (renamed) {
        const char *up = d->model->upstream_model;
        size_t len = strlen(up);
        char *tok = h2o_mem_alloc_pool(&req->pool, len + 2);
        tok[0] = '"', memcpy(tok + 1, up, len), tok[len + 1] = '"'; /* catalog names need no escaping */
        edits[n++] = (edit_t){info->model_start, info->model_end, h2o_iovec_init(tok, len + 2)};
    }
    if (d->prompt && info->has_messages) {
        size_t len = kg_policy_system_message_len(cat, view, view->policy, d);
        char *msg = h2o_mem_alloc_pool(&req->pool, len + 1);
        len = kg_policy_system_message(cat, view, view->policy, d, msg, len + 1);
        if (!info->messages_empty)
            msg[len++] = ',';
        edits[n++] = (edit_t){info->messages_open, info->messages_open, h2o_iovec_init(msg, len)};
    }
    for (size_t i = 1; i < n; i++) /* apply in body order */
        for (size_t j = i; j > 0 && edits[j].from < edits[j - 1].from; j--) {
            edit_t t = edits[j];
            edits[j] = edits[j - 1], edits[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++)
        extra += edits[i].with.len;
    char *out = h2o_mem_alloc_pool(&req->pool, body.len + extra);
    size_t at = 0, from = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + at, body.base + from, edits[i].from - from), at += edits[i].from - from;
        memcpy(out + at, edits[i].with.base, edits[i].with.len), at += edits[i].with.len;
        from = edits[i].to;
    }
    memcpy(out + at, body.base + from, body.len - from), at += body.len - from;
    return h2o_iovec_init(out, at);
}

/* ==== Limits and accounting ==== */

/* Adds a response header (each of these is set once per answer: no search for an earlier one). */
static void add_header(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 0, NULL,
                          h2o_strdup(&req->pool, value, len).base, len);
}

static void add_int_header(h2o_req_t *req, const char *name, size_t name_len, int64_t v)
{
    char buf[24];
    add_header(req, name, name_len, buf, kg_format_uint(v > 0 ? (uint64_t)v : 0, buf));
}

/* The key's and its team's limits and counters, as one admission will take them. */
static void holders_of(const kg_key_view_t *view, const kg_team_t *team, kg_admission_t *a)
{
    a->holders[0] = (kg_holder_t){view->limit_state, view->policy->limits, view->policy->budget};
    if (team != NULL)
        a->holders[1] = (kg_holder_t){team->state, team->limits, team->budget};
    a->n_holders = team != NULL ? 2 : 1;
}

/* SPEC §5's x-ratelimit-* triples, from the limiter's state (after admission, when there was one). */
static void add_ratelimit_headers(h2o_req_t *req, const kg_admission_t *a, int64_t now_ns)
{
    kg_gcra_state_t st[2];
    static const char *const names[2][3] = {
        {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"},
        {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}};
    kg_admission_headers(a, now_ns, &st[0], &st[1]);
    for (int i = 0; i < 2; i++) {
        char reset[32];
        if (st[i].limit == 0) {
            add_header(req, names[i][0], strlen(names[i][0]), H2O_STRLIT(UNLIMITED));
            add_header(req, names[i][1], strlen(names[i][1]), H2O_STRLIT(UNLIMITED));
            add_header(req, names[i][2], strlen(names[i][2]), H2O_STRLIT("0s"));
            continue;
        }
        add_int_header(req, names[i][0], strlen(names[i][0]), st[i].limit);
        add_int_header(req, names[i][1], strlen(names[i][1]), st[i].remaining);
        add_header(req, names[i][2], strlen(names[i][2]), reset, kg_reset_format(st[i].reset_ns, reset, sizeof(reset)));
    }
}

/*
 * Admits the request against its key's and team's limits and budgets, and prepares its usage
 * record. Returns the meter, or NULL after answering 429 (Retry-After and retry-after-ms; x-should-retry: false when
 * retrying cannot help).
 */
static kg_meter_t *admit(kg_worker_t *w, h2o_req_t *req, request_metric_t *rm, const kg_key_view_t *view,
                         const kg_team_t *team, const kg_decision_t *d, const kg_body_info_t *info, size_t body_len,
                         route_t route)
{
    kg_error_t err = {0};
    kg_meter_t *m = &rm->meter;
    memset(m, 0, sizeof(*m));
    rm->metered = true; /* the metrics name the model even of a refused call */
    h2o_linklist_insert(&w->metered, &rm->link);
    holders_of(view, team, &m->admission);
    m->input_micro = d->model->input_micro, m->output_micro = d->model->output_micro;
    m->reserved_input = (int64_t)body_len / 4 + 1;
    /* The most the call may generate: every choice (n, best_of) up to its max_tokens. */
    m->reserved_output = route == R_EMBEDDINGS
                             ? 0
                             : (info->max_tokens > 0 ? info->max_tokens : w->server->opts.default_max_tokens) *
                                   (info->choices > 1 ? info->choices : 1);
    m->started_ns = rm->started_ns;
    m->journal = w->journal;
    kg_usage_record_t *r = &m->record;
    COPY_FIELD(r->request_id, w->request_id);
    COPY_FIELD(r->key_id, view->id);
    COPY_FIELD(r->org_id, view->org_id);
    COPY_FIELD(r->team_id, view->team_id);
    COPY_FIELD(r->model, info->model); /* a longer name was not found in the catalog */
    COPY_FIELD(r->upstream_model, d->model->upstream_model);
    r->route = route == R_CHAT ? KG_USAGE_CHAT : route == R_COMPLETIONS ? KG_USAGE_COMPLETIONS : KG_USAGE_EMBEDDINGS;
    r->stream = info->stream;

    kg_refusal_t why;
    if (kg_meter_start(m, &why) != KG_OK) {
        add_ratelimit_headers(req, &m->admission, m->started_ns);
        if (why.retry_useless) {
            add_header(req, H2O_STRLIT("x-should-retry"), H2O_STRLIT("false"));
        } else {
            int64_t ms = (why.retry_after_ns + 999999) / 1000000;
            add_int_header(req, H2O_STRLIT("retry-after"), (ms + 999) / 1000);
            add_int_header(req, H2O_STRLIT("retry-after-ms"), ms);
        }
        kg_metrics_refusal(w->metrics, why.code);
        kg_error_set(&err, why.code, NULL, "%s", why.message);
        kg__http_send_error(req, &err);
        return NULL;
    }
    add_ratelimit_headers(req, &m->admission, kg_meter_now_ns());
    return m;
}

/* Answers an inference request refused before admission, with the limits as they stand (SPEC
 * §5: every authenticated inference answer carries them; an admitted one carries those after
 * its admission instead, so they are not added until one or the other is known). */
static void refuse(h2o_req_t *req, const kg_admission_t *now, const request_metric_t *rm, const kg_error_t *err)
{
    add_ratelimit_headers(req, now, rm->started_ns);
    kg__http_send_error(req, err);
}

static void inference(kg_worker_t *w, h2o_req_t *req, request_metric_t *rm, const kg_key_view_t *view, route_t route)
{
    const kg_catalog_t *cat = kg_catalog_current(); /* under the read lock */
    scan_memory_t scan_memory = {w->scan_arena, 0, &req->pool};
    kg_body_alloc_t alloc = {scan_alloc, &scan_memory};
    kg_body_info_t info;
    kg_error_t err = {0};
    h2o_iovec_t body = req->entity.base != NULL ? req->entity : h2o_iovec_init("", 0);
    const kg_team_t *team = team_of(cat, view);

    /* The limits as they stand, for an answer refused before admission (refuse). */
    kg_admission_t now = {0};
    holders_of(view, team, &now);

    if (kg_body_scan(body.base, body.len, &alloc, &info, &err) != KG_OK) {
        refuse(req, &now, rm, &err);
        return;
    }
    if (!info.has_model) {
        kg_error_set(&err, KG_EMISSING_MODEL, NULL, "You must provide a model parameter.");
        refuse(req, &now, rm, &err);
        return;
    }
    if (!info.model_is_string) {
        kg_error_set(&err, KG_EINVALID_VALUE, "model", "'model' must be a string.");
        refuse(req, &now, rm, &err);
        return;
    }
    kg_route_kind_t kind = route == R_CHAT          ? KG_ROUTE_CHAT
                           : route == R_COMPLETIONS ? KG_ROUTE_COMPLETIONS
                                                    : KG_ROUTE_EMBEDDINGS;
    kg_decision_t d;
    if (view->ephemeral && (view->eph_scopes & kg_route_scope(kind)) == 0) {
        kg_error_set(&err, KG_EINSUFFICIENT_SCOPE, NULL, "This ephemeral token may not call this route.");
        refuse(req, &now, rm, &err);
        return;
    }
    if (kg_policy_decide(cat, view, view->policy, kind, info.model, info.model_len, &d) == KG_OK && view->ephemeral &&
        !eph_allows(view->eph_allow, d.agent != NULL ? 'a' : 'm', info.model, info.model_len)) {
        kg_error_set(&err, KG_EMODEL_NOT_ALLOWED, "model", "This ephemeral token may not use the model '%.128s'.",
                     info.model);
        refuse(req, &now, rm, &err);
        return;
    }
    if (d.code != KG_OK) {
        bool about_model = d.code != KG_EINSUFFICIENT_SCOPE && d.code != KG_EPOLICY_UNSUPPORTED_ROUTE;
        kg_error_set(&err, d.code, about_model ? "model" : NULL, "%s", d.message);
        refuse(req, &now, rm, &err);
        return;
    }
    const kg_model_t *model = d.model;
    const kg_provider_t *p = model->provider;
    if (d.prompt && !info.has_messages) {
        /* Prompt policy must be applied; a body without a messages array cannot carry it. */
        kg_error_set(&err, KG_EINVALID_VALUE, "messages", "'messages' must be an array of messages.");
        refuse(req, &now, rm, &err);
        return;
    }
    kg_meter_t *meter = admit(w, req, rm, view, team, &d, &info, body.len, route);
    if (meter == NULL)
        return; /* refused: answered */
    bool renamed = d.agent != NULL || strcmp(d.model->name, d.model->upstream_model) != 0;
    /* SPEC §4: a stream asks its provider for usage (so it is billed exactly) unless the caller
     * set stream_options itself; the usage chunk is then kept from the caller, who did not ask. */
    bool ask_usage = info.stream && !info.has_stream_options && route != R_EMBEDDINGS && p->stream_usage &&
                     p->type != KG_PROVIDER_MOCK;
    if (renamed || d.prompt || ask_usage)
        body = rewrite_body(req, view, &d, &info, body, renamed, ask_usage);
    track(w, req);
    if (p->type == KG_PROVIDER_MOCK) {
        if (route == R_EMBEDDINGS && (info.n_inputs > KG_MOCK_MAX_INPUTS || info.dimensions > KG_MOCK_MAX_DIMENSIONS)) {
            kg_error_set(&err, KG_EINVALID_VALUE, info.n_inputs > KG_MOCK_MAX_INPUTS ? "input" : "dimensions",
                         "At most %d inputs of at most %d dimensions per call.", KG_MOCK_MAX_INPUTS,
                         KG_MOCK_MAX_DIMENSIONS);
            kg__http_send_error(req, &err);
            return;
        }
        kg_mock_route_t mr = route == R_CHAT          ? KG_MOCK_CHAT
                             : route == R_COMPLETIONS ? KG_MOCK_COMPLETIONS
                                                      : KG_MOCK_EMBEDDINGS;
        kg_mock_respond(req, &w->mock_tick, mr, &info, body.len, model->upstream_model, w->request_id, meter);
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
        .team_id = view->team_id,
        .environment = view->environment,
        .meter = meter,
        .withhold_usage = ask_usage,
    };
    kg_upstream_forward(w->upstream, req, &fwd);
}

/* A fresh request id per request: the worker's random prefix and a counter (no syscall). */
static void next_request_id(kg_worker_t *w, h2o_req_t *req)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++w->request_counter;
    size_t at = strnlen(w->request_id_prefix, sizeof(w->request_id_prefix)), digits = 8;
    while (digits < 16 && (n >> (4 * digits)) != 0)
        digits++; /* "%08llx": at least eight hex digits */
    memcpy(w->request_id, w->request_id_prefix, at);
    for (size_t i = 0; i < digits; i++)
        w->request_id[at + i] = hex[(n >> (4 * (digits - 1 - i))) & 15];
    at += digits;
    w->request_id[at] = '\0';
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, w->request_id, at).base, at);
}

static void handle_authenticated(kg_worker_t *w, h2o_req_t *req, request_metric_t *rm, route_t route,
                                 h2o_iovec_t model_id);

/* ==== CORS (SPEC §2) ==== */

/*
 * Whether the request's Origin belongs to an active publishable key's domains (the union kept
 * by the key index). Writes the exact Origin to echo into *echo.
 */
static bool origin_listed(kg_worker_t *w, h2o_req_t *req, h2o_iovec_t *echo)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    char host[KG_ORIGIN_HOST_MAX];
    bool listed = false;
    if (i == -1 || h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), i) != -1)
        return false;
    *echo = req->headers.entries[i].value;
    if (!kg_origin_host(echo->base, echo->len, false, host, sizeof(host)))
        return false;
    kg_key_index_read_lock();
    const kg_domain_set_t *set = kg_key_index_domains(w->server->opts.index);
    int64_t now = (int64_t)time(NULL);
    for (size_t k = 0; set != NULL && k < set->n && !listed; k++)
        listed = (set->expires_at[k] == 0 || now < set->expires_at[k]) && kg_origin_match(host, set->patterns[k]);
    kg_key_index_read_unlock();
    return listed;
}

static void add_cors(h2o_req_t *req, h2o_iovec_t origin)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-origin"), 0, NULL,
                          h2o_strdup(&req->pool, origin.base, origin.len).base, origin.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                          H2O_STRLIT("x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
                                     "x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
                                     "x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens"));
}

/* A preflight carries no key: it is answered for listed origins only, echoing the origin (never
 * "*") and the headers the browser asks for (the OpenAI SDK sends x-stainless-*). */
static void preflight(kg_worker_t *w, h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t origin;
    /* Vary and, for a listed origin, the allow-origin headers were added by kg__cors_apply. */
    if (!origin_listed(w, req, &origin)) {
        kg__http_fail(req, KG_EORIGIN_NOT_ALLOWED, "This origin may not call this gateway from a browser.");
        return;
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                          H2O_STRLIT("GET, POST, OPTIONS"));
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"), -1);
    if (i != -1)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                              req->headers.entries[i].value.base, req->headers.entries[i].value.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL,
                          H2O_STRLIT("600"));
    req->res.status = 204;
    req->res.reason = "No Content";
    req->res.content_length = 0;
    h2o_start_response(req, &generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

void kg__cors_apply(kg_worker_t *w, h2o_req_t *req)
{
    h2o_iovec_t origin;
    /* Answers to listed origins carry CORS headers, errors included (the page must read them). */
    if (origin_listed(w, req, &origin))
        add_cors(req, origin);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
}

void kg__dataplane_handle(kg_worker_t *w, h2o_req_t *req, h2o_iovec_t path)
{
    h2o_iovec_t model_id = {NULL, 0};
    route_t route = match_route(path, &model_id);

    if (method_is(req, H2O_STRLIT("OPTIONS"))) {
        preflight(w, req);
        return;
    }

    next_request_id(w, req);
    request_metric_t *rm = count_request(w, req, route);
    bool is_get = method_is(req, H2O_STRLIT("GET")) || method_is(req, H2O_STRLIT("HEAD"));
    bool wants_get = route == R_MODELS || route == R_MODEL || route == R_AGENTS;
    if (wants_get ? !is_get : !method_is(req, H2O_STRLIT("POST"))) {
        kg__http_fail(req, KG_EMETHOD_NOT_ALLOWED, wants_get ? "Use GET on this route." : "Use POST on this route.");
        return;
    }
    /* The key's policy is read under the index's read lock, for this synchronous part only. */
    kg_key_index_read_lock();
    handle_authenticated(w, req, rm, route, model_id);
    kg_key_index_read_unlock();
}

static void handle_authenticated(kg_worker_t *w, h2o_req_t *req, request_metric_t *rm, route_t route,
                                 h2o_iovec_t model_id)
{
    kg_key_view_t view;
    kg_err_t rv = kg__http_authenticate(w, req, &view, NULL, NULL);
    if (rv != KG_OK) {
        kg__http_fail(req, rv, NULL);
        return;
    }
#ifndef KG_BREAK_RULE_TYPE
    if (view.type != KG_TOKEN_ACCESS) {
        kg__http_fail(req, KG_EINSUFFICIENT_SCOPE,
                      view.type == KG_TOKEN_ADMIN ? "Admin keys cannot call data-plane routes; use an access key."
                                                  : "Gateway keys may call runtime routes only; use an access key.");
        return;
    }
#endif
    switch (route) {
    case R_MODELS: list_models(req, &view, false); break;
    case R_AGENTS: list_models(req, &view, true); break;
    case R_MODEL: get_model(req, &view, model_id); break;
    default: inference(w, req, rm, &view, route); break;
    }
}
