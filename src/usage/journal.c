/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the usage journal of journal.h. Each writer fills the slots of its
 * current segment in order; a slot is published by storing its commit word last, with release,
 * so the reader (acquire) and a later process both see a whole record or none. The journal's
 * list of segments, oldest first, changes only on the cold paths: a writer appends a segment
 * when it rolls over, the reader unlinks segments it has released; one mutex guards the links.
 *
 * Per segment, only its writer advances `committed` and only the reader moves `read` and
 * `released`; `finished` (release-stored by the writer when it leaves the segment) tells the
 * reader that `committed` is final, so a drained segment can go.
 *
 * Segments are made off the event loops: the reader thread (kg_journal_prepare) gives each writer
 * a spare, created, allocated, mapped and pre-faulted writable, already in the list but not yet
 * `claimed`. At rollover the writer takes it with one atomic exchange, links it after its full
 * segment (pred/succ), stamps its claim order into the header and release-stores `claimed`: the
 * reader ignores a segment until then. Only when no spare is ready does the writer make one
 * itself (counted in sync_rollovers). A spare nobody claimed holds no record: it is deleted when
 * its writer is freed, or, left by a killed process, when the next one adopts it.
 *
 * A full segment, once released, is kept (at most one per writer, for KG_JOURNAL_POOL_IDLE_MS)
 * and becomes the next spare under a new nonce instead of being unlinked while a new file is
 * created, allocated and faulted in: under load that cycle was a fifth of the usage writer's CPU
 * (its pages zeroed and faulted in, its blocks allocated, then truncated away). Every slot of a
 * full segment carries its old nonce, so none reads as committed under the new one.
 */
#include "usage/journal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older headers lack it (older kernels: EINVAL) */
#endif

#define FILE_MAGIC "keygate-journal" /* 15 characters and a NUL: the first 16 bytes of a segment */
#define FILE_VERSION 1
#define SEGMENT_SUFFIX ".kgj"

/* The header slot. record_size stands for the record's layout: a build with another
 * kg_usage_record_t leaves older segments alone rather than misread them. `released` is the
 * reader's last release, kept in the file so a restart does not replay what the store holds. */
typedef struct file_head {
    char magic[16];
    uint32_t version;
    uint32_t slot_size;
    uint32_t slot_count; /* record slots after the header slot */
    uint32_t record_size;
    uint32_t nonce; /* the upper half of every commit word in this file; never 0 */
    uint32_t pid;
    int64_t created_ms;
    _Atomic uint32_t released; /* stored by the reader only */
    uint32_t reserved;         /* zero */
    /* The order in which writers took their segments, so a writer's records are replayed in order
     * even when a spare made earlier is taken after a segment made later (names are creation
     * order). 0: a spare never taken, or a file of a build before spares (replayed first). */
    uint64_t seq;
} file_head_t;

typedef struct slot {
    _Atomic uint64_t commit; /* nonce << 32 | slot index, stored last: 0 (a fresh file) never matches */
    uint64_t check;          /* of the record's bytes, for adoption after a torn write-back */
    kg_usage_record_t record;
} slot_t;

static_assert((KG_JOURNAL_SLOT_SIZE & (KG_JOURNAL_SLOT_SIZE - 1)) == 0, "slot size is a power of two");
static_assert(sizeof(slot_t) <= KG_JOURNAL_SLOT_SIZE, "a record and its slot header fit one slot");
static_assert(sizeof(file_head_t) <= KG_JOURNAL_SLOT_SIZE, "the file header fits one slot");
static_assert(sizeof(kg_usage_record_t) % 8 == 0, "the checksum reads the record in 8-byte words");
static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "commit words live in a shared file: they must be plain memory");
static_assert(KG_JOURNAL_SLOTS > 0 && KG_JOURNAL_SLOTS < UINT32_MAX, "slot indexes are 32 bits");

