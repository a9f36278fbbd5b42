/* SPDX-License-Identifier: Apache-2.0
 *
 * This file carries admin calls between the event loops and the admin worker: the loop
 * authenticates the admin key from the in-memory index (no store access), copies the call
 * into a job and queues it; the admin worker thread — the only thread that writes the store
 * on behalf of the API — runs it and posts the reply back to the loop that owns the request.
 * A request whose client went away is marked so the late reply is dropped safely.
 */
#include "http/http_internal.h"
#include "http/request_scope.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "sync/feed.h"
#include "keys/key_format.h"
#include "keys/key_hash.h"

typedef struct admin_job admin_job_t;

/* Lives in the request pool; tells the job when the request is gone. */
typedef struct job_guard {
    admin_job_t *job;
    kg_worker_t *worker;
} job_guard_t;

struct admin_job {
    h2o_multithread_message_t super; /* first: the reply travels as this message */
    admin_job_t *next;               /* in the worker's queue */
    kg_worker_t *worker;
    h2o_req_t *req;     /* NULL once the request is gone */
    job_guard_t *guard; /* NULL once the request is gone */
    kg_actor_t actor;
    uint8_t secret_hash[KG_KEY_HASH_BYTES]; /* the caller's secret, checked again when the job runs */
    bool has_hash;
    char remote_addr[64];
    char *method, *path, *query, *body;
    size_t body_len;
    kg_admin_response_t res;
};

struct kg_admin_worker {
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    admin_job_t *head, *tail;
    bool stopping;
    kg_admin_t admin;
    kg_key_index_t *index;
    const kg_feed_catalog_t *catalog;
    int64_t seq; /* the change feed position this worker has applied */
};

static void job_free(admin_job_t *job)
{
    free(job->method), free(job->path), free(job->query);
    kg_secret_wipe(job->secret_hash, sizeof(job->secret_hash));
    if (job->body != NULL)
        kg_secret_wipe(job->body, job->body_len);
    free(job->body);
    if (job->res.body != NULL) {
        kg_secret_wipe(job->res.body, strlen(job->res.body));
        free(job->res.body);
    }
    free(job);
}

/* ==== The worker thread ==== */

/*
 * The caller was authenticated on the event loop, but a job runs later, after every job queued
 * before it: a rotation, disable or revoke among those must stop it too. So the presented
 * secret is looked up again, in the index this worker keeps current, right before the job runs;
 * and whether it is now a secret in rotation grace is taken from that look-up.
 */
static kg_err_t reauthenticate(kg_admin_worker_t *w, admin_job_t *job, int64_t now)
{
    kg_key_view_t view;
    kg_err_t rv;
    if (!job->has_hash)
        return KG_EINVALID_API_KEY;
    if ((rv = kg_key_index_lookup(w->index, job->secret_hash, now, &view)) != KG_OK)
        return rv;
    if (strcmp(view.id, job->actor.id) != 0)
        return KG_EINVALID_API_KEY;
    job->actor.old_secret = view.old_secret;
    return KG_OK;
}

static void fail_job(admin_job_t *job, kg_err_t code)
{
    kg_error_t err;
    char buf[KG_ERR_RENDER_MAX];
    kg_error_set(&err, code, NULL, NULL);
    kg_err_render(&err, buf, sizeof(buf));
    job->res.status = kg_err_http_status(code);
    job->res.body = kg_xstrdup(buf);
}

static void *admin_worker_main(void *arg)
{
    kg_admin_worker_t *w = arg;
    pthread_setname_np(pthread_self(), "kg-admin"); /* for top -H and per-thread CPU figures */
    kg_key_index_thread_online();
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->head == NULL)
            break;
        admin_job_t *job = w->head;
        w->head = job->next;
        if (w->head == NULL)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);

        kg_admin_request_t req = {
            .method = job->method,
            .path = job->path,
            .query = job->query,
            .body = job->body,
            .body_len = job->body_len,
            .actor = &job->actor,
            .now = (int64_t)time(NULL),
        };
        kg_err_t auth = reauthenticate(w, job, req.now);
        if (auth == KG_OK)
            kg_admin_handle(&w->admin, &req, &job->res);
        else
            fail_job(job, auth);
        /* A change is live on every worker before its reply leaves ("the very next request"). */
        if (strcmp(job->method, "GET") != 0 &&
            kg_feed_apply(w->admin.store, w->index, w->catalog, req.now, &w->seq) != KG_OK)
            kg_log_warn("admin worker: could not apply a change to the key index; the feed will retry");
        h2o_multithread_send_message(&job->worker->admin_replies, &job->super);

        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    kg_key_index_thread_offline();
    return NULL;
}

kg_admin_worker_t *kg__admin_worker_start(kg_store_t *store, const kg_config_t *cfg, kg_key_index_t *index,
                                          const kg_feed_catalog_t *catalog)
{
    kg_admin_worker_t *w = kg_xcalloc(1, sizeof(*w));
    w->index = index;
    w->catalog = catalog;
    if (kg_store_change_last(store, &w->seq) != KG_OK)
        w->seq = 0; /* applying from the start is only slower, never wrong */
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->admin.store = store;
    w->admin.cfg = cfg;
    pthread_create(&w->tid, NULL, admin_worker_main, w);
    return w;
}

