/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of the usage journal (usage/journal.h): records come back whole and in order, segments
 * roll over and are unlinked once released, a rewind replays, files that are not segments or
 * slots that are torn are skipped, a process killed with SIGKILL (at a fixed or a random moment)
 * loses no record it had appended and replays none twice, and a reader keeps up with a writer
 * thread without locks between them. Spare segments: a preparer thread keeps writers from making
 * segments themselves and from faulting on their pages, unused spares leave no file behind, and a
 * replay follows the order in which writers took their segments, not their names.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "usage/journal.h"
#include "../test.h"

/* Record i of a run: every field derived from i, padding zeroed, so memcmp compares records. */
static void make_record(kg_usage_record_t *r, long i)
{
    memset(r, 0, sizeof(*r));
    r->at_ms = 1700000000000 + i;
    snprintf(r->request_id, sizeof(r->request_id), "req-%010ld", i);
    snprintf(r->key_id, sizeof(r->key_id), "sk_%024ld", i % 7);
    snprintf(r->org_id, sizeof(r->org_id), "org-%ld", i % 3);
    snprintf(r->team_id, sizeof(r->team_id), "%s", i % 2 ? "team-a" : "");
    snprintf(r->model, sizeof(r->model), "model-%ld", i % 5);
    snprintf(r->upstream_model, sizeof(r->upstream_model), "upstream-%ld", i % 5);
    r->route = (int32_t)(i % 3 + 1);
    r->status = i % 11 ? 200 : 429;
    r->input_tokens = i * 3;
    r->output_tokens = i * 5 + 1;
    r->cost_micro = i * 7;
    r->latency_us = i + 100;
    r->upstream_latency_us = i + 50;
    r->stream = i % 2;
    r->estimated = i % 13 == 0;
}

static bool is_record(const kg_usage_record_t *got, long i)
{
    kg_usage_record_t want;
    make_record(&want, i);
    return memcmp(got, &want, sizeof(want)) == 0;
}

static size_t append_range(kg_journal_writer_t *w, long from, long to)
{
    size_t failed = 0;
    for (long i = from; i < to; i++) {
        kg_usage_record_t r;
        make_record(&r, i);
        failed += !kg_journal_append(w, &r);
    }
    return failed;
}

/* Reads everything there is, checking it is records first, first + 1, ...; returns how many. */
static long read_all(kg_journal_t *j, long first, long *mismatches)
{
    static kg_usage_record_t buf[1000];
    long n = 0;
    size_t got;
    while ((got = kg_journal_read(j, buf, sizeof(buf) / sizeof(buf[0]))) != 0)
        for (size_t k = 0; k < got; k++, n++)
            if (!is_record(&buf[k], first + n))
                (*mismatches)++;
    return n;
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".kgj") == 0;
    }
    closedir(d);
    return n;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static kg_journal_t *open_journal(const char *dir)
{
    char err[256] = "";
    kg_journal_t *j = kg_journal_open(dir, err, sizeof(err));
    if (j == NULL)
        fprintf(stderr, "    kg_journal_open(%s): %s\n", dir, err);
    return j;
}

/*
 * What a restarted process finds in `dir`: `segments` segment files (-1: not checked), then
 * records 0 .. n-1, each once and in order; released, nothing is left.
 */
static void replay_restarted(const char *dir, int segments, long n)
{
    kg_journal_t *j = open_journal(dir);
    CHECK(j != NULL);
    if (j == NULL)
        return;
    if (segments >= 0)
        CHECK_INT(count_segments(dir), segments);
    CHECK_INT(kg_journal_backlog(j), n);
    long bad = 0;
    CHECK_INT(read_all(j, 0, &bad), n);
    CHECK_INT(bad, 0);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 0);
    kg_journal_close(j);
}

