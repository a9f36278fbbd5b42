/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the admin API's router: it splits the path into segments, checks the
 * actor's reach (only admin keys get here; orgs need the root key) and hands the call to the
 * route group that owns the resource.
 */
#include "admin/admin_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static bool has_prefix(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0 && (len == n || path[n] == '/' || path[n] == '?');
}

bool kg_admin_path_is_admin(const char *path, size_t len)
{
    return has_prefix(path, len, "/v1/tokens") || has_prefix(path, len, "/v1/gateway-keys") ||
           has_prefix(path, len, "/v1/ephemeral-tokens") || has_prefix(path, len, "/v1/admin") ||
           has_prefix(path, len, "/v1/audit-events") || has_prefix(path, len, "/v1/usage");
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* Decodes %XX in place (segments are split before decoding, so %2F stays inside its segment). */
static char *percent_decode(char *s)
{
    char *out = s;
    for (const char *p = s; *p != '\0'; p++) {
        if (p[0] == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            *out++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else {
            *out++ = *p;
        }
    }
    *out = '\0';
    return s;
}

void kg_admin_handle(kg_admin_t *a, const kg_admin_request_t *req, kg_admin_response_t *res)
{
    char path[512];
    char *parts[8];
    size_t n = 0;
    kg__admin_call_t c = {.a = a, .req = req, .res = res};

    res->status = 500;
    res->body = NULL;
    size_t path_len = strlen(req->path);
    if (path_len >= sizeof(path)) {
        kg__admin_fail(&c, KG_ENOT_FOUND, NULL, "Unknown route.");
        return;
    }
    memcpy(path, req->path, path_len + 1);
    for (char *save = NULL, *tok = strtok_r(path, "/", &save); tok != NULL && n < 8; tok = strtok_r(NULL, "/", &save))
        parts[n++] = percent_decode(tok);
    if (n < 2 || strcmp(parts[0], "v1") != 0 || n > 6)
        goto not_found;

    size_t base = 2; /* segments after /v1/<resource> */
    if (strcmp(parts[1], "admin") == 0) {
        if (n < 3)
            goto not_found;
        base = 3;
    }
    for (size_t i = base; i < n && c.n_seg < 4; i++)
        c.seg[c.n_seg++] = parts[i];
    if (n - base > 4)
        goto not_found;

    /* The one admin-side route an access key may call: minting its own ephemeral tokens. */
    if (req->actor->access_key) {
        if (n == 2 && strcmp(parts[1], "ephemeral-tokens") == 0 && strcmp(req->method, "POST") == 0)
            kg__admin_mint_ephemeral(&c, req->actor->id);
        else
            kg__admin_fail(&c, KG_EADMIN_REQUIRED, NULL, "This route needs an admin key.");
        return;
    }
    if (strcmp(parts[1], "tokens") == 0) {
        kg__admin_tokens(&c);
    } else if (strcmp(parts[1], "gateway-keys") == 0) {
        c.legacy_gk = true;
        kg__admin_tokens(&c);
    } else if (strcmp(parts[1], "audit-events") == 0) {
        kg__admin_audit(&c);
    } else if (strcmp(parts[1], "usage") == 0) {
        kg__admin_usage(&c);
    } else if (base == 3 && strcmp(parts[2], "orgs") == 0) {
        if (!req->actor->is_root) {
            kg__admin_fail(&c, KG_EADMIN_REQUIRED, NULL, "Managing organizations requires the root admin key.");
            return;
        }
        kg__admin_orgs(&c);
    } else if (base == 3 && strcmp(parts[2], "environments") == 0) {
        kg__admin_environments(&c);
    } else if (base == 3 && (strcmp(parts[2], "providers") == 0 || strcmp(parts[2], "models") == 0 ||
                             strcmp(parts[2], "agents") == 0 || strcmp(parts[2], "prompt-modules") == 0 ||
                             strcmp(parts[2], "teams") == 0)) {
        kg__admin_catalog(&c, parts[2]);
    } else {
        goto not_found; /* resources of later issues (teams, providers, ...) included: SPEC §4 */
    }
    if (res->body == NULL) /* a handler that forgot to reply is a bug, not a 200 */
        kg__admin_fail(&c, KG_EINTERNAL, NULL, NULL);
    return;
not_found:
    kg__admin_fail(&c, KG_ENOT_FOUND, NULL, "Unknown route: %s %s.", req->method, req->path);
}
