/* SPDX-License-Identifier: Apache-2.0
 *
 * This file authenticates requests from their headers (SPEC §2): it reads the credential,
 * refuses a key in the query string, checks the secret's shape and checksum before any lookup,
 * hashes it (once per connection for a secret it presents again) and looks the hash up in the
 * in-memory index. Nothing here allocates or blocks.
 */
#include "http/http_internal.h"

#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "keys/credential.h"
#include "keys/ephemeral.h"
#include "keys/key_format.h"
#include "keys/key_hash.h"
#include "policy/origin.h"

/* Collects every value of a header into out[] (at most cap; the returned count may exceed cap). */
static size_t header_values(h2o_req_t *req, const h2o_token_t *token, const char *name, size_t name_len,
                            kg_slice_t *out, size_t cap)
{
    size_t n = 0;
    ssize_t i = -1;
    for (;;) {
        i = token != NULL ? h2o_find_header(&req->headers, token, i)
                          : h2o_find_header_by_str(&req->headers, name, name_len, i);
        if (i == -1)
            break;
        if (n < cap)
            out[n] = (kg_slice_t){req->headers.entries[i].value.base, req->headers.entries[i].value.len};
        n++;
    }
    return n;
}

/*
 * Keys are never accepted in the query string (URLs end up in logs and browser history): a
 * request whose query carries a well-formed secret under any name, or any value under a
 * conventional key parameter name, is refused without looking at its headers.
 */
static bool query_has_key(h2o_req_t *req)
{
    static const char *const names[] = {"api_key", "api-key", "apikey", "access_token", NULL};
    if (req->query_at == SIZE_MAX)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        size_t name_len = (size_t)((eq != NULL ? eq : stop) - q);
        kg_key_secret_ref_t ref;
        for (const char *const *n = names; *n != NULL; n++)
            if (strlen(*n) == name_len && strncasecmp(*n, q, name_len) == 0)
                return true;
        if (eq != NULL && (kg_key_secret_parse(eq + 1, (size_t)(stop - eq - 1), &ref) == KG_OK ||
                           kg_eph_looks_like(eq + 1, (size_t)(stop - eq - 1))))
            return true;
        q = stop + 1;
    }
    return false;
}

/*
 * An ephemeral token: its signature first (no store, no lookup before it holds), then its
 * expiry, then its parent as any request of the parent would find it — disabled, revoked and
 * expired parents answer as themselves — and the parent's rotations: a rotation without grace
 * ends every token minted before it; with grace, they live until the grace ends.
 */
static kg_err_t authenticate_ephemeral(kg_worker_t *worker, h2o_req_t *req, const kg_credential_t *cred,
                                       kg_key_view_t *view)
{
    kg_eph_claims_t claims;
    const uint8_t *key = worker->server->opts.eph_key;
    int64_t now = (int64_t)time(NULL);
    kg_err_t rv;
    if (key == NULL || kg_eph_verify(cred->secret.base, cred->secret.len, key, &claims) != KG_OK)
        return KG_EINVALID_API_KEY;
    if (cred->pk.len != 0 &&
        (cred->pk.len != KG_KEY_ID_LEN || memcmp(cred->pk.base, claims.parent_id, KG_KEY_ID_LEN) != 0))
        return KG_EINVALID_API_KEY;
    if (now >= claims.expires_at)
        return KG_EKEY_EXPIRED;
    if ((rv = kg_key_index_lookup_id(worker->server->opts.index, claims.parent_id, KG_KEY_ID_LEN, now, false, view)) !=
        KG_OK)
        return rv;
    /* Minted under the current secret, or under the previous one while its grace lasts. */
    if (claims.generation != view->rotations && !(claims.generation == view->rotations - 1 && now < view->grace_until))
        return KG_EINVALID_API_KEY;
    view->ephemeral = true;
    view->eph_scopes = claims.scopes;
    view->eph_allow = h2o_strdup(&req->pool, claims.allow, SIZE_MAX).base;
    return KG_OK;
}

/*
 * A presented secret, through its connection's memo: keep-alive clients send the same key with
 * every request, so a connection checks a secret's shape, checksum and SHA-256 once (0.6–0.8 µs,
 * a fiftieth of a proxied request) and later requests that present the same bytes reuse the
 * hash. The lookup runs every time, so a revocation or rotation applies to the very next
 * request. Only a secret that was let in is kept; the memo is wiped when the connection closes.
 */
