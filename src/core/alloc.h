/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns process-lifetime allocation helpers. kg_x* abort on exhaustion and are for
 * small, internally sized objects (as Redis' zmalloc and h2o_mem_alloc do); sizes that come
 * from input are checked against their limits before they get here.
 */
#ifndef KG_CORE_ALLOC_H
#define KG_CORE_ALLOC_H

#include <stddef.h>

void *kg_xmalloc(size_t n);
void *kg_xcalloc(size_t count, size_t size);
void *kg_xrealloc(void *p, size_t n);
char *kg_xstrdup(const char *s);
char *kg_xstrndup(const char *s, size_t n);

/** Frees *pp and sets it to NULL. */
#define KG_FREE(p)                                                                                                     \
    do {                                                                                                               \
        free(p);                                                                                                       \
        (p) = NULL;                                                                                                    \
    } while (0)

#endif