typedef struct segment {
    struct segment *next; /* in the journal's list, oldest first; under j->lock */
    /* The same writer's segments before and after this one. The reader reads a segment only once
     * `pred` is read to its end (else a writer that rolled over during a read would have its newer
     * records returned before its older ones), and clears `pred` when it frees the predecessor.
     * The writer sets both when it claims the segment, before `claimed` and before it leaves
     * `pred` (so the reader, which looks at them only after an acquire of one of those, sees them). */
    struct segment *pred, *succ;
    char *path;
    uint8_t *map; /* the header slot, then n_slots record slots */
    size_t map_len;
    uint32_t n_slots;
    uint32_t nonce;
    _Atomic uint32_t committed; /* slots published: only the owning writer (or adoption) stores it */
    atomic_bool claimed;        /* a writer's (pred is set) or adopted; false: a spare not yet taken */
    atomic_bool finished;       /* no more appends: `committed` is final */
    _Atomic uint32_t released;  /* the reader's last release; read by kg_journal_backlog */
    uint32_t read;              /* reader only: the next slot to read */
    int64_t pooled_ms;          /* reader only: when it was released into the pool */
    uint32_t reread_to;         /* reader only: slots below it may be in the store already (see kg_journal_replaying) */
} segment_t;

static file_head_t *head_of(const segment_t *s)
{
    return (file_head_t *)s->map;
}

static _Atomic uint32_t *durable_released(const segment_t *s)
{
    return &head_of(s)->released;
}

struct kg_journal {
    char *dir;
    int lock_fd; /* flock'd: a second process would adopt segments still being written */
    pthread_mutex_t lock;
    segment_t *head, *tail;
    kg_journal_writer_t *writers;    /* under lock: those kg_journal_prepare gives spares to */
    _Atomic uint32_t next_name;      /* the counter in new segment names */
    _Atomic uint64_t next_seq;       /* the next claim order (file_head_t.seq), above every adopted one */
    _Atomic uint64_t sync_rollovers; /* rollovers that found no spare and made a segment on the loop */
    bool prepare_failing;            /* reader thread only: the last spare could not be made */
    /* Reader thread only: released full segments kept to be reused as spares, newest first. */
    segment_t *pool;
    size_t n_pool;
};

struct kg_journal_writer {
    kg_journal_t *j;
    kg_journal_writer_t *next_writer; /* in j->writers, under j->lock */
    /* Stored (release) by the preparer only when NULL, exchanged with NULL by the writer only. */
    _Atomic(segment_t *) spare;
    /* Set by the writer when its segment is half full: only then is a spare made for it, so an
     * idle gateway holds no pre-faulted memory it does not use. */
    _Atomic bool wants_spare;
    segment_t *seg;
    uint32_t next;       /* the next slot of seg to fill */
    bool create_failing; /* the last rollover failed: say so once, not per request */
};

/* ==== Slots ==== */

static slot_t *slot_at(const segment_t *s, uint32_t i)
{
    return (slot_t *)(s->map + (size_t)(i + 1) * KG_JOURNAL_SLOT_SIZE);
}

static uint64_t commit_word(uint32_t nonce, uint32_t i)
{
    return ((uint64_t)nonce << 32) | i;
}

/* FNV-1a over 8-byte words, folded so high bits reach low ones; seeded with the slot's commit word
 * so a record copied from elsewhere does not pass. Against torn pages, not adversaries. */
static uint64_t checksum(const kg_usage_record_t *r, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)r;
    uint64_t h = UINT64_C(0xcbf29ce484222325) ^ seed;
    for (size_t i = 0; i < sizeof(*r); i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        h = (h ^ w) * UINT64_C(0x100000001b3);
        h ^= h >> 32;
    }
    return h;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t fresh_nonce(uint32_t salt)
{
    uint32_t n = 0;
    if (getrandom(&n, sizeof(n), GRND_NONBLOCK) != (ssize_t)sizeof(n))
        n = (uint32_t)now_ms() ^ ((uint32_t)getpid() << 16) ^ (salt * 2654435761u);
    return n != 0 ? n : 1;
}

/* ==== Segments ==== */

static void segment_free(segment_t *s, bool unlink_file)
{
    munmap(s->map, s->map_len);
    if (unlink_file && unlink(s->path) != 0 && errno != ENOENT)
        kg_log_warn("usage journal: cannot remove %s: %s", s->path, strerror(errno));
    free(s->path);
    free(s);
}

static void list_append_locked(kg_journal_t *j, segment_t *s)
{
    if (j->tail != NULL)
        j->tail->next = s;
    else
        j->head = s;
    j->tail = s;
}

static void list_append(kg_journal_t *j, segment_t *s)
{
    pthread_mutex_lock(&j->lock);
    list_append_locked(j, s);
    pthread_mutex_unlock(&j->lock);
}

