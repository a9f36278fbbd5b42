/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the usage scan of usage_scan.h: a search of each chunk for the needle,
 * plus one pass over the seam between the previous chunk's tail and the new chunk's head.
 */
#include "usage/usage_scan.h"

#include <string.h>

static const char needle[] = "_tokens\"";
#define NEEDLE_LEN (sizeof(needle) - 1)

/* Reads the member whose "_tokens\"" starts at buf[at]; false if it is not one of ours or its
 * number may continue past the buffer (the seam pass sees it whole). */
static bool read_member(kg_usage_scan_t *s, const char *buf, size_t len, size_t at)
{
    static const struct {
        const char *name;
        size_t len;
    } names[] = {{"\"prompt", 7}, {"\"completion", 11}};
    int which = -1;
    for (int i = 0; i < 2 && which < 0; i++)
        if (at >= names[i].len && memcmp(buf + at - names[i].len, names[i].name, names[i].len) == 0)
            which = i;
    if (which < 0)
        return false;
    size_t p = at + NEEDLE_LEN;
    while (p < len && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\r' || buf[p] == '\n'))
        p++;
    if (p >= len || buf[p] != ':')
        return false;
    p++;
    while (p < len && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\r' || buf[p] == '\n'))
        p++;
    int64_t v = 0;
    size_t digits = 0;
    for (; p < len && buf[p] >= '0' && buf[p] <= '9' && digits < 15; p++, digits++)
        v = v * 10 + (buf[p] - '0');
    if (digits == 0 || p >= len)
        return false; /* not a number, or it may go on in the next chunk */
    if (which == 0)
        s->prompt_tokens = v, s->found_prompt = true;
    else
        s->completion_tokens = v, s->found_completion = true;
    return true;
}

/* The needle's rarest character in JSON answers: memchr (vector code, no set-up) finds each 'k'
 * and the needle is compared around it. glibc's memmem set up a shift table on every call, once
 * per "_tokens\"" a usage object holds: 1.5 % of the gateway's CPU, measured. */
#define ANCHOR 'k'
#define ANCHOR_AT 3 /* needle[ANCHOR_AT] == ANCHOR */

static void scan(kg_usage_scan_t *s, const char *buf, size_t len)
{
    if (len < NEEDLE_LEN)
        return;
    const char *p = buf + ANCHOR_AT, *last = buf + len - (NEEDLE_LEN - ANCHOR_AT); /* the last anchor that fits */
    while (p <= last && (p = memchr(p, ANCHOR, (size_t)(last - p) + 1)) != NULL) {
        if (memcmp(p - ANCHOR_AT, needle, NEEDLE_LEN) == 0)
            read_member(s, buf, len, (size_t)(p - ANCHOR_AT - buf));
        p++;
    }
}

void kg_usage_scan_feed(kg_usage_scan_t *s, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (s->carry_len > 0) {
        char seam[2 * KG_USAGE_SCAN_CARRY];
        size_t head = len < KG_USAGE_SCAN_CARRY ? len : KG_USAGE_SCAN_CARRY;
        memcpy(seam, s->carry, s->carry_len);
        memcpy(seam + s->carry_len, p, head);
        scan(s, seam, s->carry_len + head);
    }
    scan(s, p, len);
    if (len >= KG_USAGE_SCAN_CARRY) {
        memcpy(s->carry, p + len - KG_USAGE_SCAN_CARRY, KG_USAGE_SCAN_CARRY);
        s->carry_len = KG_USAGE_SCAN_CARRY;
    } else {
        size_t keep = KG_USAGE_SCAN_CARRY - len < s->carry_len ? KG_USAGE_SCAN_CARRY - len : s->carry_len;
        memmove(s->carry, s->carry + s->carry_len - keep, keep);
        memcpy(s->carry + keep, p, len);
        s->carry_len = keep + len;
    }
}