void test_journal_append_read_release(void)
{
    char tmp[64], dir[128];
    snprintf(dir, sizeof(dir), "%s/usage/journal", kg_test_tmpdir(tmp, sizeof(tmp))); /* made with its parent */
    kg_journal_t *j = open_journal(dir);
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    CHECK(w != NULL);
    CHECK_INT(kg_journal_backlog(j), 0);

    CHECK_INT(append_range(w, 0, 100), 0);
    CHECK_INT(kg_journal_backlog(j), 100);
    kg_usage_record_t out[300];
    CHECK_INT(kg_journal_read(j, out, 40), 40);
    CHECK_INT(kg_journal_read(j, out + 40, 300), 60);
    long bad = 0;
    for (long i = 0; i < 100; i++)
        bad += !is_record(&out[i], i);
    CHECK_INT(bad, 0);
    CHECK_STR(out[99].request_id, "req-0000000099");
    CHECK_INT(kg_journal_read(j, out, 300), 0);
    CHECK_INT(kg_journal_backlog(j), 100); /* read is not released */
    kg_journal_release(j);
    CHECK_INT(kg_journal_backlog(j), 0);
    CHECK_INT(kg_journal_read(j, out, 300), 0);
    CHECK_INT(count_segments(dir), 1); /* the writer's current segment stays */

    /* Read but not released when the process stops: the next one replays exactly those. */
    CHECK_INT(append_range(w, 100, 110), 0);
    CHECK_INT(kg_journal_read(j, out, 3), 3);
    kg_journal_writer_free(w);
    kg_journal_close(j);
    j = open_journal(dir);
    CHECK(j != NULL);
    if (j == NULL)
        return;
    CHECK_INT(kg_journal_backlog(j), 10);
    bad = 0;
    CHECK_INT(read_all(j, 100, &bad), 10);
    CHECK_INT(bad, 0);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 0); /* adopted and drained */
    kg_journal_close(j);
    remove_dir(dir);
    snprintf(dir, sizeof(dir), "%s/usage", tmp);
    remove_dir(dir);
    remove_dir(tmp);
}

void test_journal_rollover(void)
{
    char dir[64];
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    const long n = KG_JOURNAL_SLOTS + 10;

    CHECK_INT(append_range(w, 0, n), 0);
    CHECK_INT(count_segments(dir), 2);
    CHECK_INT(kg_journal_sync_rollovers(j), 1); /* no kg_journal_prepare: the writer made it */
    CHECK_INT(kg_journal_backlog(j), n);
    long bad = 0;
    CHECK_INT(read_all(j, 0, &bad), n);
    CHECK_INT(bad, 0);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 2); /* the current one, and the full one kept for reuse */
    CHECK_INT(kg_journal_backlog(j), 0);

    /* More after the release, then the writer leaves: its segment goes once drained, and the kept
     * one with it (no writer is left to need a spare). */
    CHECK_INT(append_range(w, n, n + 5), 0);
    kg_journal_writer_free(w);
    bad = 0;
    CHECK_INT(read_all(j, n, &bad), 5);
    CHECK_INT(bad, 0);
    CHECK_INT(count_segments(dir), 2);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 0);
    kg_journal_close(j);
    remove_dir(dir);
}