void kg__admin_worker_stop(kg_admin_worker_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->tid, NULL);
    kg_store_close(w->admin.store);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

static void enqueue(kg_admin_worker_t *w, admin_job_t *job)
{
    pthread_mutex_lock(&w->lock);
    if (w->tail != NULL)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* ==== The loop side ==== */

static void on_guard_dispose(void *p)
{
    job_guard_t *guard = p;
    guard->worker->in_flight--; /* the request is over: its reply was written, or the client left */
    if (guard->job != NULL) {   /* the request ends before its reply: drop the reply when it comes */
        guard->job->req = NULL;
        guard->job->guard = NULL;
    }
}

void kg__admin_http_on_replies(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        admin_job_t *job = (admin_job_t *)m;
        h2o_linklist_unlink(&m->link);
        if (job->req != NULL) {
            job->guard->job = NULL;
            const char *body = job->res.body != NULL ? job->res.body : "{}";
            kg__http_send_json(job->req, job->res.status, body, strlen(body));
        }
        job_free(job);
    }
}

static void peer_address(h2o_req_t *req, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    buf[0] = '\0';
    if (len == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)cap);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)cap);
}

/* The actor an authenticated admin key (or an access key minting its own tokens) acts as. */
static kg_err_t actor_of(const kg_key_view_t *view, h2o_iovec_t path, kg_actor_t *actor)
{
    /* POST /v1/ephemeral-tokens: an access key mints its own, with its own secret (not with its
     * public id alone, nor with an ephemeral token). */
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/v1/ephemeral-tokens")) && view->type == KG_TOKEN_ACCESS &&
        !view->publishable && !view->ephemeral) {
        snprintf(actor->id, sizeof(actor->id), "%s", view->id);
        snprintf(actor->org_id, sizeof(actor->org_id), "%s", view->org_id);
        actor->access_key = true;
        actor->old_secret = view->old_secret;
        return KG_OK;
    }
    if (view->type != KG_TOKEN_ADMIN || view->publishable || view->ephemeral)
        return KG_EADMIN_REQUIRED;
    snprintf(actor->id, sizeof(actor->id), "%s", view->id);
    snprintf(actor->org_id, sizeof(actor->org_id), "%s", view->org_id);
    actor->is_root = view->is_root;
    return KG_OK;
}

/* Authenticates an admin key. Returns KG_OK with actor filled, or the error to answer. */
static kg_err_t authenticate_admin(kg_worker_t *worker, h2o_req_t *req, h2o_iovec_t path, kg_actor_t *actor,
                                   uint8_t secret_hash[KG_KEY_HASH_BYTES], bool *has_hash)
{
    kg_key_view_t view = {0};
    /* The view's org id points into the index: copied out before the read-side section ends. */
    kg_key_index_read_lock();
    kg_err_t rv = kg__http_authenticate(worker, req, &view, secret_hash, has_hash);
    if (rv == KG_OK)
        rv = actor_of(&view, path, actor);
    kg_key_index_read_unlock();
    return rv;
}

void kg__admin_http_handle(kg_worker_t *worker, h2o_req_t *req, h2o_iovec_t path)
{
    kg_actor_t actor = {0};
    uint8_t secret_hash[KG_KEY_HASH_BYTES];
    bool has_hash = false;
    kg_err_t rv = authenticate_admin(worker, req, path, &actor, secret_hash, &has_hash);
    if (rv != KG_OK) {
        kg_secret_wipe(secret_hash, sizeof(secret_hash));
        const char *msg = rv == KG_EADMIN_REQUIRED ? "This route needs an admin key." : NULL;
        kg__http_fail(req, rv, msg);
        return;
    }
    if (worker->stopping) {
        kg_secret_wipe(secret_hash, sizeof(secret_hash));
        kg__http_fail(req, KG_EPROVIDER_UNAVAILABLE, "The gateway is shutting down.");
        return;
    }
    admin_job_t *job = kg_xcalloc(1, sizeof(*job)); /* admin path: not the data plane */
    job->worker = worker;
    job->req = req;
    job->actor = actor;
    memcpy(job->secret_hash, secret_hash, sizeof(secret_hash));
    kg_secret_wipe(secret_hash, sizeof(secret_hash));
    job->has_hash = has_hash;
    peer_address(req, job->remote_addr, sizeof(job->remote_addr));
    job->actor.remote_addr = job->remote_addr;
    job->method = kg_xstrndup(req->method.base, req->method.len);
    /* The raw path: the router splits it first and decodes each segment, so a name with an
     * encoded '/' (a model like "org/llama-3") stays one segment. */
    (void)path;
    size_t raw_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    const char *raw = req->path.base;
    if (raw_len >= 7 && memcmp(raw, "/api/v1", 7) == 0 && (raw_len == 7 || raw[7] == '/'))
        raw += 4, raw_len -= 4;
    job->path = kg_xstrndup(raw, raw_len);
    if (req->query_at != SIZE_MAX)
        job->query = kg_xstrndup(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    job->body_len = req->entity.base != NULL ? req->entity.len : 0;
    job->body = kg_xstrndup(req->entity.base != NULL ? req->entity.base : "", job->body_len);
    job->guard = kg_request_scoped(req, sizeof(*job->guard), on_guard_dispose);
    job->guard->job = job;
    job->guard->worker = worker;
    worker->in_flight++;
    enqueue(worker->server->admin, job);
}
