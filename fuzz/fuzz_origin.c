/* SPDX-License-Identifier: Apache-2.0
 *
 * libFuzzer target for src/policy/origin.c (SPEC §2, publishable keys). The input is
 *
 *     pattern '\n' origin [ '\n' referer ]
 *
 * (no '\n' at all: the whole input is the origin and the pattern is empty). Each part is copied
 * into an exact-size heap buffer (the pattern with its NUL, since the API takes a C string; the
 * header values without one), so ASan sees any over-read. Results are compared with the
 * independent reference in origin_reference.c whenever the inputs involved are ASCII; with bytes
 * >= 0x80 (Unicode hosts, handled by libidn2) only crashes and sanitizer reports count.
 * A disagreement prints both sides and the input in hex, then aborts.
 *
 * KG_FUZZ_SKIP (environment, comma-separated) turns off known, already-reported disagreement
 * classes so that a run can go on exploring: "nul" (values holding a NUL byte), "ipv6" (values
 * holding '['). Unset, every check is strict.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "origin_reference.h"
#include "policy/origin.h"

static const uint8_t *g_data;
static size_t g_size;
static int g_skip_nul = -1, g_skip_ipv6;

static void dump_hex(const char *what, const void *p, size_t n)
{
    const unsigned char *b = p;
    fprintf(stderr, "%s (%zu bytes): ", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%02x", b[i]);
    fputc('\n', stderr);
}

static void disagree(const char *what, bool got, const char *got_out, bool want, const char *want_out)
{
    fprintf(stderr, "\n*** origin.c disagrees with the reference: %s\n", what);
    fprintf(stderr, "    origin.c : %s \"%s\"\n", got ? "true " : "false", got ? got_out : "");
    fprintf(stderr, "    reference: %s \"%s\"\n", want ? "true " : "false", want ? want_out : "");
    dump_hex("    input", g_data, g_size);
    abort();
}

static bool has_high(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x80)
            return true;
    return false;
}

/* Whether the comparison for these value bytes is on (ASCII, and no known class to skip). */
static bool comparable(const unsigned char *p, size_t n)
{
    if (has_high(p, n))
        return false;
    if (g_skip_nul && memchr(p, '\0', n) != NULL)
        return false;
    if (g_skip_ipv6 && memchr(p, '[', n) != NULL)
        return false;
    return true;
}

static void *dup_exact(const uint8_t *p, size_t n, bool nul)
{
    unsigned char *b = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul ? 1 : 0));
    if (b == NULL)
        abort();
    if (n > 0)
        memcpy(b, p, n);
    if (nul)
        b[n] = '\0';
    return b;
}

