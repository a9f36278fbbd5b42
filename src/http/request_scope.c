/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the request-scoped objects of request_scope.h. A request's destructors
 * are kept in a pass-through prefilter (libh2o's per-request list, in the request's pool), which
 * the logger finds again by its callback.
 */
#include "http/request_scope.h"

#define MAX_ENDS 8 /* a proxied request registers four */

typedef struct scope {
    h2o_req_prefilter_t super;
    size_t n;
    struct {
        void (*fn)(void *);
        void *arg;
    } ends[MAX_ENDS];
} scope_t;

/* The prefilter's only job is to be found: it hands the response on unchanged. */
static void pass_through(h2o_req_prefilter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_setup_next_prefilter(self, req, slot);
}

static scope_t *scope_of(h2o_req_t *req)
{
    for (h2o_req_prefilter_t *p = req->prefilters; p != NULL; p = p->next)
        if (p->on_setup_ostream == pass_through)
            return (scope_t *)p;
    return NULL;
}

static void on_log_access(h2o_logger_t *self, h2o_req_t *req)
{
    (void)self;
    scope_t *s = scope_of(req);
    while (s != NULL && s->n > 0) {
        s->n--;
        s->ends[s->n].fn(s->ends[s->n].arg);
    }
}

static int enabled(const h2o_req_t *req)
{
    if (req->pathconf == NULL || req->version == 0) /* libh2o logs only such requests */
        return 0;
    for (size_t i = 0; i < req->pathconf->loggers.size; i++)
        if (req->pathconf->loggers.entries[i]->log_access == on_log_access)
            return 1;
    return 0;
}

void kg_request_scope_enable(h2o_pathconf_t *pathconf)
{
    h2o_logger_t *logger = h2o_create_logger(pathconf, sizeof(*logger));
    logger->log_access = on_log_access;
}

void *kg_request_scoped(h2o_req_t *req, size_t size, void (*on_end)(void *))
{
    scope_t *s = scope_of(req);
    if (s == NULL && enabled(req)) {
        s = (scope_t *)h2o_add_prefilter(req, sizeof(*s));
        s->super.on_setup_ostream = pass_through;
        s->n = 0;
    }
    if (s == NULL || s->n == MAX_ENDS)
        return h2o_mem_alloc_shared(&req->pool, size, on_end);
    void *p = h2o_mem_alloc_pool(&req->pool, size);
    s->ends[s->n].fn = on_end;
    s->ends[s->n].arg = p;
    s->n++;
    return p;
}