static kg_err_t check_secret(kg_worker_t *worker, h2o_req_t *req, const kg_credential_t *cred, kg_key_view_t *view,
                             uint8_t hash[KG_KEY_HASH_BYTES])
{
    kg_key_index_t *idx = worker->server->opts.index;
    kg_secret_memo_t *memo = kg__watch_secret_memo(req);
    int64_t now = (int64_t)time(NULL);
    const size_t len = cred->secret.len;
    if (memo != NULL && memo->len == len && CRYPTO_memcmp(memo->secret, cred->secret.base, len) == 0) {
        memcpy(hash, memo->hash, KG_KEY_HASH_BYTES);
        return kg_key_index_check_hash(idx, hash, now, view);
    }
    kg_err_t rv = kg_key_index_check_secret(idx, cred->secret.base, len, now, view, hash);
    /* Only a secret that let its request in: its shape, checksum and hash are known good. */
    if (memo != NULL && rv == KG_OK && len <= sizeof(memo->secret)) {
        kg_secret_wipe(memo, sizeof(*memo)); /* no tail of a longer secret stays behind */
        memcpy(memo->secret, cred->secret.base, len);
        memcpy(memo->hash, hash, KG_KEY_HASH_BYTES);
        memo->len = len;
    }
    return rv;
}

kg_err_t kg__http_authenticate(kg_worker_t *worker, h2o_req_t *req, kg_key_view_t *view,
                               uint8_t secret_hash[KG_KEY_HASH_BYTES], bool *has_hash)
{
    kg_slice_t auth[2], api_key[2];
    size_t n_auth = header_values(req, H2O_TOKEN_AUTHORIZATION, NULL, 0, auth, 2);
    size_t n_key = header_values(req, NULL, H2O_STRLIT("x-api-key"), api_key, 2);
    kg_credential_t cred;
    uint8_t hash[KG_KEY_HASH_BYTES];
    kg_err_t rv;

    if (has_hash != NULL)
        *has_hash = false;
    if (query_has_key(req))
        return KG_EINVALID_API_KEY;
    if ((rv = kg_credential_parse(auth, n_auth, api_key, n_key, &cred)) != KG_OK)
        return rv;
    if (cred.secret.len == 0) {
        /* Publishable mode: the public id alone, from a page on one of the key's domains. */
        /* The key's policy is read under the read lock (callers may hold it already: it nests). */
        kg_key_index_read_lock();
        if ((rv = kg_key_index_lookup_id(worker->server->opts.index, cred.pk.base, cred.pk.len, (int64_t)time(NULL),
                                         true, view)) != KG_OK) {
            kg_key_index_read_unlock();
            return rv;
        }
        kg_slice_t origin[2], referer[2];
        size_t n_origin = header_values(req, NULL, H2O_STRLIT("origin"), origin, 2);
        size_t n_referer = header_values(req, H2O_TOKEN_REFERER, NULL, 0, referer, 2);
        if (n_origin > 1 || n_referer > 1 ||
            !kg_origin_allowed(n_origin ? origin[0].base : NULL, n_origin ? origin[0].len : 0,
                               n_referer ? referer[0].base : NULL, n_referer ? referer[0].len : 0,
                               view->policy->domains, view->policy->n_domains))
            rv = KG_EORIGIN_NOT_ALLOWED;
        view->publishable = rv == KG_OK;
        kg_key_index_read_unlock();
        return rv;
    }
    if (kg_eph_looks_like(cred.secret.base, cred.secret.len))
        return authenticate_ephemeral(worker, req, &cred, view);
    rv = check_secret(worker, req, &cred, view, hash);
    if (rv == KG_OK && secret_hash != NULL) {
        memcpy(secret_hash, hash, sizeof(hash));
        *has_hash = true;
    }
    kg_secret_wipe(hash, sizeof(hash));
    if (rv != KG_OK)
        return rv;
    /* A pair whose secret is another key's gets the same answer as a wrong secret. */
    if (cred.pk.len != 0 && (cred.pk.len != strlen(view->id) || memcmp(cred.pk.base, view->id, cred.pk.len) != 0))
        return KG_EINVALID_API_KEY;
    return KG_OK;
}