/* Maps the file's pages in writable, so the writer's first store to each does not fault. On a
 * MAP_SHARED file mapping, MAP_POPULATE is not enough: it maps pages read-only and the first store
 * to each still takes a write fault (the file system tracks dirty pages); measured on ext4, one
 * fault (~5 us) per 4 KiB page either way, and none after MADV_POPULATE_WRITE (Linux 5.14), or
 * after a store to each page where that is missing. */
static void prefault(uint8_t *map, size_t len)
{
    if (madvise(map, len, MADV_POPULATE_WRITE) == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    size_t step = page > 0 ? (size_t)page : 4096;
    for (size_t off = 0; off < len; off += step)
        ((volatile uint8_t *)map)[off] = 0; /* the file is still zero */
}

/* A new segment, on disk in full (posix_fallocate: a full disk fails here, not as SIGBUS in a
 * worker's memcpy) and mapped, pre-faulted if asked; not claimed and not in the list yet. */
static segment_t *segment_create(kg_journal_t *j, bool prefaulted, char *err, size_t err_cap)
{
    size_t len = (size_t)(KG_JOURNAL_SLOTS + 1) * KG_JOURNAL_SLOT_SIZE;
    char path[PATH_MAX];
    int64_t created = now_ms();
    uint32_t name = 0;
    int fd = -1, rc;

    /* O_EXCL: a name is never reused, even by a process with our pid in the same millisecond. */
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        name = atomic_fetch_add_explicit(&j->next_name, 1, memory_order_relaxed);
        if (snprintf(path, sizeof(path), "%s/seg-%013lld-%07d-%08u" SEGMENT_SUFFIX, j->dir, (long long)created,
                     (int)getpid(), name) >= (int)sizeof(path)) {
            snprintf(err, err_cap, "%s: path too long", j->dir);
            return NULL;
        }
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    rc = posix_fallocate(fd, 0, (off_t)len);
    void *map = rc == 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (map == MAP_FAILED) {
        snprintf(err, err_cap, "%s: %s", path, strerror(rc != 0 ? rc : errno));
        close(fd);
        unlink(path);
        return NULL;
    }
    close(fd);
    if (prefaulted)
        prefault(map, len);

    segment_t *s = kg_xcalloc(1, sizeof(*s));
    s->path = kg_xstrdup(path);
    s->map = map;
    s->map_len = len;
    s->n_slots = KG_JOURNAL_SLOTS;
    s->nonce = fresh_nonce(name);
    /* The header goes first: a file whose header is still zero holds no record (see adopt). Its
     * seq stays 0 until a writer claims the segment. */
    file_head_t *h = map;
    memcpy(h->magic, FILE_MAGIC, sizeof(h->magic));
    h->version = FILE_VERSION;
    h->slot_size = KG_JOURNAL_SLOT_SIZE;
    h->slot_count = s->n_slots;
    h->record_size = sizeof(kg_usage_record_t);
    h->nonce = s->nonce;
    h->pid = (uint32_t)getpid();
    h->created_ms = created;
    return s;
}

/* Whether s may be reused once drained: every one of its slots was committed under its nonce
 * (so a new nonce leaves none that reads as committed) and it has this build's size. */
static bool reusable(segment_t *s)
{
    return s->n_slots == KG_JOURNAL_SLOTS && s->map_len == (size_t)(KG_JOURNAL_SLOTS + 1) * KG_JOURNAL_SLOT_SIZE &&
           atomic_load_explicit(&s->committed, memory_order_relaxed) == s->n_slots;
}

/* Makes a drained full segment a fresh spare, as segment_create(prefaulted) would: unclaimed,
 * empty, in no list. The new nonce is stored first: from then on no slot reads as committed, so
 * a process killed anywhere in here leaves a file the next one deletes as holding nothing (until
 * the nonce, a file released in full; after it, one with no committed slot). */
static void segment_reuse(segment_t *s)
{
    file_head_t *h = head_of(s);
    uint32_t old = s->nonce;
    do
        s->nonce = fresh_nonce(old);
    while (s->nonce == old);
    h->nonce = s->nonce;
    atomic_signal_fence(memory_order_seq_cst); /* the nonce reaches the page before the rest */
    atomic_store_explicit(durable_released(s), 0, memory_order_relaxed);
    h->seq = 0;
    h->pid = (uint32_t)getpid();
    h->created_ms = now_ms();
    s->next = s->pred = s->succ = NULL;
    atomic_store_explicit(&s->committed, 0, memory_order_relaxed);
    atomic_store_explicit(&s->claimed, false, memory_order_relaxed);
    atomic_store_explicit(&s->finished, false, memory_order_relaxed);
    atomic_store_explicit(&s->released, 0, memory_order_relaxed);
    s->read = s->reread_to = 0;
    /* Its pages are mostly still mapped and dirty (cheap); those written back since take their
     * write fault here rather than on a worker. */
    prefault(s->map, s->map_len);
}

/* ==== The pool of released full segments (reader thread only) ==== */

static void pool_put(kg_journal_t *j, segment_t *s)
{
    s->pooled_ms = monotonic_ms();
    s->next = j->pool;
    j->pool = s;
    j->n_pool++;
}

/* A reused segment, made a fresh spare, or NULL when the pool is empty. */
static segment_t *pool_take(kg_journal_t *j)
{
    segment_t *s = j->pool;
    if (s != NULL) {
        j->pool = s->next;
        j->n_pool--;
        segment_reuse(s);
    }
    return s;
}

/* Unlinks the pooled segments beyond the first `keep` and those idle for KG_JOURNAL_POOL_IDLE_MS:
 * the pool is newest first, so both are its tail. */
static void pool_trim(kg_journal_t *j, size_t keep)
{
    int64_t now = monotonic_ms();
    segment_t **link = &j->pool;
    size_t n = 0;
    while (*link != NULL && n < keep && now - (*link)->pooled_ms < KG_JOURNAL_POOL_IDLE_MS) {
        link = &(*link)->next;
        n++;
    }
    for (segment_t *s = *link, *next; s != NULL; s = next) {
        next = s->next;
        segment_free(s, true);
    }
    *link = NULL;
    j->n_pool = n;
}

/* The writer makes s its next segment (s is not written to yet, and the reader ignores it until
 * `claimed`): s follows the writer's current one, in the claim order. No lock, no syscall. */
static void claim(kg_journal_writer_t *w, segment_t *s)
{
    s->pred = w->seg;
    if (w->seg != NULL)
        w->seg->succ = s; /* before leave_segment(w->seg): see segment_t */
    head_of(s)->seq = atomic_fetch_add_explicit(&w->j->next_seq, 1, memory_order_relaxed);
    atomic_store_explicit(&s->claimed, true, memory_order_release);
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* Adopts one file an earlier process left: its committed slots, in order, up to the first that
 * is not (a write the kill cut short) are replayed, and it takes no more. Anything that is not
 * one of our segments is logged and left where it is; a segment with nothing left to replay (a
 * spare no writer took, or one released in full) is removed. Returns the segment to replay or
 * NULL. */
static segment_t *adopt(kg_journal_t *j, const char *name)
{
    char path[PATH_MAX];
    file_head_t h;
    struct stat st;
    ssize_t got;
    int fd;

    if (snprintf(path, sizeof(path), "%s/%s", j->dir, name) >= (int)sizeof(path))
        return NULL;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        kg_log_warn("usage journal: skipping %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    memset(&h, 0, sizeof(h));
    got = pread(fd, &h, sizeof(h), 0);
    if (got >= 0 && all_zero(&h, sizeof(h))) {
        /* Killed between creating the file and writing its header: it never held a record. */
        close(fd);
        kg_log_debug("usage journal: removing %s, cut off while being created", path);
        unlink(path);
        return NULL;
    }
    if (got != (ssize_t)sizeof(h) || memcmp(h.magic, FILE_MAGIC, sizeof(h.magic)) != 0) {
        close(fd);
        kg_log_warn("usage journal: skipping %s: not a journal segment", path);
        return NULL;
    }
    if (h.version != FILE_VERSION || h.slot_size != KG_JOURNAL_SLOT_SIZE ||
        h.record_size != sizeof(kg_usage_record_t) || h.slot_count == 0 || h.slot_count >= UINT32_MAX || h.nonce == 0) {
        close(fd);
        kg_log_warn("usage journal: skipping %s: version %u, slot size %u, record size %u (this build: %u, %u, %zu)",
                    path, h.version, h.slot_size, h.record_size, FILE_VERSION, KG_JOURNAL_SLOT_SIZE,
                    sizeof(kg_usage_record_t));
        return NULL;
    }
    size_t len = ((size_t)h.slot_count + 1) * KG_JOURNAL_SLOT_SIZE;
    if ((uint64_t)st.st_size != len) {
        close(fd);
        kg_log_warn("usage journal: skipping %s: %lld bytes, its header says %zu", path, (long long)st.st_size, len);
        return NULL;
    }
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        kg_log_warn("usage journal: skipping %s: %s", path, strerror(errno));
        return NULL;
    }

    segment_t *s = kg_xcalloc(1, sizeof(*s));
    s->path = kg_xstrdup(path);
    s->map = map;
    s->map_len = len;
    s->n_slots = h.slot_count;
    s->nonce = h.nonce;
    uint32_t n = 0;
    for (; n < s->n_slots; n++) {
        const slot_t *slot = slot_at(s, n);
        uint64_t word = commit_word(s->nonce, n);
        if (atomic_load_explicit(&slot->commit, memory_order_acquire) != word)
            break;
        if (slot->check != checksum(&slot->record, word)) {
            kg_log_warn("usage journal: %s: slot %u is torn, replaying the %u before it", path, n, n);
            break;
        }
    }
    /* A release beyond the committed slots is a torn header: replay rather than lose. */
    uint32_t released = atomic_load_explicit(durable_released(s), memory_order_relaxed);
    s->read = released <= n ? released : 0;
    atomic_store_explicit(&s->released, s->read, memory_order_relaxed);
    atomic_store_explicit(&s->committed, n, memory_order_relaxed);
    atomic_store_explicit(&s->claimed, true, memory_order_relaxed);
    atomic_store_explicit(&s->finished, true, memory_order_relaxed);
    s->reread_to = n; /* the earlier process may have stored any of them before it stopped */
    if (n == s->read) {
        kg_log_debug("usage journal: removing %s, nothing to replay", path);
        segment_free(s, true);
        return NULL;
    }
    return s;
}

/* Claim order, then name (creation order: files of a build before spares all have seq 0). */
static int compare_adopted(const void *a, const void *b)
{
    const segment_t *x = *(segment_t *const *)a, *y = *(segment_t *const *)b;
    uint64_t sx = head_of(x)->seq, sy = head_of(y)->seq;
    if (sx != sy)
        return sx < sy ? -1 : 1;
    return strcmp(x->path, y->path);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Adopts the directory's segments oldest first: names begin with their creation time. */
static bool adopt_all(kg_journal_t *j, char *err, size_t err_cap)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, segments = 0;
    uint64_t records = 0, max_seq = 0;

    if (d == NULL) {
        snprintf(err, err_cap, "%s: %s", j->dir, strerror(errno));
        return false;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, SEGMENT_SUFFIX))
            continue;
        if (n == cap) {
            size_t grown = cap != 0 ? cap * 2 : 16;
            char **more = kg_xcalloc(grown, sizeof(*more));
            if (n != 0)
                memcpy(more, names, n * sizeof(*names));
            free(names);
            names = more;
            cap = grown;
        }
        names[n++] = kg_xstrdup(e->d_name);
    }
    closedir(d);
    segment_t **adopted = n != 0 ? kg_xcalloc(n, sizeof(*adopted)) : NULL;
    for (size_t i = 0; i < n; i++) {
        segment_t *s = adopt(j, names[i]);
        free(names[i]);
        if (s != NULL)
            adopted[segments++] = s;
    }
    if (segments != 0)
        qsort(adopted, segments, sizeof(*adopted), compare_adopted);
    for (size_t i = 0; i < segments; i++) {
        segment_t *s = adopted[i];
        records += atomic_load_explicit(&s->committed, memory_order_relaxed) - s->read;
        if (head_of(s)->seq > max_seq)
            max_seq = head_of(s)->seq;
        list_append(j, s);
    }
    atomic_store_explicit(&j->next_seq, max_seq + 1, memory_order_relaxed);
    free(adopted);
    free(names);
    if (segments != 0)
        kg_log_info("usage journal: %llu records to replay from %zu segments in %s", (unsigned long long)records,
                    segments, j->dir);
    return true;
}

