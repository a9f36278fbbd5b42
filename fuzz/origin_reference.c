/* SPDX-License-Identifier: Apache-2.0
 *
 * The reference origin rules (see origin_reference.h). Every rule is one visible step:
 *   host name   = labels joined by '.', optionally one trailing '.', which is dropped;
 *                 a label is 1..63 of [a-z0-9-] (upper case folded), not starting or ending with '-';
 *                 the whole name (without the trailing dot) is 1..253 characters. IPv4 literals are
 *                 host names by this grammar (all-digit labels).
 *   pattern     = host name | "*." host name | "[" IPv6 address "]" (canonicalized as below)
 *   Origin      = ("http" | "https", any case) "://" authority, and nothing after it
 *   Referer     = the same, then optionally '/', '?' or '#' and anything
 *   authority   = host [":" port]; no '@' anywhere in it (userinfo is never trusted);
 *                 port = 1..5 digits, value 1..65535
 *   host        = host name | "[" IPv6 address (as inet_pton(AF_INET6) takes it) "]", written back
 *                 in its canonical text form (inet_ntop: lower case, zeros compressed), as browsers do
 *   a value holding a NUL byte anywhere is refused (never legal in an HTTP field value)
 *   match       = host == pattern, or pattern is "*.S" and host is "X.S" with X not empty
 */
#include "origin_reference.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static bool is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* A host name from n bytes (no NUL needed); out gets the normalised form. */
static bool ref_name(const unsigned char *s, size_t n, char out[REF_HOST_MAX])
{
    if (n > 0 && s[n - 1] == '.')
        n--; /* exactly one trailing dot may go */
    if (n < 1 || n > 253)
        return false;
    char name[REF_HOST_MAX];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = fold(s[i]);
        if (!(is_lower_alnum(c) || c == '-' || c == '.'))
            return false;
        name[i] = (char)c;
    }
    name[n] = '\0';
    /* check label by label */
    size_t start = 0;
    while (start <= n) {
        const char *dot = memchr(name + start, '.', n - start);
        size_t end = dot != NULL ? (size_t)(dot - name) : n;
        size_t label_len = end - start;
        if (label_len < 1 || label_len > 63)
            return false;
        if (name[start] == '-' || name[end - 1] == '-')
            return false;
        start = end + 1;
    }
    memcpy(out, name, n + 1);
    return true;
}

static bool ref_ipv6(const unsigned char *s, size_t n, char out[REF_HOST_MAX]);

bool ref_pattern(const char *in, char out[REF_HOST_MAX])
{
    size_t n = strlen(in);
    if (n >= 2 && in[0] == '*' && in[1] == '.') {
        char name[REF_HOST_MAX];
        if (!ref_name((const unsigned char *)in + 2, n - 2, name))
            return false;
        out[0] = '*';
        out[1] = '.';
        memcpy(out + 2, name, strlen(name) + 1);
        return true;
    }
    if (n > 0 && in[0] == '[')
        return in[n - 1] == ']' && ref_ipv6((const unsigned char *)in, n, out);
    return ref_name((const unsigned char *)in, n, out);
}

static bool starts_with_nocase(const unsigned char *v, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (n < pl)
        return false;
    for (size_t i = 0; i < pl; i++)
        if (fold(v[i]) != (unsigned char)prefix[i])
            return false;
    return true;
}

static bool ref_port(const unsigned char *s, size_t n)
{
    if (n < 1 || n > 5)
        return false;
    unsigned long value = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        value = value * 10 + (unsigned long)(s[i] - '0');
    }
    return value >= 1 && value <= 65535;
}

static bool ref_ipv6(const unsigned char *s, size_t n, char out[REF_HOST_MAX])
{
    /* s[0] == '[' and s[n - 1] == ']' */
    if (n < 3 || n >= REF_HOST_MAX)
        return false;
    char text[REF_HOST_MAX];
    for (size_t i = 1; i + 1 < n; i++)
        text[i - 1] = (char)fold(s[i]);
    text[n - 2] = '\0';
    struct in6_addr addr;
    char canon[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET6, text, &addr) != 1 || inet_ntop(AF_INET6, &addr, canon, sizeof(canon)) == NULL)
        return false;
    size_t cn = strlen(canon);
    out[0] = '[';
    memcpy(out + 1, canon, cn);
    out[cn + 1] = ']';
    out[cn + 2] = '\0';
    return true;
}

bool ref_host(const unsigned char *v, size_t n, bool is_referer, char out[REF_HOST_MAX])
{
    size_t skip;
    if (starts_with_nocase(v, n, "https://"))
        skip = 8;
    else if (starts_with_nocase(v, n, "http://"))
        skip = 7;
    else
        return false; /* "null", other schemes, no scheme */
    if (memchr(v, '\0', n) != NULL)
        return false;
    const unsigned char *a = v + skip;
    size_t rest = n - skip, an = 0;
    while (an < rest && a[an] != '/' && a[an] != '?' && a[an] != '#')
        an++;
    if (an < rest && !is_referer)
        return false; /* an Origin carries no path, query or fragment */
    for (size_t i = 0; i < an; i++)
        if (a[i] == '@')
            return false;
    /* split host and port */
    size_t hn;
    if (an > 0 && a[0] == '[') {
        hn = 0;
        while (hn < an && a[hn] != ']')
            hn++;
        if (hn == an)
            return false;
        hn++; /* keep the ']' */
    } else {
        hn = 0;
        while (hn < an && a[hn] != ':')
            hn++;
    }
    if (hn < an) {
        if (a[hn] != ':' || !ref_port(a + hn + 1, an - hn - 1))
            return false;
    }
    if (hn > 0 && a[0] == '[')
        return ref_ipv6(a, hn, out);
    return ref_name(a, hn, out);
}

bool ref_match(const char *host, const char *pattern)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *base = pattern + 2;
        size_t hl = strlen(host), bl = strlen(base);
        /* at least one character, then '.', then base */
        return hl >= bl + 2 && host[hl - bl - 1] == '.' && strcmp(host + (hl - bl), base) == 0;
    }
    return strcmp(host, pattern) == 0;
}

bool ref_allowed(const unsigned char *origin, size_t on, const unsigned char *referer, size_t rn,
                 const char *const *patterns, size_t n_patterns)
{
    char host[REF_HOST_MAX];
    if (origin != NULL) {
        if (!ref_host(origin, on, false, host))
            return false; /* a present Origin decides, even an empty or useless one */
    } else if (referer != NULL) {
        if (!ref_host(referer, rn, true, host))
            return false;
    } else {
        return false;
    }
    for (size_t i = 0; i < n_patterns; i++)
        if (ref_match(host, patterns[i]))
            return true;
    return false;
}
