/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/policy/origin.c: the origin rules of publishable keys (SPEC §2). One table of
 * {allowed patterns, Origin, Referer, expected} runs through kg_origin_allowed; the patterns go
 * through kg_origin_pattern_normalize first, as the key store does. Header values carry explicit
 * lengths so that NUL bytes inside them are seen.
 */
#include <stdbool.h>

#include "../test.h"
#include "policy/origin.h"

typedef struct hv {
    const char *base;
    size_t len;
} hv_t;

#define V(lit)                                                                                                         \
    {                                                                                                                  \
        lit, sizeof(lit) - 1                                                                                           \
    } /* in the table */
#define NONE                                                                                                           \
    {                                                                                                                  \
        NULL, 0                                                                                                        \
    }
#define HV(lit) ((hv_t){lit, sizeof(lit) - 1}) /* in a call */

/* UTF-8 spellings, split so that a hex escape never swallows the letter after it. */
#define U_BUCHER                                                                                                       \
    "b\xc3\xbc"                                                                                                        \
    "cher.example" /* bücher.example */
#define U_BUCHER_UP                                                                                                    \
    "B\xc3\x9c"                                                                                                        \
    "CHER.example" /* BÜCHER.example */
#define U_HOMOGRAPH                                                                                                    \
    "ex\xd0\xb0"                                                                                                       \
    "mple.com"                                                                /* exаmple.com, Cyrillic а (U+0430) */
#define L63 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk" /* 63 characters */

typedef struct origin_case {
    const char *patterns[4]; /* NULL-terminated, raw allowed_domains entries */
    hv_t origin, referer;
    bool expected;
} origin_case_t;

#define P1(a)                                                                                                          \
    {                                                                                                                  \
        a, NULL                                                                                                        \
    }
#define P3(a, b, c)                                                                                                    \
    {                                                                                                                  \
        a, b, c, NULL                                                                                                  \
    }