void test_journal_rewind(void)
{
    char dir[64];
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    static kg_usage_record_t first[KG_JOURNAL_SLOTS + 100], again[KG_JOURNAL_SLOTS + 100];

    CHECK_INT(append_range(w, 0, 20), 0);
    CHECK_INT(kg_journal_read(j, first, 20), 20);
    kg_journal_release(j);
    /* Across a rollover: the full segment must not go before the release. */
    CHECK_INT(append_range(w, 20, KG_JOURNAL_SLOTS + 50), 0);
    CHECK(!kg_journal_replaying(j)); /* nothing read twice so far */
    size_t n = kg_journal_read(j, first, KG_JOURNAL_SLOTS + 100);
    CHECK_INT(n, KG_JOURNAL_SLOTS + 30);
    kg_journal_rewind(j);
    CHECK_INT(kg_journal_backlog(j), KG_JOURNAL_SLOTS + 30);
    /* What is read again may be stored already (the failed write may have landed), up to where
     * the first read had got, and no further. */
    CHECK_INT(append_range(w, KG_JOURNAL_SLOTS + 50, KG_JOURNAL_SLOTS + 60), 0);
    CHECK(kg_journal_replaying(j));
    CHECK_INT(kg_journal_read(j, again, KG_JOURNAL_SLOTS + 10), KG_JOURNAL_SLOTS + 10);
    CHECK(kg_journal_replaying(j));
    CHECK_INT(kg_journal_read(j, again + KG_JOURNAL_SLOTS + 10, 20), 20);
    CHECK(!kg_journal_replaying(j));
    CHECK_INT(kg_journal_read(j, again + n, 10), 10); /* the new ones */
    kg_journal_rewind(j);
    CHECK_INT(kg_journal_read(j, again, KG_JOURNAL_SLOTS + 100), n + 10);
    CHECK(memcmp(first, again, n * sizeof(first[0])) == 0);
    CHECK(is_record(&again[0], 20));
    CHECK(is_record(&again[n - 1], KG_JOURNAL_SLOTS + 49));
    /* A rewind with nothing read since the release is a no-op. */
    kg_journal_release(j);
    CHECK(!kg_journal_replaying(j));
    kg_journal_rewind(j);
    CHECK(!kg_journal_replaying(j));
    CHECK_INT(kg_journal_read(j, again, 10), 0);
    CHECK_INT(kg_journal_backlog(j), 0);
    kg_journal_writer_free(w);
    kg_journal_close(j);
    remove_dir(dir);
}

void test_journal_skips_foreign_and_torn(void)
{
    char dir[64], path[512];
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    CHECK_INT(append_range(w, 0, 10), 0);
    kg_journal_writer_free(w);
    kg_journal_close(j);

    /* Flip a byte of slot 5's record, as a torn write-back would. */
    DIR *d = opendir(dir);
    struct dirent *e;
    int fd = -1;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "seg-", 4) == 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            fd = open(path, O_RDWR);
        }
    if (d != NULL)
        closedir(d);
    CHECK(fd >= 0);
    char c = 'X';
    CHECK_INT(pwrite(fd, &c, 1, (off_t)(5 + 1) * KG_JOURNAL_SLOT_SIZE + 16 + 10), 1);
    close(fd);
    /* A file that is not a segment, and one cut off before its header was written. */
    snprintf(path, sizeof(path), "%s/notes.kgj", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    CHECK_INT(write(fd, "not a journal segment, just some text", 37), 37);
    close(fd);
    snprintf(path, sizeof(path), "%s/seg-0000000000001-0000001-00000000.kgj", dir);
    close(open(path, O_WRONLY | O_CREAT, 0600));
    CHECK_INT(count_segments(dir), 3);

    j = open_journal(dir);
    CHECK(j != NULL);
    if (j == NULL)
        return;
    long bad = 0;
    CHECK_INT(read_all(j, 0, &bad), 5);
    CHECK_INT(bad, 0);
    CHECK_INT(count_segments(dir), 2); /* the empty one is removed, the foreign one left */
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 1);
    /* A second process may not use the directory while this one does. */
    char err[256] = "";
    CHECK(kg_journal_open(dir, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "another process") != NULL);
    kg_journal_close(j);
    remove_dir(dir);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

static void *child_preparer(void *arg)
{
    for (;;) {
        kg_journal_prepare(arg);
        sleep_ms(1);
    }
    return NULL;
}

/* The child of the crash tests: appends records 0 .. limit-1, publishing in *done how many
 * kg_journal_append has returned for, then is killed (by itself or by the parent); with
 * `prepare`, a thread makes spare segments meanwhile, as the usage writer does. */
