/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns request-scoped objects with a destructor, without an allocation. libh2o 2.2.5
 * runs code when a request's memory goes only for h2o_mem_alloc_shared entries, each its own
 * malloc; keygate made four of them per proxied request (the connection watch's busy mark, the
 * in-flight count, the request metric, the forwarding state). Here the objects come from the
 * request's pool and their destructors run from an access-logger callback, which libh2o calls as
 * it disposes of the request: after the generator and filters are stopped, before the pool is
 * freed — where the shared entries' destructors ran. The proxy uses it too.
 */
#ifndef KG_HTTP_REQUEST_SCOPE_H
#define KG_HTTP_REQUEST_SCOPE_H

#include <stddef.h>

#include <h2o.h>

/** Makes requests handled under pathconf able to hold scoped objects (at configuration time). */
void kg_request_scope_enable(h2o_pathconf_t *pathconf);

/**
 * `size` bytes from the request's pool; on_end(them) runs when libh2o disposes of the request,
 * in the reverse order of the calls (as h2o_mem_alloc_shared's destructors). Where the request's
 * path was not enabled, falls back to h2o_mem_alloc_shared.
 */
void *kg_request_scoped(h2o_req_t *req, size_t size, void (*on_end)(void *));

#endif