/* ==== The journal ==== */

/* mkdir -p: each missing component is made with mode 0700 (usage names orgs and models). */
static bool make_dirs(const char *dir, char *err, size_t err_cap)
{
    char *p = kg_xstrdup(dir);
    struct stat st;
    bool ok = true;

    for (char *c = p + 1; ok && *p != '\0'; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            snprintf(err, err_cap, "%s: %s", p, strerror(errno));
            ok = false;
        }
        *c = saved;
        if (saved == '\0')
            break;
    }
    if (ok && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, err_cap, "%s: %s", dir, *dir == '\0' ? "empty path" : "not a directory");
        ok = false;
    }
    free(p);
    return ok;
}

kg_journal_t *kg_journal_open(const char *dir, char *err, size_t err_cap)
{
    char path[PATH_MAX];

    if (!make_dirs(dir, err, err_cap))
        return NULL;
    if (snprintf(path, sizeof(path), "%s/lock", dir) >= (int)sizeof(path)) {
        snprintf(err, err_cap, "%s: path too long", dir);
        return NULL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, err_cap, "%s: %s", dir,
                 errno == EWOULDBLOCK ? "another process is using this usage journal" : strerror(errno));
        close(fd);
        return NULL;
    }

    kg_journal_t *j = kg_xcalloc(1, sizeof(*j));
    j->dir = kg_xstrdup(dir);
    j->lock_fd = fd;
    pthread_mutex_init(&j->lock, NULL);
    if (!adopt_all(j, err, err_cap)) {
        kg_journal_close(j);
        return NULL;
    }
    return j;
}

