/* SPDX-License-Identifier: Apache-2.0
 *
 * An LD_PRELOAD library for the allocation test (issue 7): counts the heap allocations made on
 * keygate's event-loop threads (named "kg-worker…"), each attributed to the first module on
 * the call stack that is not libc (nor libstdc++ or simdjson, which only keygate's body reader
 * calls) — keygate's own code, libh2o, yajl, ... — so a test can
 * assert that keygate itself allocates nothing per request while reporting libh2o's beside it.
 * An object libh2o allocates in h2o_mem_alloc_shared is its caller's (a request-scoped object
 * with a destructor, one malloc each): it is charged to the module that asked for it.
 *
 * Control, through files in $KG_ALLOC_DIR (polled every 20 ms by a thread of this library):
 * `reset` (removed when done) zeroes the counters; `dump` (removed when done) writes
 * `counts`: one "module count" line per module, then "total N".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define MAX_MODULES 32

static struct {
    char name[64];
    _Atomic unsigned long count;
} modules[MAX_MODULES];
static _Atomic int n_modules;
/* Where the keygate binary's own allocations come from (offsets into it, for addr2line). */
#define MAX_SITES 16
static _Atomic uintptr_t sites[MAX_SITES];
static _Atomic unsigned long site_counts[MAX_SITES];
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_hook; /* backtrace() and dladdr() may allocate: do not count those */
static __thread int is_worker = -1;

static int worker_thread(void)
{
    if (is_worker < 0) {
        char name[17] = {0};
        prctl(PR_GET_NAME, name, 0, 0, 0);
        is_worker = strncmp(name, "kg-worker", 9) == 0;
    }
    return is_worker;
}

static void count(void)
{
    if (in_hook || !worker_thread())
        return;
    in_hook = 1;
    void *frames[16];
    int n = backtrace(frames, 16);
    const char *module = "unknown";
    for (int i = 1; i < n; i++) { /* frame 0 is count() itself */
        Dl_info info;
        if (dladdr(frames[i], &info) == 0 || info.dli_fname == NULL)
            continue;
        const char *base = strrchr(info.dli_fname, '/');
        base = base != NULL ? base + 1 : info.dli_fname;
        if (strncmp(base, "libc.so", 7) == 0 || strstr(base, "alloc_count") != NULL)
            continue;
        /* operator new, and simdjson's buffers, are allocated for whoever called them: keygate's
         * body reader (src/json/body_scan_fast.cpp) is the only C++ on the event loop. */
        if (strncmp(base, "libstdc++.so", 12) == 0 || strncmp(base, "libsimdjson.so", 14) == 0)
            continue;
        if (info.dli_sname != NULL && strcmp(info.dli_sname, "h2o_mem_alloc_shared") == 0)
            continue; /* the caller's object, not libh2o's */
        module = base;
        if (strcmp(base, "keygate") == 0) { /* remember the call site, for the failure message */
            /* The caller of keygate's allocation wrapper (kg_xcalloc & co.) says more than it. */
            Dl_info up;
            int at = i + 1 < n && dladdr(frames[i + 1], &up) != 0 && up.dli_fbase == info.dli_fbase ? i + 1 : i;
            uintptr_t off = (uintptr_t)frames[at] - (uintptr_t)info.dli_fbase;
            for (int k = 0; k < MAX_SITES; k++) {
                uintptr_t cur = atomic_load(&sites[k]);
                if (cur == off || (cur == 0 && atomic_compare_exchange_strong(&sites[k], &cur, off)) || cur == off) {
                    atomic_fetch_add(&site_counts[k], 1);
                    break;
                }
            }
        }
        break;
    }
    int found = -1, total = atomic_load(&n_modules);
    for (int i = 0; i < total && found < 0; i++)
        if (strcmp(modules[i].name, module) == 0)
            found = i;
    if (found < 0) {
        pthread_mutex_lock(&modules_lock);
        total = atomic_load(&n_modules);
        for (int i = 0; i < total && found < 0; i++)
            if (strcmp(modules[i].name, module) == 0)
                found = i;
        if (found < 0 && total < MAX_MODULES) {
            snprintf(modules[total].name, sizeof(modules[total].name), "%s", module);
            found = total;
            atomic_store(&n_modules, total + 1);
        }
        pthread_mutex_unlock(&modules_lock);
    }
    if (found >= 0)
        atomic_fetch_add(&modules[found].count, 1);
    in_hook = 0;
}

void *malloc(size_t size)
{
    count();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count();
    return __libc_realloc(p, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    count();
    void *p = __libc_memalign(align, size);
    if (p == NULL)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static void *control(void *arg)
{
    const char *dir = arg;
    char reset[4096], dump[4096], counts[4096], tmp[4096];
    snprintf(reset, sizeof(reset), "%s/reset", dir);
    snprintf(dump, sizeof(dump), "%s/dump", dir);
    snprintf(counts, sizeof(counts), "%s/counts", dir);
    snprintf(tmp, sizeof(tmp), "%s/counts.tmp", dir);
    for (;;) {
        if (access(reset, F_OK) == 0) {
            for (int i = 0; i < atomic_load(&n_modules); i++)
                atomic_store(&modules[i].count, 0);
            for (int k = 0; k < MAX_SITES; k++)
                atomic_store(&site_counts[k], 0);
            unlink(reset);
        }
        if (access(dump, F_OK) == 0) {
            FILE *f = fopen(tmp, "w");
            if (f != NULL) {
                unsigned long total = 0;
                for (int i = 0; i < atomic_load(&n_modules); i++) {
                    unsigned long c = atomic_load(&modules[i].count);
                    fprintf(f, "%s %lu\n", modules[i].name, c);
                    total += c;
                }
                fprintf(f, "total %lu\n", total);
                for (int k = 0; k < MAX_SITES; k++)
                    if (atomic_load(&site_counts[k]) != 0)
                        fprintf(f, "site 0x%lx %lu\n", (unsigned long)atomic_load(&sites[k]),
                                atomic_load(&site_counts[k]));
                fclose(f);
                rename(tmp, counts);
            }
            unlink(dump);
        }
        usleep(20000);
    }
    return NULL;
}

__attribute__((constructor)) static void start(void)
{
    const char *dir = getenv("KG_ALLOC_DIR");
    pthread_t t;
    if (dir != NULL && pthread_create(&t, NULL, control, (void *)dir) == 0)
        pthread_detach(t);
}