static void child_append(const char *dir, long limit, _Atomic long *done, bool kill_self, bool prepare)
{
    char err[256];
    pthread_t t;
    kg_journal_t *j = kg_journal_open(dir, err, sizeof(err));
    kg_journal_writer_t *w = j != NULL ? kg_journal_writer_new(j) : NULL;
    if (w == NULL)
        _exit(3);
    if (prepare && pthread_create(&t, NULL, child_preparer, j) != 0)
        _exit(5);
    for (long i = 0; i < limit; i++) {
        kg_usage_record_t r;
        make_record(&r, i);
        if (!kg_journal_append(w, &r))
            _exit(4);
        if (done != NULL)
            atomic_store_explicit(done, i + 1, memory_order_release);
    }
    if (kill_self)
        raise(SIGKILL);
    for (;;)
        pause();
}

static void check_replay(const char *dir, long at_least, long at_most)
{
    kg_journal_t *j = open_journal(dir);
    CHECK(j != NULL);
    if (j == NULL)
        return;
    uint64_t backlog = kg_journal_backlog(j);
    long bad = 0, n = read_all(j, 0, &bad);
    CHECK(n >= at_least && n <= at_most);
    if (n < at_least || n > at_most)
        fprintf(stderr, "    replayed %ld records, expected %ld..%ld\n", n, at_least, at_most);
    CHECK_INT(backlog, n);
    CHECK_INT(bad, 0);
    kg_journal_release(j);
    CHECK_INT(kg_journal_backlog(j), 0);
    CHECK_INT(count_segments(dir), 0);
    kg_journal_close(j);
}

void test_journal_survives_sigkill(void)
{
    char dir[64];
    int status = 0;

    /* Killed by itself after 10000 appends. */
    kg_test_tmpdir(dir, sizeof(dir));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child_append(dir, 10000, NULL, true, false);
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    check_replay(dir, 10000, 10000);
    remove_dir(dir);

    /* Killed by the parent at a random moment while appending in a loop. */
    _Atomic long *done = mmap(NULL, sizeof(*done), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(done != MAP_FAILED);
    if (done == MAP_FAILED)
        return;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < 8; round++) { /* rounds 4..7 with spares being made */
        long target = 1 + rand() % (3 * KG_JOURNAL_SLOTS);
        atomic_store(done, 0);
        kg_test_tmpdir(dir, sizeof(dir));
        fflush(NULL);
        pid = fork();
        if (pid == 0)
            child_append(dir, 12 * KG_JOURNAL_SLOTS, done, false, round >= 4);
        CHECK(pid > 0);
        while (atomic_load_explicit(done, memory_order_acquire) < target && waitpid(pid, &status, WNOHANG) == 0)
            ;
        if (round % 2)
            usleep((useconds_t)(rand() % 500));
        kill(pid, SIGKILL);
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        long n = atomic_load_explicit(done, memory_order_acquire);
        CHECK(n >= target);
        /* Every append that returned, and at most the one the kill interrupted. */
        check_replay(dir, n, n + 1);
        remove_dir(dir);
    }
    munmap((void *)done, sizeof(*done));
}

#define CONCURRENT_RECORDS 50000
#define CONCURRENT_ROUNDS 4 /* a rollover during a read is a narrow window: give it many chances */

typedef struct writer_arg {
    kg_journal_writer_t *w;
    long first;
} writer_arg_t;

static void *writer_thread(void *arg)
{
    writer_arg_t *a = arg;
    return (void *)(uintptr_t)append_range(a->w, a->first, a->first + CONCURRENT_RECORDS);
}

