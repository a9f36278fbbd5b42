/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the object pools of objpool.h.
 */
#include "core/objpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#ifndef KG_OBJPOOL_PLAIN
#define FIRST_CHUNK ((size_t)64 << 10)
#define HUGE_PAGE ((size_t)2 << 20)

/* `bytes` of fresh memory; chunks of a huge page are aligned to one and marked for THP. */
static char *map_chunk(size_t bytes)
{
    size_t slack = bytes >= HUGE_PAGE ? HUGE_PAGE : 0;
    char *base = mmap(NULL, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        abort();
    if (slack == 0)
        return base;
    char *aligned = (char *)(((uintptr_t)base + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (aligned > base)
        munmap(base, (size_t)(aligned - base));
    if (aligned + bytes < base + bytes + slack)
        munmap(aligned + bytes, (size_t)(base + bytes + slack - (aligned + bytes)));
    madvise(aligned, bytes, MADV_HUGEPAGE); /* a hint: without THP the chunk is ordinary pages */
    return aligned;
}

typedef struct prefault {
    char *base;
    size_t bytes;
} prefault_t;

#ifdef MADV_POPULATE_WRITE
static void *prefault_main(void *arg)
{
    prefault_t *job = arg;
    /* Faults the pages in writable without writing to them: the loader may already be filling
     * the first ones. A kernel without MADV_POPULATE_WRITE (before 5.14) refuses; nothing lost. */
    madvise(job->base, job->bytes, MADV_POPULATE_WRITE);
    free(job);
    return NULL;
}
#endif

/* Detached: a pool's memory is never unmapped, so the thread may outlive anything but the process. */
static void prefault_in_background(char *base, size_t bytes)
{
#ifndef MADV_POPULATE_WRITE /* headers before Linux 5.14: the pages fault in on first use */
    (void)base, (void)bytes;
#else
    prefault_t *job = malloc(sizeof(*job));
    pthread_attr_t attr;
    pthread_t tid;
    if (job == NULL)
        return;
    *job = (prefault_t){base, bytes};
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, prefault_main, job) != 0)
        free(job);
    pthread_attr_destroy(&attr);
#endif
}
#endif

void *kg_objpool_alloc(kg_objpool_t *pool)
{
#ifdef KG_OBJPOOL_PLAIN
    void *plain = aligned_alloc(pool->align, pool->stride); /* the stride is a multiple of align */
    if (plain == NULL)
        abort();
    return memset(plain, 0, pool->stride);
#else
    void *obj;
    pthread_mutex_lock(&pool->lock);
    if (pool->free_list != NULL) {
        obj = pool->free_list;
        memcpy(&pool->free_list, obj, sizeof(void *));
        memset(obj, 0, pool->stride);
    } else {
        if ((size_t)(pool->end - pool->next) < pool->stride) {
            /* 64 KiB first, so that an idle gateway's few keys cost no huge page. */
            size_t bytes = pool->chunk_bytes == 0 ? FIRST_CHUNK : pool->chunk_bytes * 2;
            if (bytes > HUGE_PAGE)
                bytes = HUGE_PAGE;
            pool->chunk_bytes = bytes;
            pool->next = map_chunk(bytes); /* page-aligned: any alignment up to 4 KiB holds */
            pool->end = pool->next + bytes;
        }
        obj = pool->next; /* zero: fresh anonymous memory */
        pool->next += pool->stride;
    }
    pthread_mutex_unlock(&pool->lock);
    return obj;
#endif
}

void kg_objpool_free(kg_objpool_t *pool, void *obj)
{
#ifdef KG_OBJPOOL_PLAIN
    (void)pool;
    free(obj);
#else
    if (obj == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    memcpy(obj, &pool->free_list, sizeof(void *));
    pool->free_list = obj;
    pthread_mutex_unlock(&pool->lock);
#endif
}

void kg_objpool_reserve(kg_objpool_t *pool, size_t n)
{
#ifdef KG_OBJPOOL_PLAIN
    (void)pool, (void)n;
#else
    if (n * pool->stride < HUGE_PAGE)
        return; /* the usual chunks serve it: a few keys cost no huge page (an idle gateway's memory) */
    char *region = NULL;
    size_t bytes = 0;
    pthread_mutex_lock(&pool->lock);
    if ((size_t)(pool->end - pool->next) / pool->stride < n) {
        /* The current chunk's rest goes on the free list, to be used first: nothing is stranded. */
        for (; (size_t)(pool->end - pool->next) >= pool->stride; pool->next += pool->stride) {
            memcpy(pool->next, &pool->free_list, sizeof(void *));
            pool->free_list = pool->next;
        }
        bytes = (n * pool->stride + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        pool->next = region = map_chunk(bytes);
        pool->end = pool->next + bytes;
        pool->chunk_bytes = HUGE_PAGE; /* what follows comes in huge pages too */
    }
    pthread_mutex_unlock(&pool->lock);
    if (region != NULL)
        prefault_in_background(region, bytes);
#endif
}
