/* SPDX-License-Identifier: Apache-2.0
 *
 * libFuzzer target for the two readers of a request body (src/json/body_scan_internal.h): the
 * input is the body. Whenever the fast reader (simdjson) takes a body, the exact one (yajl,
 * which words every refusal) must take it too and read the same: model and its position,
 * stream, usage option, inputs, limits, the messages' position. A fast reader that accepted
 * what the exact one refuses would let through a body the gateway means to refuse (a
 * duplicated "model", invalid UTF-8, nesting past 64); one that read it differently would
 * route or bill it differently. The body is copied into an exact-size heap buffer so ASan sees
 * any over-read. A disagreement prints both readings and the input in hex, then aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/body_scan_internal.h"

#define ARENA_BYTES (1 << 22)
#define MAX_SPILLS 4096

/* What the readers allocate, freed after each input (as the request pool is after a request). */
static char *arena;
static size_t arena_used;
static void *spills[MAX_SPILLS]; /* beyond the arena: a huge input */
static size_t n_spills;

static void *arena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    size = (size + 15) & ~(size_t)15;
    if (arena_used + size <= ARENA_BYTES) {
        void *p = arena + arena_used;
        arena_used += size;
        return p;
    }
    if (n_spills == MAX_SPILLS)
        abort(); /* the readers allocate far more than their input: a finding in itself */
    return spills[n_spills++] = malloc(size);
}

static void print_info(const char *who, const kg_body_info_t *i)
{
    fprintf(
        stderr,
        "%s: model %d/%d \"%s\" (%zu) at [%zu,%zu) stream %d usage %d/%d inputs %zu base64 %d dim %ld max %ld n %ld "
        "messages %d at %zu empty %d\n",
        who, i->has_model, i->model_is_string, i->model, i->model_len, i->model_start, i->model_end, i->stream,
        i->include_usage, i->has_stream_options, i->n_inputs, i->encoding_base64, i->dimensions, i->max_tokens,
        i->choices, i->has_messages, i->messages_open, i->messages_empty);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (arena == NULL)
        arena = malloc(ARENA_BYTES);
    char *body = malloc(size != 0 ? size : 1);
    memcpy(body, data, size);
    kg_body_alloc_t alloc = {arena_alloc, NULL};
    kg_body_info_t fast, exact;
    kg_error_t err = {0};

    arena_used = 0;
    bool took = kg__body_scan_fast(body, size, &alloc, &fast);
    kg_err_t rv = kg__body_scan_exact(body, size, &alloc, &exact, &err);
    if (took && (rv != KG_OK || memcmp(&fast, &exact, sizeof(fast)) != 0)) {
        fprintf(stderr, "fast and exact readers disagree (exact: %s)\n", rv == KG_OK ? "ok" : err.message);
        print_info("fast ", &fast);
        if (rv == KG_OK)
            print_info("exact", &exact);
        for (size_t i = 0; i < size; i++)
            fprintf(stderr, "%02x", data[i]);
        fprintf(stderr, "\n");
        abort();
    }
    while (n_spills > 0)
        free(spills[--n_spills]);
    free(body);
    return 0;
}