void test_journal_concurrent_reader(void)
{
    char dir[64];
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    static kg_usage_record_t buf[256];
    long next = 0, bad = 0, reads = 0;

    for (int round = 0; round < CONCURRENT_ROUNDS && bad == 0; round++) {
        writer_arg_t a = {kg_journal_writer_new(j), next};
        pthread_t t;
        void *failed = NULL;
        CHECK(pthread_create(&t, NULL, writer_thread, &a) == 0);
        while (next < a.first + CONCURRENT_RECORDS && bad == 0) {
            size_t got = kg_journal_read(j, buf, sizeof(buf) / sizeof(buf[0]));
            for (size_t k = 0; k < got; k++)
                bad += !is_record(&buf[k], next++);
            if (++reads % 3 == 0)
                kg_journal_release(j); /* unlinks full segments while the writer rolls over */
        }
        pthread_join(t, &failed);
        CHECK(failed == NULL);
        CHECK_INT(kg_journal_read(j, buf, 256), 0);
        kg_journal_release(j);
        CHECK_INT(kg_journal_backlog(j), 0);
        CHECK_INT(count_segments(dir), 2); /* the writer's segment and a full one kept for reuse */
        kg_journal_writer_free(a.w);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(next, CONCURRENT_ROUNDS * CONCURRENT_RECORDS);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 0);
    kg_journal_close(j);
    remove_dir(dir);
}

/* ==== Spare segments ==== */

#define PREP_WRITERS 2
/* Appends per second per writer: half the rate journal.h sizes segments for (a segment lasts
 * 328 ms), so the test holds on a loaded machine (measured: two ASan and two plain runs at once on
 * two CPUs made the preparer late now and then at 100,000/s). */
#define PREP_RATE 50000L
#define PREP_RECORDS (3L * KG_JOURNAL_SLOTS + 99) /* per writer: three rollovers */
#define PREP_BASE 10000000L                       /* writer k appends records k * PREP_BASE + i */

/* ThreadSanitizer's shadow memory (written on every mmap, faulted in on every first access) makes
 * the faults and the preparer's pace its own: there, only the order of the records is checked. */
#if defined(__SANITIZE_THREAD__)
#define PREP_TIMING 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PREP_TIMING 0
#endif
#endif
#ifndef PREP_TIMING
#define PREP_TIMING 1
#endif

typedef struct prep_ctx {
    kg_journal_t *j;
    atomic_bool stop;
    long next[PREP_WRITERS]; /* the record each writer's next one must be */
    long bad;
    kg_usage_record_t buf[256];
} prep_ctx_t;

/* Reads a batch, checking each writer's records come in order, once each; then releases. Returns
 * whether the batch was full (more may be waiting). */
static bool batch_checking(prep_ctx_t *c)
{
    size_t got = kg_journal_read(c->j, c->buf, sizeof(c->buf) / sizeof(c->buf[0]));
    for (size_t k = 0; k < got; k++) {
        long i = strtol(c->buf[k].request_id + 4, NULL, 10), wi = i / PREP_BASE;
        if (wi < 0 || wi >= PREP_WRITERS || i != c->next[wi] || !is_record(&c->buf[k], i)) {
            c->bad++;
            if (c->bad < 5)
                fprintf(stderr, "    got record %ld out of order\n", i);
        }
        if (wi >= 0 && wi < PREP_WRITERS)
            c->next[wi] = i + 1;
    }
    kg_journal_release(c->j);
    return got == sizeof(c->buf) / sizeof(c->buf[0]);
}

/* The usage writer's loop (writer_main), every 5 ms rather than 50: spares before each batch, so
 * a reader that falls behind (this one checks every record) still makes them. */
static void *preparer_reader(void *arg)
{
    prep_ctx_t *c = arg;
    while (!atomic_load(&c->stop)) {
        do
            kg_journal_prepare(c->j);
        while (batch_checking(c));
        sleep_ms(5);
    }
    return NULL;
}

static void drain_checking(prep_ctx_t *c)
{
    while (batch_checking(c))
        ;
}

static long thread_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

typedef struct paced_arg {
    kg_journal_writer_t *w;
    long first;
    size_t failed;
    long faults; /* page faults of the writer thread while it appended */
} paced_arg_t;

/* A worker appending PREP_RATE records a second, evenly. */
static void *paced_writer(void *arg)
{
    paced_arg_t *a = arg;
    struct timespec start, at;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long faults = thread_faults();
    for (long i = 0; i < PREP_RECORDS; i++) {
        if (i % 256 == 0) {
            long ns = (long)((double)i * 1e9 / PREP_RATE) + start.tv_nsec;
            at.tv_sec = start.tv_sec + ns / 1000000000L;
            at.tv_nsec = ns % 1000000000L;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        }
        kg_usage_record_t r;
        make_record(&r, a->first + i);
        a->failed += !kg_journal_append(a->w, &r);
    }
    a->faults = thread_faults() - faults;
    return NULL;
}