static const origin_case_t cases[] = {
    /* exact host */
    {P1("example.com"), V("https://example.com"), NONE, true},
    {P1("example.com"), V("http://example.com"), NONE, true},
    {P1("example.com"), V("https://www.example.com"), NONE, false},
    {P1("example.com"), V("https://evil-example.com"), NONE, false},
    {P1("example.com"), V("https://example.com.evil.net"), NONE, false},
    {P1("example.com"), V("https://notexample.com"), NONE, false},
    {P1("example.com"), V("https://example.co"), NONE, false},
    {P1("example.com"), V("https://xample.com"), NONE, false},
    /* userinfo, in Origin and in Referer */
    {P1("example.com"), V("https://example.com@evil.net"), NONE, false},
    {P1("example.com"), V("https://evil.net@example.com"), NONE, false},
    {P1("example.com"), V("https://user:pw@example.com"), NONE, false},
    {P1("example.com"), NONE, V("https://example.com@evil.net/path"), false},
    {P1("example.com"), NONE, V("https://user:pw@example.com/"), false},
    {P1("example.com"), NONE, V("https://evil.net\\@example.com/"), false},
    /* wildcard: any subdomain, not the apex */
    {P1("*.example.com"), V("https://example.com"), NONE, false},
    {P1("*.example.com"), V("https://www.example.com"), NONE, true},
    {P1("*.example.com"), V("https://a.b.example.com"), NONE, true},
    {P1("*.example.com"), V("https://notexample.com"), NONE, false},
    {P1("*.example.com"), V("https://www.notexample.com"), NONE, false},
    {P1("*.example.com"), V("https://evil-example.com"), NONE, false},
    {P1("*.example.com"), V("https://www.example.com.evil.net"), NONE, false},
    {P1("*.example.com"), V("https://.example.com"), NONE, false},
    {P1("*.example.com"), V("https://a..example.com"), NONE, false},
    {P1("*.example.com"), V("https://a-b.example.com"), NONE, true},
    {P1("*.example.com"), V("https://-a.example.com"), NONE, false},
    {P1("*.example.com"), V("https://a-.example.com"), NONE, false},
    {P1("*.example.com"), V("https://a_b.example.com"), NONE, false},
    {P1("*.example.com"), V("https://" L63 ".example.com"), NONE, true},
    {P1("*.example.com"), V("https://" L63 "x.example.com"), NONE, false}, /* a 64-character label */
    /* ports: a host-only pattern matches any valid port on http and https */
    {P1("example.com"), V("https://example.com:443"), NONE, true},
    {P1("example.com"), V("http://example.com:8080"), NONE, true},
    {P1("example.com"), V("https://example.com:1"), NONE, true},
    {P1("example.com"), V("https://example.com:65535"), NONE, true},
    {P1("example.com"), V("https://example.com:65536"), NONE, false},
    {P1("example.com"), V("https://example.com:99999"), NONE, false},
    {P1("example.com"), V("https://example.com:123456"), NONE, false},
    {P1("example.com"), V("https://example.com:0"), NONE, false},
    {P1("example.com"), V("https://example.com:abc"), NONE, false},
    {P1("example.com"), V("https://example.com:"), NONE, false},
    {P1("example.com"), V("https://example.com:-1"), NONE, false},
    {P1("example.com"), V("https://example.com:+443"), NONE, false},
    {P1("example.com"), V("https://example.com: 443"), NONE, false},
    {P1("example.com"), V("https://example.com:443:443"), NONE, false},
    {P1("example.com"), V("https://:443"), NONE, false},
    /* schemes */
    {P1("example.com"), V("HTTPS://example.com"), NONE, true},
    {P1("example.com"), V("HtTp://example.com"), NONE, true},
    {P1("example.com"), V("ftp://example.com"), NONE, false},
    {P1("example.com"), V("javascript://example.com"), NONE, false},
    {P1("example.com"), V("javascript:alert(1)//example.com"), NONE, false},
    {P1("example.com"), V("file://example.com"), NONE, false},
    {P1("example.com"), V("file://"), NONE, false},
    {P1("example.com"), V("chrome-extension://example.com"), NONE, false},
    {P1("example.com"), V("wss://example.com"), NONE, false},
    {P1("example.com"), V("https:/example.com"), NONE, false},
    {P1("example.com"), V("https:example.com"), NONE, false},
    {P1("example.com"), V("//example.com"), NONE, false},
    {P1("example.com"), V("example.com"), NONE, false},
    {P1("example.com"), V("https://"), NONE, false},
    {P1("example.com"), NONE, V("ftp://example.com/"), false},
    /* letter case */
    {P1("example.com"), V("https://EXAMPLE.com"), NONE, true},
    {P1("EXAMPLE.COM"), V("https://example.com"), NONE, true},
    {P1("*.Example.COM"), V("https://WWW.EXAMPLE.COM"), NONE, true},
    /* trailing dots */
    {P1("example.com"), V("https://example.com."), NONE, true},
    {P1("example.com"), V("https://example.com.:443"), NONE, true},
    {P1("example.com."), V("https://example.com"), NONE, true},
    {P1("example.com"), V("https://example.com.."), NONE, false},
    {P1("example.com"), V("https://."), NONE, false},
    /* punycode and Unicode */
    {P1("xn--bcher-kva.example"), V("https://" U_BUCHER), NONE, true},
    {P1(U_BUCHER), V("https://xn--bcher-kva.example"), NONE, true},
    {P1(U_BUCHER), V("https://" U_BUCHER), NONE, true},
    {P1(U_BUCHER_UP), V("https://XN--BCHER-KVA.EXAMPLE"), NONE, true},
    {P1("*." U_BUCHER), V("https://shop.xn--bcher-kva.example"), NONE, true},
    {P1("*." U_BUCHER), V("https://xn--bcher-kva.example"), NONE, false},
    {P1("bucher.example"), V("https://" U_BUCHER), NONE, false},
    {P1("example.com"), V("https://" U_HOMOGRAPH), NONE, false},
    {P1("*.example.com"), V("https://www." U_HOMOGRAPH), NONE, false},
    {P1("example.com"), V("https://\xff.example.com"), NONE, false}, /* not UTF-8 */
    /* missing, null and Referer-only */
    {P1("example.com"), NONE, NONE, false},
    {P1("example.com"), V("null"), NONE, false},
    {P1("example.com"), V("NULL"), NONE, false},
    {P1("example.com"), V("null"), V("https://example.com/page"), false}, /* Origin present wins */
    {P1("example.com"), V("https://evil.net"), V("https://example.com/page"), false},
    {P1("example.com"), V("https://example.com"), V("https://evil.net/page"), true},
    {P1("example.com"), NONE, V("https://evil.net/page"), false},
    {P1("example.com"), NONE, V("https://example.com/page"), true},
    {P1("example.com"), NONE, V("https://example.com"), true},
    {P1("example.com"), NONE, V("https://example.com:8443/a/b?c=d#e"), true},
    {P1("example.com"), NONE, V("https://example.com?q=1"), true},
    {P1("example.com"), NONE, V("https://example.com#top"), true},
    {P1("example.com"), NONE, V("https://example.com.evil.net/"), false},
    {P1("example.com"), NONE, V("https://evil.net/https://example.com/"), false},
    {P1("example.com"), NONE, V("https://evil.net/@example.com"), false},
    {P1("example.com"), NONE, V("null"), false},
    /* an Origin is scheme://host[:port], nothing more */
    {P1("example.com"), V("https://example.com/"), NONE, false},
    {P1("example.com"), V("https://example.com/x"), NONE, false},
    {P1("example.com"), V("https://example.com?x"), NONE, false},
    {P1("example.com"), V("https://example.com#x"), NONE, false},
    /* IP literals */
    {P1("127.0.0.1"), V("http://127.0.0.1:5173"), NONE, true},
    {P1("127.0.0.1"), V("http://127.0.0.2:5173"), NONE, false},
    {P1("127.0.0.1"), V("http://127.0.0.1.evil.net"), NONE, false},
    {P1("localhost"), V("http://localhost:5173"), NONE, true},
    {P3("localhost", "127.0.0.1", "example.com"), V("http://[::1]:5173"), NONE, false},
    {P1("127.0.0.1"), V("http://[::ffff:127.0.0.1]"), NONE, false},
    /* IPv6 literal patterns: compared in canonical form, however either side is written */
    {P1("[::1]"), V("http://[::1]:5173"), NONE, true},
    {P1("[0:0:0:0:0:0:0:1]"), V("http://[::1]"), NONE, true},
    {P1("[::1]"), V("http://[0::01]:3000"), NONE, true},
    {P1("[2001:DB8::1]"), V("https://[2001:db8::1]"), NONE, true},
    {P1("[::1]"), V("http://[::2]"), NONE, false},
    {P1("[::1]"), V("http://localhost"), NONE, false},
    {P1("localhost"), NONE, V("http://[::1]:5173/app"), false},
    {P1("[::1]"), NONE, V("http://[::1]:5173/app"), true},
    /* a present Origin decides, even an empty one (no browser sends it) */
    {P1("example.com"), V(""), V("https://example.com/"), false},
    {P1("example.com"), NONE, V(""), false},
    /* percent-encodings, spaces, control characters */
    {P1("example.com"), V("https://example%2ecom"), NONE, false},
    {P1("example.com"), V("https://%65xample.com"), NONE, false},
    {P1("example.com"), V("https://example.com%2e"), NONE, false},
    {P1("*.example.com"), V("https://evil.net%2f.example.com"), NONE, false},
    {P1("example.com"), V("https://example.com "), NONE, false},
    {P1("example.com"), V(" https://example.com"), NONE, false},
    {P1("example.com"), V("https:// example.com"), NONE, false},
    {P1("example.com"), V("https://exa mple.com"), NONE, false},
    {P1("example.com"), V("https://example.com\t"), NONE, false},
    {P1("example.com"), V("https://example.com\r\n"), NONE, false},
    {P1("example.com"), V("https://example.com\\"), NONE, false},
    /* NUL bytes inside the value (the lengths are explicit) */
    {P1("example.com"), V("https://example.com\0"), NONE, false},
    {P1("example.com"), V("https://example.com\0.evil.net"), NONE, false},
    {P1("xn--bcher-kva.example"), V("https://" U_BUCHER "\0.evil.net"), NONE, false},
    {P1("example.com"), V("https://\0example.com"), NONE, false},
    {P1("example.com"), V("http\0s://example.com"), NONE, false},
    {P1("example.com"), V("null\0"), V("https://example.com/"), false},
    {P1("example.com"), NONE, V("https://example.com\0/"), false},
    {P1("example.com"), NONE, V("https://example.com\0@evil.net/"), false},
    /* several patterns, and none */
    {P3("a.com", "*.b.com", "example.com"), V("https://x.b.com"), NONE, true},
    {P3("a.com", "*.b.com", "example.com"), V("https://b.com"), NONE, false},
    {P3("a.com", "*.b.com", "example.com"), V("https://example.com"), NONE, true},
    {P3("a.com", "*.b.com", "example.com"), V("https://c.com"), NONE, false},
    {{NULL}, V("https://example.com"), NONE, false},
};