void kg_journal_close(kg_journal_t *j)
{
    if (j == NULL)
        return;
    pool_trim(j, 0);
    for (segment_t *s = j->head, *next; s != NULL; s = next) {
        next = s->next;
        bool drained = atomic_load_explicit(&s->finished, memory_order_acquire) &&
                       atomic_load_explicit(&s->released, memory_order_relaxed) ==
                           atomic_load_explicit(&s->committed, memory_order_relaxed);
        segment_free(s, drained);
    }
    pthread_mutex_destroy(&j->lock);
    close(j->lock_fd); /* and with it the flock */
    free(j->dir);
    free(j);
}

/* ==== Writers ==== */

kg_journal_writer_t *kg_journal_writer_new(kg_journal_t *j)
{
    char err[PATH_MAX + 128];
    /* Not pre-faulted: an idle worker should not hold 8 MiB. Its first records fault their
     * pages in as they come (one fault per eight records, once); spares come pre-faulted. */
    segment_t *s = segment_create(j, false, err, sizeof(err));
    if (s == NULL) {
        kg_log_error("usage journal: cannot create a segment: %s", err);
        return NULL;
    }
    kg_journal_writer_t *w = kg_xcalloc(1, sizeof(*w));
    w->j = j;
    claim(w, s);
    w->seg = s;
    pthread_mutex_lock(&j->lock);
    list_append_locked(j, s);
    w->next_writer = j->writers;
    j->writers = w;
    pthread_mutex_unlock(&j->lock);
    return w;
}