void test_journal_prepare_keeps_rollovers_off_the_writer(void)
{
    char dir[64];
    static prep_ctx_t c;
    paced_arg_t a[PREP_WRITERS];
    pthread_t writers[PREP_WRITERS], reader;

    memset(&c, 0, sizeof(c));
    c.j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(c.j != NULL);
    if (c.j == NULL)
        return;
    for (int k = 0; k < PREP_WRITERS; k++) {
        a[k] = (paced_arg_t){kg_journal_writer_new(c.j), k * PREP_BASE, 0, 0};
        c.next[k] = a[k].first;
    }
    CHECK(pthread_create(&reader, NULL, preparer_reader, &c) == 0);
    for (int k = 0; k < PREP_WRITERS; k++)
        CHECK(pthread_create(&writers[k], NULL, paced_writer, &a[k]) == 0);
    for (int k = 0; k < PREP_WRITERS; k++)
        pthread_join(writers[k], NULL);
    atomic_store(&c.stop, true);
    pthread_join(reader, NULL);
    kg_journal_prepare(c.j); /* the last rollover may have been too late for the reader's last round */
    drain_checking(&c);

    /* Every rollover took a spare, and the writers' stores found their pages mapped writable
     * (without pre-faulting, one fault per 4 KiB page: PREP_RECORDS / 8 of them; under ASan its
     * shadow pages fault, an eighth of that). */
    if (PREP_TIMING)
        CHECK_INT(kg_journal_sync_rollovers(c.j), 0);
    for (int k = 0; k < PREP_WRITERS; k++) {
        long pages = PREP_RECORDS * KG_JOURNAL_SLOT_SIZE / 4096;
        CHECK_INT(a[k].failed, 0);
        CHECK(!PREP_TIMING || a[k].faults < pages / 2);
        if (PREP_TIMING && a[k].faults >= pages / 2)
            fprintf(stderr, "    writer %d: %ld page faults for %ld pages\n", k, a[k].faults, pages);
        CHECK_INT(c.next[k], a[k].first + PREP_RECORDS);
    }
    CHECK_INT(c.bad, 0);
    CHECK_INT(kg_journal_backlog(c.j), 0);
    /* Each writer's current segment, and a spare where that one is past half full. */
    CHECK(count_segments(dir) >= PREP_WRITERS && count_segments(dir) <= 2 * PREP_WRITERS);
    for (int k = 0; k < PREP_WRITERS; k++)
        kg_journal_writer_free(a[k].w);
    kg_journal_prepare(c.j); /* no writers: nothing to make */
    drain_checking(&c);
    CHECK_INT(count_segments(dir), 0);
    CHECK_INT(c.bad, 0);
    kg_journal_close(c.j);
    remove_dir(dir);
}