static void dump(const char *what, hv_t v)
{
    fprintf(stderr, "      %s: ", what);
    if (v.base == NULL) {
        fprintf(stderr, "(absent)\n");
        return;
    }
    fputc('"', stderr);
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.base[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\" (%zu bytes)\n", v.len);
}

void test_origin_table(void)
{
    CHECK(sizeof(cases) / sizeof(cases[0]) >= 60);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const origin_case_t *c = &cases[i];
        char norm[3][KG_ORIGIN_HOST_MAX];
        char *patterns[3];
        size_t n = 0;
        for (; c->patterns[n] != NULL; n++) {
            CHECK(kg_origin_pattern_normalize(c->patterns[n], norm[n], sizeof(norm[n])));
            patterns[n] = norm[n];
        }
        bool got = kg_origin_allowed(c->origin.base, c->origin.len, c->referer.base, c->referer.len, patterns, n);
        if (got != c->expected) {
            fprintf(stderr, "    case %zu: expected %s, got %s\n", i, c->expected ? "allowed" : "refused",
                    got ? "allowed" : "refused");
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, "      pattern: \"%s\" (normalised \"%s\")\n", c->patterns[k], norm[k]);
            dump("origin", c->origin);
            dump("referer", c->referer);
            kg_test_failures++;
        }
    }
}

