/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements GET /v1/usage (SPEC §6): the org's usage series — requests, errors,
 * tokens and cost per minute, hour or day bucket (UTC) — for one key (?key=), one team
 * (?team=) or the whole org, over [from, to) in unix seconds (default: the last 24 hours).
 * It reads what the usage writer has stored; records trail their requests by ~50 ms.
 */
#include "admin/admin_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 10000

static json_t *totals_json(const kg_usage_totals_t *t)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:f, s:I}", "requests", (json_int_t)t->requests, "errors",
                     (json_int_t)t->errors, "input_tokens", (json_int_t)t->input_tokens, "output_tokens",
                     (json_int_t)t->output_tokens, "cost", (double)t->cost_micro / 1e6, "cost_micro",
                     (json_int_t)t->cost_micro);
}

void kg__admin_usage(kg__admin_call_t *c)
{
    static const char *const allowed[] = {"key", "team", "from", "to", "bucket", NULL};
    static const struct {
        const char *name;
        int64_t ms;
    } buckets[] = {{"minute", 60000}, {"hour", 3600000}, {"day", 86400000}};
    char key[64], team[64], bucket[16];
    int64_t from = 0, to = 0;
    kg_usage_filter_t f = {.org_id = c->req->actor->org_id, .bucket_ms = 0};

    if (c->n_seg != 0) {
        kg__admin_fail(c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", c->req->method, c->req->path);
        return;
    }
    if (strcmp(c->req->method, "GET") != 0) {
        kg__admin_fail(c, KG_EMETHOD_NOT_ALLOWED, NULL, "Usage is read-only.");
        return;
    }
    if (!kg__admin_query_check(c, allowed) || !kg__admin_query_int(c, "from", &from) ||
        !kg__admin_query_int(c, "to", &to))
        return;
    const char *b = kg__admin_query(c, "bucket", bucket, sizeof(bucket));
    for (size_t i = 0; i < sizeof(buckets) / sizeof(buckets[0]); i++)
        if (strcmp(b != NULL ? b : "hour", buckets[i].name) == 0)
            f.bucket_ms = buckets[i].ms;
    if (f.bucket_ms == 0) {
        kg__admin_fail(c, KG_EINVALID_VALUE, "bucket", "'bucket' must be minute, hour or day.");
        return;
    }
    if (from < 0 || to < 0 || from > INT64_C(100000000000) || to > INT64_C(100000000000)) {
        kg__admin_fail(c, KG_EINVALID_VALUE, from < 0 || from > INT64_C(100000000000) ? "from" : "to",
                       "'from' and 'to' are unix seconds.");
        return;
    }
    f.to_ms = (to != 0 ? to : c->req->now + 60) * 1000;
    f.from_ms = (from != 0 ? from : c->req->now - 86400) * 1000;
    if (f.from_ms >= f.to_ms) {
        kg__admin_fail(c, KG_EINVALID_VALUE, "from", "'from' must be before 'to'.");
        return;
    }
    /* A key or team of another org is not found, like every foreign object (SPEC §1). */
    f.key_id = kg__admin_query(c, "key", key, sizeof(key));
    f.team_id = kg__admin_query(c, "team", team, sizeof(team));
    kg_token_t t = {0};
    kg_catalog_row_t row = {0};
    bool key_known = f.key_id == NULL || kg_store_token_get(c->a->store, f.key_id, f.org_id, &t) == KG_OK;
    bool team_known =
        f.team_id == NULL || kg_store_catalog_get(c->a->store, f.org_id, "team", f.team_id, &row) == KG_OK;
    kg_token_dispose(&t);
    kg_catalog_row_dispose(&row);
    if (!key_known || !team_known) {
        kg__admin_fail(c, KG_ENOT_FOUND, key_known ? "team" : "key", "No such %s.", key_known ? "team" : "key");
        return;
    }

    kg_usage_bucket_t *list = NULL;
    size_t n = 0;
    bool truncated = false;
    if (kg_store_usage_series(c->a->store, &f, MAX_BUCKETS, &list, &n, &truncated) != KG_OK) {
        kg__admin_fail(c, KG_ESTORE, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    kg_usage_totals_t sum = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *o = totals_json(&list[i].totals);
        json_object_set_new(o, "object", json_string("usage.bucket"));
        json_object_set_new(o, "start_time", json_integer(list[i].start_ms / 1000));
        json_object_set_new(o, "end_time", json_integer((list[i].start_ms + f.bucket_ms) / 1000));
        json_array_append_new(data, o);
        sum.requests += list[i].totals.requests, sum.errors += list[i].totals.errors;
        sum.input_tokens += list[i].totals.input_tokens, sum.output_tokens += list[i].totals.output_tokens;
        sum.cost_micro += list[i].totals.cost_micro;
    }
    free(list);
    json_t *reply = kg__admin_list(data, truncated);
    json_object_set_new(reply, "totals", totals_json(&sum));
    json_object_set_new(reply, "bucket", json_string(b != NULL ? b : "hour"));
    json_object_set_new(reply, "from", json_integer(f.from_ms / 1000));
    json_object_set_new(reply, "to", json_integer(f.to_ms / 1000));
    kg__admin_reply_json(c, 200, reply);
}
