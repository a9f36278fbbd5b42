/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the origin rules of origin.h.
 */
#include "policy/origin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <idn2.h>

/* A host name made of labels of [a-z0-9-] (1..63, no leading or trailing '-'), or an IPv4 literal. */
static bool valid_ascii_host(const char *h)
{
    size_t len = strlen(h), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = h[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        if (label == 0 && c == '-')
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

/* Lower-cases, strips one trailing dot and converts to punycode; false if not a valid host. */
static bool normalize_host(const char *in, size_t len, char *out, size_t cap)
{
    char buf[KG_ORIGIN_HOST_MAX];
    bool ascii = true;
    if (len == 0 || len >= sizeof(buf) || memchr(in, '\0', len) != NULL)
        return false;
    memcpy(buf, in, len);
    buf[len] = '\0';
    if (buf[len - 1] == '.')
        buf[--len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x80)
            ascii = false;
        else if (c >= 'A' && c <= 'Z')
            buf[i] = (char)(c + 32);
    }
    if (ascii) {
        /* An ASCII host may still hold a-labels: keep it as it is (already what browsers send). */
        if (!valid_ascii_host(buf) || len >= cap)
            return false;
        memcpy(out, buf, len + 1);
        return true;
    }
    char *puny = NULL;
    if (idn2_to_ascii_8z(buf, &puny, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK) {
        free(puny);
        return false;
    }
    size_t plen = strlen(puny);
    bool ok = plen < cap && valid_ascii_host(puny);
    if (ok)
        memcpy(out, puny, plen + 1);
    idn2_free(puny);
    return ok;
}

/* "[addr]": a valid IPv6 address (inet_pton), written back in its canonical form (inet_ntop,
 * as browsers serialize it), in brackets; false if it is not one. */
static bool canonical_ipv6(const char *in, size_t len, char *out, size_t cap)
{
    char inside[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
    struct in6_addr a6;
    if (len < 4 || in[0] != '[' || in[len - 1] != ']' || len - 2 >= sizeof(inside))
        return false;
    memcpy(inside, in + 1, len - 2);
    inside[len - 2] = '\0';
    if (memchr(inside, '\0', len - 2) != NULL || inet_pton(AF_INET6, inside, &a6) != 1 ||
        inet_ntop(AF_INET6, &a6, canon, sizeof(canon)) == NULL)
        return false;
    int n = snprintf(out, cap, "[%s]", canon);
    return n > 0 && (size_t)n < cap;
}

bool kg_origin_pattern_normalize(const char *in, char *out, size_t cap)
{
    size_t len = strlen(in);
    if (cap < 3)
        return false;
    if (len > 2 && in[0] == '*' && in[1] == '.') {
        memcpy(out, "*.", 2);
        return normalize_host(in + 2, len - 2, out + 2, cap - 2);
    }
    if (len > 0 && in[0] == '[') /* an IPv6 literal: exact, never a wildcard */
        return canonical_ipv6(in, len, out, cap);
    return normalize_host(in, len, out, cap);
}

bool kg_origin_host(const char *value, size_t len, bool is_referer, char *out, size_t cap)
{
    const char *p, *end = value + len;
    if (memchr(value, '\0', len) != NULL || (len == 4 && strncasecmp(value, "null", 4) == 0))
        return false;
    if (len > 8 && strncasecmp(value, "https://", 8) == 0)
        p = value + 8;
    else if (len > 7 && strncasecmp(value, "http://", 7) == 0)
        p = value + 7;
    else
        return false;
    /* The authority ends at the path (a Referer) or at the end (an Origin has nothing after it). */
    const char *auth_end = p;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    if (!is_referer && auth_end != end)
        return false;
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) /* userinfo: example.com@evil.net */
        return false;
    const char *host = p, *host_end = auth_end;
    if (*host == '[') { /* an IPv6 literal: kept in brackets, compared as written (lower case) */
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (close == NULL)
            return false;
        host_end = close + 1;
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));
        if (colon != NULL)
            host_end = colon;
    }
    if (host_end < auth_end) { /* ":port": 1 to 5 digits, 1..65535 */
        if (*host_end != ':' || auth_end - host_end < 2 || auth_end - host_end > 6)
            return false;
        long port = 0;
        for (const char *d = host_end + 1; d < auth_end; d++) {
            if (*d < '0' || *d > '9')
                return false;
            port = port * 10 + (*d - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    }
    if (*host == '[')
        return canonical_ipv6(host, (size_t)(host_end - host), out, cap);
    return normalize_host(host, (size_t)(host_end - host), out, cap);
}

bool kg_origin_match(const char *host, const char *pattern)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t hl = strlen(host), sl = strlen(pattern + 1); /* ".example.com" */
        return hl > sl && strcmp(host + hl - sl, pattern + 1) == 0;
    }
    return strcmp(host, pattern) == 0;
}

bool kg_origin_allowed(const char *origin, size_t origin_len, const char *referer, size_t referer_len,
                       char *const *patterns, size_t n_patterns)
{
    char host[KG_ORIGIN_HOST_MAX];
    bool have = origin != NULL ? kg_origin_host(origin, origin_len, false, host, sizeof(host))
                               : referer != NULL && kg_origin_host(referer, referer_len, true, host, sizeof(host));
    if (!have)
        return false;
    for (size_t i = 0; i < n_patterns; i++)
        if (kg_origin_match(host, patterns[i]))
            return true;
    return false;
}
