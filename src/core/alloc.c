/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the aborting allocators of core/alloc.h.
 */
#include "core/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(size_t n)
{
    fprintf(stderr, "keygate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *kg_xmalloc(size_t n)
{
    void *p = malloc(n != 0 ? n : 1);
    if (p == NULL)
        die_oom(n);
    return p;
}

void *kg_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count != 0 ? count : 1, size != 0 ? size : 1);
    if (p == NULL)
        die_oom(count * size);
    return p;
}

void *kg_xrealloc(void *p, size_t n)
{
    void *grown = realloc(p, n != 0 ? n : 1);
    if (grown == NULL)
        die_oom(n);
    return grown;
}

char *kg_xstrdup(const char *s)
{
    return kg_xstrndup(s, strlen(s));
}

char *kg_xstrndup(const char *s, size_t n)
{
    char *p = kg_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
