/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the origin rules of publishable keys (SPEC §2): which web origins may use a
 * key that authenticates by its public id alone. An entry is `example.com` (that host exactly)
 * or `*.example.com` (any subdomain, not the apex); hosts are compared case-insensitively, in
 * punycode (libidn2), without a trailing dot; schemes other than http and https, userinfo,
 * malformed ports and `null` never match. The check is a second line of defence — any
 * non-browser client can forge Origin — which is why publishable keys are low-privilege by
 * construction.
 */
#ifndef KG_POLICY_ORIGIN_H
#define KG_POLICY_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

#define KG_ORIGIN_HOST_MAX 256

/**
 * Normalises an allowed_domains entry into out (lower case, punycode, no trailing dot, an
 * optional leading "*." kept). False when it is not a host name pattern.
 */
bool kg_origin_pattern_normalize(const char *in, char *out, size_t cap);

/**
 * The normalised host of an `Origin` value (scheme://host[:port], nothing more) or, with
 * is_referer, of a `Referer` URL. False when there is none to trust ("null", another scheme,
 * userinfo, a bad port or host).
 */
bool kg_origin_host(const char *value, size_t len, bool is_referer, char *out, size_t cap);

/** Whether a normalised host matches a normalised pattern. */
bool kg_origin_match(const char *host, const char *pattern);

/**
 * The whole check: the request's Origin (or, only when there is no Origin, its Referer)
 * against patterns. Values are borrowed slices; NULL means the header is absent. A present
 * Origin decides, even an empty one (no browser sends that: refused).
 */
bool kg_origin_allowed(const char *origin, size_t origin_len, const char *referer, size_t referer_len,
                       char *const *patterns, size_t n_patterns);

#endif
