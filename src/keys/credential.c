/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the credential reader of credential.h.
 */
#include "keys/credential.h"

#include <string.h>
#include <strings.h>

static kg_err_t parse_bearer(kg_slice_t v, kg_slice_t *token)
{
    static const char scheme[] = "bearer";
    const size_t slen = sizeof(scheme) - 1;
    const char *p, *end = v.base + v.len;

    /* RFC 9110: the scheme is case-insensitive and followed by one or more spaces. */
    if (v.len <= slen || strncasecmp(v.base, scheme, slen) != 0 || v.base[slen] != ' ')
        return KG_EINVALID_API_KEY;
    p = v.base + slen;
    while (p < end && *p == ' ')
        p++;
    while (end > p && end[-1] == ' ') /* trailing spaces are framing, not key material */
        end--;
    if (p == end)
        return KG_EINVALID_API_KEY;
    *token = (kg_slice_t){p, (size_t)(end - p)};
    return KG_OK;
}

kg_err_t kg_credential_parse(const kg_slice_t *authorization, size_t n_authorization, const kg_slice_t *api_key,
                             size_t n_api_key, kg_credential_t *out)
{
    kg_slice_t token = {NULL, 0};
    kg_err_t rv;

    *out = (kg_credential_t){{NULL, 0}, {NULL, 0}};
    if (n_authorization > 1 || n_api_key > 1)
        return KG_ECONFLICTING_CREDENTIALS;
    if (n_authorization == 0 && n_api_key == 0)
        return KG_EMISSING_API_KEY;
    if (n_authorization == 1 && (rv = parse_bearer(authorization[0], &token)) != KG_OK)
        return rv;
    if (n_api_key == 1) {
        kg_slice_t k = api_key[0];
        if (k.len == 0)
            return n_authorization == 1 ? KG_ECONFLICTING_CREDENTIALS : KG_EMISSING_API_KEY;
        if (n_authorization == 1 && (k.len != token.len || memcmp(k.base, token.base, k.len) != 0))
            return KG_ECONFLICTING_CREDENTIALS;
        token = k;
    }
    const char *colon = memchr(token.base, ':', token.len);
    if (colon != NULL) {
        out->pk = (kg_slice_t){token.base, (size_t)(colon - token.base)};
        out->secret = (kg_slice_t){colon + 1, token.len - out->pk.len - 1};
        if (out->pk.len == 0 || out->secret.len == 0)
            return KG_EINVALID_API_KEY;
    } else if (token.len >= 3 && memcmp(token.base, "pk_", 3) == 0) {
        out->pk = token; /* publishable mode */
    } else {
        out->secret = token;
    }
    return KG_OK;
}