void test_journal_unused_spares_leave_no_files(void)
{
    char dir[64];
    int status = 0;
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w1 = kg_journal_writer_new(j), *w2 = kg_journal_writer_new(j);
    const long half = KG_JOURNAL_SLOTS / 2;
    CHECK_INT(append_range(w1, 0, 10), 0);
    CHECK_INT(count_segments(dir), 2);
    kg_journal_prepare(j);
    CHECK_INT(count_segments(dir), 2); /* nobody is half way: an idle gateway holds no spare */
    CHECK_INT(append_range(w1, 10, half), 0);
    kg_journal_prepare(j);
    CHECK_INT(count_segments(dir), 3); /* w1 is half way: a spare for it alone */
    kg_journal_prepare(j);
    CHECK_INT(count_segments(dir), 3); /* it has one: nothing made */
    CHECK_INT(kg_journal_backlog(j), half);
    kg_journal_writer_free(w1);
    kg_journal_writer_free(w2);
    kg_journal_close(j);
    CHECK_INT(count_segments(dir), 1); /* w1's records; w2's empty segment and the spare are gone */

    replay_restarted(dir, -1, half);

    /* Killed with a spare ready: the next process deletes it as it opens, and replays the rest. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        kg_journal_t *cj = kg_journal_open(dir, err, sizeof(err));
        kg_journal_writer_t *cw = cj != NULL ? kg_journal_writer_new(cj) : NULL;
        if (cw == NULL || append_range(cw, 0, half) != 0)
            _exit(3);
        kg_journal_prepare(cj);
        raise(SIGKILL);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_INT(count_segments(dir), 2);
    replay_restarted(dir, 1, half);
    remove_dir(dir);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void test_journal_replay_follows_claim_order(void)
{
    char dir[64], from[512], to[512], *names[8];
    int n = 0;
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    const long total = 3 * KG_JOURNAL_SLOTS + 7;
    size_t failed = 0;
    for (long i = 0; i < total; i += 1000) {
        kg_journal_prepare(j);
        failed += append_range(w, i, i + 1000 < total ? i + 1000 : total);
    }
    CHECK_INT(failed, 0);
    CHECK_INT(kg_journal_sync_rollovers(j), 0);
    kg_journal_writer_free(w);
    kg_journal_close(j);
    CHECK_INT(count_segments(dir), 4); /* the spare is gone */

    /* Reverse the names' order: the replay must follow the order the writer took the segments in. */
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < 8)
        if (strncmp(e->d_name, "seg-", 4) == 0)
            names[n++] = strdup(e->d_name);
    if (d != NULL)
        closedir(d);
    CHECK_INT(n, 4);
    qsort(names, (size_t)n, sizeof(*names), compare_strings);
    for (int k = 0; k < n; k++) {
        snprintf(from, sizeof(from), "%s/%s", dir, names[k]);
        snprintf(to, sizeof(to), "%s/seg-reversed-%d.kgj", dir, n - 1 - k);
        CHECK(rename(from, to) == 0);
        free(names[k]);
    }
    replay_restarted(dir, -1, total);
    remove_dir(dir);
}

/* ==== Reused segments ==== */

/* The names of dir's segment files (unique: creation time, pid, counter) added to seen[] if new. */
static void note_files(const char *dir, char (*seen)[256], int *n, int cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".kgj") != 0)
            continue;
        bool known = false;
        for (int k = 0; k < *n; k++)
            known |= strcmp(seen[k], e->d_name) == 0;
        if (!known && *n < cap)
            snprintf(seen[(*n)++], sizeof(seen[0]), "%s", e->d_name);
    }
    closedir(d);
}

/* One round of the usage writer's cycle, shrunk: spares, 1,000 appends, read, release. done[0]
 * counts the records appended, done[1] those whose release has begun, done[2] those whose
 * release has returned; records read are checked against done[1]'s count. */
static void cycle_round(kg_journal_t *j, kg_journal_writer_t *w, _Atomic long *done, long *bad)
{
    static kg_usage_record_t buf[1000];
    long next = atomic_load(&done[0]), read = atomic_load(&done[1]);
    size_t got;
    kg_journal_prepare(j);
    for (long end = next + 1000; next < end; next++) {
        kg_usage_record_t r;
        make_record(&r, next);
        if (!kg_journal_append(w, &r))
            (*bad)++;
        atomic_store_explicit(&done[0], next + 1, memory_order_release);
    }
    while ((got = kg_journal_read(j, buf, sizeof(buf) / sizeof(buf[0]))) != 0)
        for (size_t k = 0; k < got; k++)
            *bad += !is_record(&buf[k], read++);
    atomic_store_explicit(&done[1], read, memory_order_release);
    kg_journal_release(j);
    atomic_store_explicit(&done[2], read, memory_order_release);
}