/* kg_origin_host on one value both ways, checked against the reference and with a small cap. */
static void check_host(const unsigned char *v, size_t n, size_t small_cap)
{
    for (int is_referer = 0; is_referer < 2; is_referer++) {
        char got[KG_ORIGIN_HOST_MAX], want[REF_HOST_MAX];
        memset(got, 0, sizeof(got));
        bool g = kg_origin_host((const char *)v, n, is_referer, got, sizeof(got));
        if (g && strlen(got) >= sizeof(got))
            disagree("kg_origin_host output not terminated", g, "", false, "");
        if (comparable(v, n)) {
            bool w = ref_host(v, n, is_referer, want);
            if (g != w || (g && strcmp(got, want) != 0))
                disagree(is_referer ? "kg_origin_host(referer)" : "kg_origin_host(origin)", g, got, w, want);
        }
        /* a small, exact-size output buffer: never written past, never truncated */
        char *small = malloc(small_cap);
        if (small == NULL)
            abort();
        bool s = kg_origin_host((const char *)v, n, is_referer, small, small_cap);
        if (s && (!g || strcmp(small, got) != 0))
            disagree("kg_origin_host with a small cap", s, small, g, got);
        if (!s && g && strlen(got) < small_cap && !(g_skip_nul && memchr(v, '\0', n) != NULL))
            disagree("kg_origin_host refused a host that fits the small cap", s, "", g, got);
        free(small);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_skip_nul < 0) {
        const char *skip = getenv("KG_FUZZ_SKIP");
        g_skip_nul = skip != NULL && strstr(skip, "nul") != NULL;
        g_skip_ipv6 = skip != NULL && strstr(skip, "ipv6") != NULL;
    }
    g_data = data;
    g_size = size;

    /* split: pattern \n origin [\n referer] */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t pn = 0, on, rn = 0;
    const uint8_t *op, *rp = NULL;
    if (nl == NULL) {
        op = data;
        on = size;
    } else {
        pn = (size_t)(nl - data);
        op = nl + 1;
        const uint8_t *nl2 = memchr(op, '\n', size - pn - 1);
        if (nl2 == NULL) {
            on = size - pn - 1;
        } else {
            on = (size_t)(nl2 - op);
            rp = nl2 + 1;
            rn = size - pn - 1 - on - 1;
        }
    }
    char *pattern = dup_exact(data, pn, true);
    unsigned char *origin = dup_exact(op, on, false);
    unsigned char *referer = dup_exact(rp != NULL ? rp : data, rn, false);
    size_t small_cap = 1 + (size * 7) % 48;

    /* 1. the pattern */
    char got_pat[KG_ORIGIN_HOST_MAX], want_pat[REF_HOST_MAX];
    bool gp = kg_origin_pattern_normalize(pattern, got_pat, sizeof(got_pat));
    if (!has_high((const unsigned char *)pattern, strlen(pattern))) {
        bool wp = ref_pattern(pattern, want_pat);
        if (gp != wp || (gp && strcmp(got_pat, want_pat) != 0))
            disagree("kg_origin_pattern_normalize", gp, got_pat, wp, want_pat);
    }
    if (gp) {
        /* a normalised pattern is a fixed point */
        char again[KG_ORIGIN_HOST_MAX];
        if (!kg_origin_pattern_normalize(got_pat, again, sizeof(again)) || strcmp(again, got_pat) != 0)
            disagree("normalising a normalised pattern", false, again, true, got_pat);
    }
    char *small = malloc(small_cap);
    if (small == NULL)
        abort();
    bool sp = kg_origin_pattern_normalize(pattern, small, small_cap);
    if (sp && (!gp || strcmp(small, got_pat) != 0))
        disagree("kg_origin_pattern_normalize with a small cap", sp, small, gp, got_pat);
    free(small);

    /* 2. the header values, each both as an Origin and as a Referer */
    check_host(origin, on, small_cap);
    if (rp != NULL)
        check_host(referer, rn, small_cap);

    /* 3. the whole check, with the fuzzed pattern (when valid) and some fixed ones */
    char *const fixed[] = {"example.com", "*.example.com", "xn--bcher-kva.example", "127.0.0.1", NULL};
    char *patterns[6];
    size_t np = 0;
    for (; fixed[np] != NULL; np++)
        patterns[np] = fixed[np];
    if (gp)
        patterns[np++] = got_pat;
    bool all_ascii = !has_high((const unsigned char *)pattern, strlen(pattern));
    for (int referer_only = 0; referer_only < 2; referer_only++) {
        const unsigned char *o = referer_only ? NULL : origin;
        size_t olen = referer_only ? 0 : on;
        bool g = kg_origin_allowed((const char *)o, olen, (const char *)referer, rn, patterns, np);
        bool values_ok = (olen == 0 || comparable(o, olen)) && (rn == 0 || comparable(referer, rn));
        if (all_ascii && values_ok) {
            bool w = ref_allowed(o, olen, referer, rn, (const char *const *)patterns, np);
            if (g != w)
                disagree(referer_only ? "kg_origin_allowed (Referer only)" : "kg_origin_allowed", g, "", w, "");
        }
    }

    /* 4. kg_origin_match on raw strings too (it must not crash on unnormalised input) */
    char *ostr = dup_exact(op, on, true);
    (void)kg_origin_match(ostr, pattern);
    (void)kg_origin_match(pattern, ostr);
    free(ostr);

    free(pattern);
    free(origin);
    free(referer);
    return 0;
}