/* After this store the reader may unlink and free s at any moment: the writer must not touch it. */
static void leave_segment(segment_t *s)
{
    atomic_store_explicit(&s->finished, true, memory_order_release);
}

void kg_journal_writer_free(kg_journal_writer_t *w)
{
    if (w == NULL)
        return;
    kg_journal_t *j = w->j;
    pthread_mutex_lock(&j->lock);
    for (kg_journal_writer_t **link = &j->writers; *link != NULL; link = &(*link)->next_writer)
        if (*link == w) {
            *link = w->next_writer;
            break;
        }
    pthread_mutex_unlock(&j->lock);
    /* No spare can come now: an unused one is finished empty, so the next release (or the
     * close) deletes it. */
    segment_t *spare = atomic_exchange_explicit(&w->spare, NULL, memory_order_acquire);
    if (spare != NULL)
        leave_segment(spare);
    leave_segment(w->seg);
    free(w);
}

/* The spare if the reader thread has made one (the usual case: no syscall, no lock), else a new
 * segment made here, on the loop, not pre-faulted (its page faults spread over its appends
 * rather than all land on one request). */
static bool roll_over(kg_journal_writer_t *w)
{
    segment_t *fresh = atomic_exchange_explicit(&w->spare, NULL, memory_order_acquire);
    if (fresh != NULL) {
        claim(w, fresh); /* it is in the list already */
    } else {
        char err[PATH_MAX + 128];
        fresh = segment_create(w->j, false, err, sizeof(err));
        if (fresh == NULL) {
            if (!w->create_failing)
                kg_log_error("usage journal: cannot create a segment, usage is being dropped: %s", err);
            w->create_failing = true;
            return false;
        }
        atomic_fetch_add_explicit(&w->j->sync_rollovers, 1, memory_order_relaxed);
        claim(w, fresh);
        list_append(w->j, fresh);
    }
    if (w->create_failing)
        kg_log_info("usage journal: segments can be created again");
    w->create_failing = false;
    leave_segment(w->seg);
    w->seg = fresh;
    w->next = 0;
    return true;
}

