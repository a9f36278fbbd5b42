/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements GET /v1/audit-events: the org's audit log, newest first, filtered by
 * object (?key=), time (?from=&to=, unix seconds) and paged with ?limit=&after=.
 */
#include "admin/admin_internal.h"

#include <stdlib.h>
#include <string.h>

void kg__admin_audit(kg__admin_call_t *c)
{
    static const char *const allowed[] = {"key", "from", "to", "limit", "after", NULL};
    char key[64];
    kg_audit_filter_t f = {.org_id = c->req->actor->org_id};
    kg_audit_event_t *list = NULL;
    size_t n = 0;
    bool has_more = false;

    if (c->n_seg != 0) {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", c->req->method, c->req->path);
        return;
    }
    if (strcmp(c->req->method, "GET") != 0) {
        kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "The audit log is read-only.");
        return;
    }
    if (!kg__admin_query_check(c, allowed) || !kg__admin_query_limit(c, &f.limit) ||
        !kg__admin_query_int(c, "from", &f.from) || !kg__admin_query_int(c, "to", &f.to) ||
        !kg__admin_query_int(c, "after", &f.after))
        return;
    f.object_id = kg__admin_query(c, "key", key, sizeof(key));
    if (kg_store_audit_list(c->a->store, &f, &list, &n, &has_more) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        kg_audit_event_t *e = &list[i];
        json_t *changes = json_loads(e->changes, 0, NULL);
        json_array_append_new(data, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s?, s:I}", "id",
                                              (json_int_t)e->id, "object", "audit_event", "org_id", e->org_id, "actor",
                                              e->actor, "action", e->action, "object_type", e->object_type, "object_id",
                                              e->object_id, "changes", changes != NULL ? changes : json_object(),
                                              "remote_addr", e->remote_addr, "created_at", (json_int_t)e->created_at));
        kg_audit_event_dispose(e);
    }
    free(list);
    kg__admin_reply_json(c, 200, kg__admin_list(data, has_more));
}
