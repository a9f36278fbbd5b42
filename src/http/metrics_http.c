/* SPDX-License-Identifier: Apache-2.0
 *
 * This file serves GET /metrics (SPEC §6): on its own listener (metrics_listen, default
 * 127.0.0.1:9464) without a key, and on the main listener to the root admin key only — the
 * figures span every organization. The body is the sum of every worker's counters
 * (metrics/metrics.h) and the usage journal's backlog, in Prometheus' text format.
 */
#include "http/http_internal.h"

#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "usage/journal.h"

void kg__metrics_send(kg_worker_t *w, h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    kg_server_t *s = w->server;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        kg__http_fail(req, KG_EMETHOD_NOT_ALLOWED, "Use GET on this route.");
        return;
    }
    kg_metrics_t *all[256];
    size_t n = s->n_workers < 256 ? s->n_workers : 256;
    for (size_t i = 0; i < n; i++)
        all[i] = s->workers[i].metrics;
    size_t len;
    char *text = kg_metrics_render(all, n, s->opts.journal != NULL ? kg_journal_backlog(s->opts.journal) : 0, &len);
    h2o_iovec_t body = h2o_strdup(&req->pool, text, len); /* cold path: a scrape, not a request */
    free(text);
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

void kg__metrics_handle_main(kg_worker_t *w, h2o_req_t *req)
{
    kg_key_view_t view;
    kg_key_index_read_lock();
    kg_err_t rv = kg__http_authenticate(w, req, &view, NULL, NULL);
    kg_key_index_read_unlock();
    if (rv != KG_OK) {
        kg__http_fail(req, rv, NULL);
        return;
    }
    if (view.type != KG_TOKEN_ADMIN || !view.is_root) {
        kg__http_fail(req, KG_EADMIN_REQUIRED,
                      "Metrics span every organization: use the root admin key, or the metrics listener.");
        return;
    }
    kg__metrics_send(w, req);
}