bool kg_journal_append(kg_journal_writer_t *w, const kg_usage_record_t *r)
{
    if (w->next == w->seg->n_slots && !roll_over(w))
        return false;
    segment_t *s = w->seg;
    slot_t *slot = slot_at(s, w->next);
    uint64_t word = commit_word(s->nonce, w->next);
    memcpy(&slot->record, r, sizeof(*r));
    slot->check = checksum(&slot->record, word);
    /* The commit word last: whoever sees it (acquire) sees the record whole. */
    atomic_store_explicit(&slot->commit, word, memory_order_release);
    w->next++;
    atomic_store_explicit(&s->committed, w->next, memory_order_relaxed);
    if (w->next == s->n_slots / 2)
        atomic_store_explicit(&w->wants_spare, true, memory_order_relaxed);
    return true;
}

uint64_t kg_journal_sync_rollovers(kg_journal_t *j)
{
    return atomic_load_explicit(&j->sync_rollovers, memory_order_relaxed);
}

/* ==== Spares ==== */

static size_t writers_without_spare(kg_journal_t *j)
{
    size_t n = 0;
    pthread_mutex_lock(&j->lock);
    for (kg_journal_writer_t *w = j->writers; w != NULL; w = w->next_writer)
        n += atomic_load_explicit(&w->spare, memory_order_relaxed) == NULL &&
             atomic_load_explicit(&w->wants_spare, memory_order_relaxed);
    pthread_mutex_unlock(&j->lock);
    return n;
}

/* Hands s to a writer that has no spare (false: none has, any more). Under the lock, a writer is
 * not being freed; only this thread stores a spare, so one seen NULL stays NULL until the store. */
static bool give_spare(kg_journal_t *j, segment_t *s)
{
    pthread_mutex_lock(&j->lock);
    kg_journal_writer_t *w = j->writers;
    while (w != NULL && (atomic_load_explicit(&w->spare, memory_order_relaxed) != NULL ||
                         !atomic_load_explicit(&w->wants_spare, memory_order_relaxed)))
        w = w->next_writer;
    if (w != NULL) {
        atomic_store_explicit(&w->wants_spare, false, memory_order_relaxed);
        list_append_locked(j, s); /* unclaimed: the reader passes it by, the release keeps it */
        atomic_store_explicit(&w->spare, s, memory_order_release);
    }
    pthread_mutex_unlock(&j->lock);
    return w != NULL;
}

void kg_journal_prepare(kg_journal_t *j)
{
    /* At most one segment per writer that needed one on entry: a writer that has already used
     * the spare it was just given waits for the next call rather than keep this one here. */
    pool_trim(j, j->n_pool); /* what has idled too long */
    for (size_t n = writers_without_spare(j); n > 0; n--) {
        char err[PATH_MAX + 128];
        segment_t *s = pool_take(j);
        if (s == NULL)
            s = segment_create(j, true, err, sizeof(err)); /* the lock is not held: ~10 ms */
        if (s == NULL) {
            if (!j->prepare_failing)
                kg_log_error("usage journal: cannot prepare a segment: %s", err);
            j->prepare_failing = true;
            return;
        }
        j->prepare_failing = false;
        if (!give_spare(j, s)) { /* its writer was freed meanwhile */
            segment_free(s, true);
            return;
        }
    }
}

/* ==== The reader ==== */

/* The reader walks the list holding the mutex only to follow a link: only it frees segments, so
 * the one it holds stays valid, and writers that roll over wait for a pointer copy, not a batch. */
static segment_t *first_segment(kg_journal_t *j)
{
    pthread_mutex_lock(&j->lock);
    segment_t *s = j->head;
    pthread_mutex_unlock(&j->lock);
    return s;
}