void test_journal_reuses_released_segments(void)
{
    char dir[64], seen[64][256];
    int files = 0, status = 0;
    long bad = 0;

    /* In one process: six segments' worth of records go through two files, every record read back
     * once and in order (a slot of an earlier use read as committed would break the order). */
    kg_journal_t *j = open_journal(kg_test_tmpdir(dir, sizeof(dir)));
    CHECK(j != NULL);
    if (j == NULL)
        return;
    kg_journal_writer_t *w = kg_journal_writer_new(j);
    _Atomic long local[3] = {0, 0, 0};
    while (atomic_load(&local[0]) < 6L * KG_JOURNAL_SLOTS) {
        cycle_round(j, w, local, &bad);
        note_files(dir, seen, &files, 64);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(local[2], atomic_load(&local[0]));
    CHECK_INT(kg_journal_sync_rollovers(j), 0);
    CHECK(files <= 3);
    if (files > 3)
        fprintf(stderr, "    %d segment files for six segments' worth of records\n", files);
    kg_journal_writer_free(w);
    kg_journal_release(j);
    CHECK_INT(count_segments(dir), 0);
    kg_journal_close(j);
    remove_dir(dir);

    /* Killed at random moments while segments are being reused: the next process replays every
     * record not yet released (or whose release was under way), once and in order, and no record
     * of a segment's earlier use. */
    _Atomic long *done = mmap(NULL, 3 * sizeof(*done), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(done != MAP_FAILED);
    if (done == MAP_FAILED)
        return;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < 6; round++) {
        long target = 2 * KG_JOURNAL_SLOTS + rand() % (4 * KG_JOURNAL_SLOTS);
        for (int k = 0; k < 3; k++)
            atomic_store(&done[k], 0);
        kg_test_tmpdir(dir, sizeof(dir));
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            char err[256];
            long child_bad = 0;
            kg_journal_t *cj = kg_journal_open(dir, err, sizeof(err));
            kg_journal_writer_t *cw = cj != NULL ? kg_journal_writer_new(cj) : NULL;
            if (cw == NULL)
                _exit(3);
            while (child_bad == 0 && atomic_load(&done[0]) < 12L * KG_JOURNAL_SLOTS)
                cycle_round(cj, cw, done, &child_bad);
            _exit(child_bad == 0 ? 0 : 4);
        }
        CHECK(pid > 0);
        while (atomic_load_explicit(&done[0], memory_order_acquire) < target && waitpid(pid, &status, WNOHANG) == 0)
            ;
        if (round % 2)
            usleep((useconds_t)(rand() % 2000));
        kill(pid, SIGKILL);
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        long appended = atomic_load(&done[0]), releasing = atomic_load(&done[1]), released = atomic_load(&done[2]);

        j = open_journal(dir);
        CHECK(j != NULL);
        if (j == NULL)
            break;
        static kg_usage_record_t buf[1000];
        long first = -1, n = 0, wrong = 0;
        size_t got;
        while ((got = kg_journal_read(j, buf, sizeof(buf) / sizeof(buf[0]))) != 0)
            for (size_t k = 0; k < got; k++, n++) {
                if (first < 0)
                    first = strtol(buf[k].request_id + 4, NULL, 10);
                wrong += !is_record(&buf[k], first + n);
            }
        if (n == 0)
            first = appended; /* all released: nothing replayed */
        CHECK_INT(wrong, 0);
        /* From where the last release that returned left off (or the one under way), through
         * every append that returned (and the one the kill may have cut short, finished). */
        CHECK(first >= released && first <= releasing);
        CHECK(first + n >= appended && first + n <= appended + 1);
        if (wrong != 0 || first < released || first > releasing || first + n < appended || first + n > appended + 1)
            fprintf(stderr, "    replayed %ld..%ld; released %ld (releasing %ld), appended %ld\n", first, first + n,
                    released, releasing, appended);
        kg_journal_release(j);
        CHECK_INT(count_segments(dir), 0);
        kg_journal_close(j);
        remove_dir(dir);
    }
    munmap((void *)done, 3 * sizeof(*done));
}
