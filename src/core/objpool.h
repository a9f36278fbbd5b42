/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns fixed-size object pools, for the key index's records and states: a million keys
 * are two million small objects, and every lookup reaches two of them at random. From malloc each
 * sat on its own 4 KiB page as far as the TLB is concerned, so a lookup paid a page walk per
 * object; a pool carves them from 2 MiB-aligned chunks marked for transparent huge pages
 * (MADV_HUGEPAGE), which a few hundred TLB entries cover, and its chunks fault in 2 MiB at a time
 * at start-up. Freed objects go on a free list for the next allocation; a pool's memory returns
 * to the system only with the process. Thread-safe through a mutex: pools serve index writers and
 * RCU callbacks, never the request path. Under AddressSanitizer a pool is aligned_alloc and free,
 * so that ASan keeps checking every object.
 */
#ifndef KG_CORE_OBJPOOL_H
#define KG_CORE_OBJPOOL_H

#include <pthread.h>
#include <stddef.h>

/* Defined when AddressSanitizer is on: then a pool is aligned_alloc and free. */
#if defined(__SANITIZE_ADDRESS__)
#define KG_OBJPOOL_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KG_OBJPOOL_PLAIN 1
#endif
#endif

typedef struct kg_objpool {
    pthread_mutex_t lock;
    size_t stride;      /* the object size rounded up to its alignment */
    size_t align;       /* a power of two, at most 4096 */
    void *free_list;    /* freed objects, each linked through its first word */
    char *next, *end;   /* the current chunk's unused part */
    size_t chunk_bytes; /* the last chunk's size: 64 KiB first, doubling to 2 MiB */
} kg_objpool_t;

#define KG_OBJPOOL_INIT(size, alignment)                                                                               \
    {                                                                                                                  \
        .lock = PTHREAD_MUTEX_INITIALIZER, .stride = ((size) + (alignment)-1) / (alignment) * (alignment),             \
        .align = (alignment)                                                                                           \
    }

/** A zeroed object; aborts if the system has no memory left (as kg_xcalloc does). */
void *kg_objpool_alloc(kg_objpool_t *pool);
/** Gives an object back (NULL is ignored); it must come from this pool. */
void kg_objpool_free(kg_objpool_t *pool, void *obj);
/**
 * Makes room for n more objects in one region whose pages a background thread faults in, so
 * that the kernel zeroes a bulk load's memory on another core while the loader reads the store
 * (13-15 % of a million keys' start-up, measured). The objects are then allocated as usual;
 * without a thread the pages fault in on first use, as before. A no-op for fewer objects than
 * fill a huge page (an idle gateway's few keys stay on small chunks) and under ASan. Meant for
 * a pool about to be filled: freed objects are not counted towards n.
 */
void kg_objpool_reserve(kg_objpool_t *pool, size_t n);

#endif