/* The normalised host kg_origin_host gives (or NULL when it refuses). */
static const char *host_of(hv_t v, bool is_referer, char *out, size_t cap)
{
    return kg_origin_host(v.base, v.len, is_referer, out, cap) ? out : NULL;
}

void test_origin_host(void)
{
    char h[KG_ORIGIN_HOST_MAX];
    CHECK_STR(host_of(HV("HTTPS://WWW.Example.COM.:443"), false, h, sizeof(h)), "www.example.com");
    CHECK_STR(host_of(HV("https://" U_BUCHER_UP "."), false, h, sizeof(h)), "xn--bcher-kva.example");
    CHECK_STR(host_of(HV("https://" U_HOMOGRAPH), false, h, sizeof(h)), "xn--exmple-4nf.com");
    CHECK_STR(host_of(HV("http://127.0.0.1:5173"), false, h, sizeof(h)), "127.0.0.1");
    CHECK_STR(host_of(HV("https://example.com:8443/a?b#c"), true, h, sizeof(h)), "example.com");
    CHECK(host_of(HV("https://example.com/a"), false, h, sizeof(h)) == NULL);
    /* IPv6 literals: in brackets, in canonical form (what browsers send) */
    CHECK_STR(host_of(HV("http://[::1]"), false, h, sizeof(h)), "[::1]");
    CHECK_STR(host_of(HV("http://[::1]:8080"), false, h, sizeof(h)), "[::1]");
    CHECK_STR(host_of(HV("http://[2001:DB8::A]:8080"), false, h, sizeof(h)), "[2001:db8::a]");
    CHECK_STR(host_of(HV("http://[::1]:8080/x"), true, h, sizeof(h)), "[::1]");
    CHECK(host_of(HV("http://[::1"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[::1]x"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[::1]:"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[::1]:0"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[::1%25eth0]"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[g::1]"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[]"), false, h, sizeof(h)) == NULL);     /* no address at all */
    CHECK(host_of(HV("http://[[::1]"), false, h, sizeof(h)) == NULL); /* a second '[' */
    CHECK_STR(host_of(HV("http://[::]"), false, h, sizeof(h)), "[::]");
    CHECK_STR(host_of(HV("http://[::FFFF:127.0.0.1]"), false, h, sizeof(h)), "[::ffff:127.0.0.1]");
    CHECK_STR(host_of(HV("http://[0:0:0:0:0:0:0:1]:80"), false, h, sizeof(h)), "[::1]");
    CHECK_STR(host_of(HV("http://[2001:0DB8:0000::0001]"), false, h, sizeof(h)), "[2001:db8::1]");
    CHECK(host_of(HV("http://[b1]"), false, h, sizeof(h)) == NULL); /* not an IPv6 address */
    CHECK(host_of(HV("http://[1.2.3.4]"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[::::]"), false, h, sizeof(h)) == NULL);
    CHECK(host_of(HV("http://[1:2:3:4:5:6:7:8:9]"), false, h, sizeof(h)) == NULL);
    /* the longest host name (253 characters) and one more */
    const char long_host[] = L63 "." L63 "." L63 "." L63; /* 255 characters */
    char buf[320];
    snprintf(buf, sizeof(buf), "https://%.*s", 253, long_host); /* ends in a 61-character label */
    CHECK_STR(host_of((hv_t){buf, strlen(buf)}, false, h, sizeof(h)), buf + 8);
    snprintf(buf, sizeof(buf), "https://x%.*s", 253, long_host);
    CHECK(host_of((hv_t){buf, strlen(buf)}, false, h, sizeof(h)) == NULL);
    /* a cap too small for the host refuses rather than truncating */
    char small[12];
    CHECK(host_of(HV("https://example.com"), false, small, sizeof(small)) != NULL); /* 11 + NUL */
    CHECK(host_of(HV("https://example.com"), false, small, 11) == NULL);
    CHECK(host_of(HV("http://[2001:db8::1]"), false, small, sizeof(small)) == NULL);
}

/* The normalised pattern (or NULL when it is refused). */
static const char *pattern_of(const char *in, char *out, size_t cap)
{
    return kg_origin_pattern_normalize(in, out, cap) ? out : NULL;
}

void test_origin_pattern_normalize(void)
{
    char p[KG_ORIGIN_HOST_MAX];
    static const struct {
        const char *in, *out;
    } accepted[] = {
        {"example.com", "example.com"},
        {"EXAMPLE.COM.", "example.com"},
        {"*.Example.com", "*.example.com"},
        {"*.example.com.", "*.example.com"},
        {"localhost", "localhost"},
        {"127.0.0.1", "127.0.0.1"},
        {"a-b.example", "a-b.example"},
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {U_BUCHER, "xn--bcher-kva.example"},
        {U_BUCHER_UP ".", "xn--bcher-kva.example"},
        {"*." U_BUCHER, "*.xn--bcher-kva.example"},
        {U_HOMOGRAPH, "xn--exmple-4nf.com"},
        {L63 ".com", L63 ".com"},
        {"[::1]", "[::1]"},
        {"[0:0:0:0:0:0:0:1]", "[::1]"},
        {"[2001:DB8::0:1]", "[2001:db8::1]"},
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
        CHECK_STR(pattern_of(accepted[i].in, p, sizeof(p)), accepted[i].out);

    static const char *const refused[] = {
        "",
        "*",
        "*.",
        "*..",
        "**.example.com",
        "*example.com",
        "a.*.com",
        "*.*.com",
        "example.*",
        ".example.com",
        "example..com",
        "example.com..",
        "-a.com",
        "a-.com",
        "a_b.com",
        "https://example.com",
        "example.com:443",
        "example.com/",
        "example.com/x",
        "user@example.com",
        " example.com",
        "example.com ",
        "exa mple.com",
        "%65xample.com",
        "example%2ecom",
        "[]",
        "[::1",
        "::1",
        "[b1]",
        "[::1]:80",
        "*.[::1]",
        "[::1%eth0]",
        L63 "x.com",
        "\xff.com",
        ("a\xe2\x80\x8d"
         "b.com"),
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *got = pattern_of(refused[i], p, sizeof(p));
        if (got != NULL) {
            fprintf(stderr, "    pattern \"%s\" accepted as \"%s\"\n", refused[i], got);
            kg_test_failures++;
        }
    }

    /* 253 characters is the longest name; 254 (without a trailing dot) is too long */
    char in[300];
    snprintf(in, sizeof(in), "%s.%s.%s.%.61s", L63, L63, L63, L63); /* 63*3 + 3 + 61 = 253 */
    CHECK_INT(strlen(in), 253);
    CHECK_STR(pattern_of(in, p, sizeof(p)), in);
    snprintf(in, sizeof(in), "%s.%s.%s.%.61s.", L63, L63, L63, L63); /* the same with a trailing dot */
    CHECK(pattern_of(in, p, sizeof(p)) != NULL);
    snprintf(in, sizeof(in), "%s.%s.%s.%.62s", L63, L63, L63, L63); /* 254 */
    CHECK(pattern_of(in, p, sizeof(p)) == NULL);

    /* a cap too small refuses rather than truncating */
    char small[12];
    CHECK_STR(pattern_of("example.com", small, sizeof(small)), "example.com");
    CHECK(pattern_of("example.com", small, 11) == NULL);
    CHECK(pattern_of("*.example.com", small, sizeof(small)) == NULL);
    CHECK(pattern_of("a", small, 0) == NULL);
}

void test_origin_match(void)
{
    CHECK(kg_origin_match("example.com", "example.com"));
    CHECK(!kg_origin_match("www.example.com", "example.com"));
    CHECK(!kg_origin_match("example.com", "*.example.com"));
    CHECK(kg_origin_match("www.example.com", "*.example.com"));
    CHECK(kg_origin_match("a.b.example.com", "*.example.com"));
    CHECK(!kg_origin_match("notexample.com", "*.example.com"));
    CHECK(!kg_origin_match("evil-example.com", "*.example.com"));
    CHECK(!kg_origin_match("example.com.evil.net", "*.example.com"));
    CHECK(!kg_origin_match("example.co", "example.com"));
    CHECK(!kg_origin_match("", "example.com"));
}
