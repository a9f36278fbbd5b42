/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns finding the token counts in an upstream's answer as it is relayed (issue 6):
 * the `usage` object of a JSON body, or of a stream's final chunk. It looks only for the
 * members "prompt_tokens" and "completion_tokens" followed by a number — inside a JSON string
 * such a name could only appear with its quotes escaped, so message content cannot fake it —
 * and keeps the last values seen, across chunk boundaries, without parsing the answer.
 */
#ifndef KG_USAGE_USAGE_SCAN_H
#define KG_USAGE_USAGE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KG_USAGE_SCAN_CARRY 48 /* longer than `"completion_tokens" : ` and its number */

typedef struct kg_usage_scan {
    char carry[KG_USAGE_SCAN_CARRY]; /* the last bytes seen, for a member split across chunks */
    size_t carry_len;
    int64_t prompt_tokens, completion_tokens;
    bool found_prompt, found_completion;
} kg_usage_scan_t;

/** Feeds the next bytes of the answer (zero-initialised scan to start). */
void kg_usage_scan_feed(kg_usage_scan_t *s, const char *p, size_t len);

#endif