static segment_t *next_segment(kg_journal_t *j, segment_t *s)
{
    pthread_mutex_lock(&j->lock);
    segment_t *next = s->next;
    pthread_mutex_unlock(&j->lock);
    return next;
}

/* Whether the reader has read all of s there will ever be. */
static bool read_to_end(const segment_t *s)
{
    return atomic_load_explicit(&s->finished, memory_order_acquire) &&
           s->read == atomic_load_explicit(&s->committed, memory_order_relaxed);
}

static size_t read_segment(segment_t *s, kg_usage_record_t *out, size_t cap)
{
    /* `finished` before the slots: if it is set, every commit of the segment is visible below. */
    bool finished = atomic_load_explicit(&s->finished, memory_order_acquire);
    uint32_t end = finished ? atomic_load_explicit(&s->committed, memory_order_relaxed) : s->n_slots;
    size_t n = 0;

    while (n < cap && s->read < end) {
        const slot_t *slot = slot_at(s, s->read);
        if (atomic_load_explicit(&slot->commit, memory_order_acquire) != commit_word(s->nonce, s->read))
            break; /* the writer has not got this far yet */
        memcpy(&out[n++], &slot->record, sizeof(*out));
        s->read++;
    }
    return n;
}

size_t kg_journal_read(kg_journal_t *j, kg_usage_record_t *out, size_t cap)
{
    size_t n = 0;
    for (segment_t *s = first_segment(j); s != NULL && n < cap; s = next_segment(j, s))
        if (atomic_load_explicit(&s->claimed, memory_order_acquire) && (s->pred == NULL || read_to_end(s->pred)))
            n += read_segment(s, out + n, cap - n);
    return n;
}

bool kg_journal_replaying(kg_journal_t *j)
{
    for (segment_t *s = first_segment(j); s != NULL; s = next_segment(j, s))
        if (s->read < s->reread_to)
            return true;
    return false;
}

void kg_journal_release(kg_journal_t *j)
{
    segment_t *drained = NULL, *prev = NULL;
    size_t writers = 0;

    pthread_mutex_lock(&j->lock);
    for (const kg_journal_writer_t *w = j->writers; w != NULL; w = w->next_writer)
        writers++;
    for (segment_t **link = &j->head, *s; (s = *link) != NULL;) {
        atomic_store_explicit(&s->released, s->read, memory_order_relaxed);
        atomic_store_explicit(durable_released(s), s->read, memory_order_relaxed);
        if (read_to_end(s)) {
            *link = s->next;
            if (s->succ != NULL)
                s->succ->pred = NULL;
            if (s->pred != NULL) /* an empty segment of a writer freed right after it rolled over */
                s->pred->succ = NULL;
            if (j->tail == s)
                j->tail = prev;
            s->next = drained;
            drained = s;
        } else {
            prev = s;
            link = &s->next;
        }
    }
    pthread_mutex_unlock(&j->lock);
    /* munmap and unlink outside the lock: no writer waits on the file system for us. */
    for (segment_t *s = drained, *next; s != NULL; s = next) {
        next = s->next;
        if (reusable(s) && j->n_pool < writers)
            pool_put(j, s);
        else
            segment_free(s, true);
    }
    pool_trim(j, writers); /* writers that left take their share of the pool with them */
}

void kg_journal_rewind(kg_journal_t *j)
{
    pthread_mutex_lock(&j->lock);
    for (segment_t *s = j->head; s != NULL; s = s->next) {
        s->reread_to = s->read > s->reread_to ? s->read : s->reread_to; /* a failed write may yet have landed */
        s->read = atomic_load_explicit(&s->released, memory_order_relaxed);
    }
    pthread_mutex_unlock(&j->lock);
}

uint64_t kg_journal_backlog(kg_journal_t *j)
{
    uint64_t n = 0;
    pthread_mutex_lock(&j->lock);
    for (const segment_t *s = j->head; s != NULL; s = s->next) {
        /* Two relaxed loads from another thread: `committed` may lag what the reader released. */
        uint32_t c = atomic_load_explicit(&s->committed, memory_order_relaxed);
        uint32_t r = atomic_load_explicit(&s->released, memory_order_relaxed);
        n += c > r ? c - r : 0;
    }
    pthread_mutex_unlock(&j->lock);
    return n;
}
