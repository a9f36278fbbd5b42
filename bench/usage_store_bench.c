/* SPDX-License-Identifier: Apache-2.0
 *
 * This file is the usage-store microbenchmark: it writes N usage records into a fresh store
 * file through kg_store_usage_insert_new, in batches as the usage writer does (one key, one team,
 * one org, request ids as one worker makes them, times spread over a few minutes), and reports
 * the CPU time (user + system, this thread) and wall time per record spent inside the call; a
 * replay (a batch already stored) and the reads that seed budgets and serve GET /v1/usage are
 * timed too. The median of several runs, each on a new file. Not a test: nothing here asserts
 * a speed.
 *
 *   usage_store_bench [--records N] [--batch N] [--keys N] [--minutes N] [--runs N]
 *                     [--sync full|normal] [--dir DIR]
 *
 * --keys N spreads the records over N keys, each record the next key (as bench/run's spread pass
 * sends them): every batch then upserts a rollup row per key and minute it holds.
 *
 * --sync normal runs PRAGMA synchronous = NORMAL on the store's connection after it is opened
 * (the store's own default, FULL, is untouched); the connection is caught with an SQLite
 * auto-extension, so the benchmark needs nothing but the store's public API.
 *
 * Built by hand against a build directory's libkeygate.a:
 *   cc -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc bench/usage_store_bench.c \
 *      build-release/libkeygate.a $(pkg-config --cflags --libs sqlite3 jansson openssl) -lpthread -lm \
 *      -o /tmp/usage_store_bench
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"
#include "bench_util.h"

#define MINUTE_MS 60000
#define T0 ((int64_t)1700000000000) /* 2023-11-14T22:13:20Z */

static sqlite3 *last_db;  /* the connection most recently opened (by kg_store_open) */
static size_t n_keys = 1; /* --keys */

static int catch_db(sqlite3 *db, const char **err, const void *api)
{
    (void)err, (void)api;
    last_db = db;
    return SQLITE_OK;
}

static double now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

const char *const bench_name = "usage_store_bench";

static long parse_long(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) {
        fprintf(stderr, "usage_store_bench: %s needs a positive integer\n", opt);
        exit(2);
    }
    return v;
}

/* Record i of n: a worker's request id (random prefix + hex counter), mostly 200s. */
static void make_record(kg_usage_record_t *r, size_t i, size_t n, int64_t span_ms)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "Xq7TzK2mPa9B%08zx", i + 1);
    snprintf(r->key_id, sizeof(r->key_id), "pk_benchbenchbenchbe%07u", (unsigned)(i % n_keys % 10000000));
    snprintf(r->org_id, sizeof(r->org_id), "org_bench");
    snprintf(r->team_id, sizeof(r->team_id), "ml");
    snprintf(r->model, sizeof(r->model), "gpt-4o-mini");
    snprintf(r->upstream_model, sizeof(r->upstream_model), "gpt-4o-mini-2024-07-18");
    r->at_ms = T0 + (int64_t)((double)i * (double)span_ms / (double)n);
    r->route = KG_USAGE_CHAT;
    r->status = i % 50 == 0 ? 429 : 200;
    r->input_tokens = 20 + (int64_t)(i % 7), r->output_tokens = 30 + (int64_t)(i % 11);
    r->cost_micro = 3 * r->input_tokens + 12 * r->output_tokens;
    r->latency_us = 900 + (int64_t)(i % 13), r->upstream_latency_us = 700;
    r->stream = i % 3 == 0;
}

static void count_group(void *ctx, const char *org_id, const char *id, const kg_usage_totals_t *t)
{
    (void)org_id, (void)id;
    *(int64_t *)ctx += t->requests;
}

typedef struct result {
    double cpu_us, wall_us;      /* per record inserted */
    double replay_cpu_us;        /* per record of a batch replayed */
    double totals_ms, series_ms; /* one kg_store_usage_totals_by, one minute series, CPU */
    double size_mb;              /* store file + WAL after the run */
} result_t;

static void one_run(const char *dir, size_t n, size_t batch, int64_t span_ms, bool sync_normal, result_t *out)
{
    char tmpl[512], db[600], path[700], err[256];
    snprintf(tmpl, sizeof(tmpl), "%s/kg-usage-bench.XXXXXX", dir);
    if (mkdtemp(tmpl) == NULL)
        die("cannot make a temporary directory");
    snprintf(db, sizeof(db), "%s/store.db", tmpl);
    kg_store_t *st = kg_store_open(db, err, sizeof(err));
    if (st == NULL)
        die(err);
    if (sync_normal && sqlite3_exec(last_db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        die("cannot set synchronous = NORMAL");

    kg_usage_record_t *recs = calloc(batch, sizeof(*recs));
    if (recs == NULL)
        die("out of memory");
    double cpu = 0, wall = 0;
    for (size_t at = 0; at < n; at += batch) {
        size_t m = n - at < batch ? n - at : batch, inserted = 0;
        for (size_t i = 0; i < m; i++)
            make_record(&recs[i], at + i, n, span_ms);
        double c0 = now_ns(CLOCK_THREAD_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
        if (kg_store_usage_insert_new(st, recs, m, &inserted) != KG_OK || inserted != m)
            die("insert failed");
        cpu += now_ns(CLOCK_THREAD_CPUTIME_ID) - c0, wall += now_ns(CLOCK_MONOTONIC) - w0;
    }
    out->cpu_us = cpu / 1e3 / (double)n, out->wall_us = wall / 1e3 / (double)n;

    /* The last batch again: a journal replayed after a crash between commit and release. */
    size_t inserted = 1;
    double c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    if (kg_store_usage_insert(st, recs, batch < n ? batch : n, &inserted) != KG_OK || inserted != 0)
        die("replay failed");
    out->replay_cpu_us = (now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e3 / (double)(batch < n ? batch : n);

    int64_t seen = 0;
    c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    if (kg_store_usage_totals_by(st, false, T0, count_group, &seen) != KG_OK || seen != (int64_t)n)
        die("totals failed");
    out->totals_ms = (now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e6;

    kg_usage_filter_t f = {
        .org_id = "org_bench", .from_ms = T0, .to_ms = T0 + span_ms + MINUTE_MS, .bucket_ms = MINUTE_MS};
    kg_usage_bucket_t *b = NULL;
    size_t nb = 0;
    bool truncated = false;
    c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    if (kg_store_usage_series(st, &f, 10000, &b, &nb, &truncated) != KG_OK || nb == 0)
        die("series failed");
    out->series_ms = (now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e6;
    free(b);

    struct stat sb;
    out->size_mb = 0;
    if (stat(db, &sb) == 0)
        out->size_mb += (double)sb.st_size / 1e6;
    snprintf(path, sizeof(path), "%s-wal", db);
    if (stat(path, &sb) == 0)
        out->size_mb += (double)sb.st_size / 1e6;
    kg_store_close(st);
    free(recs);

    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", db, suffixes[i]);
        unlink(path);
    }
    rmdir(tmpl);
}

int main(int argc, char **argv)
{
    size_t n = 200000, batch = 1000;
    long minutes = 5, runs = 3;
    bool sync_normal = false;
    const char *dir = "/tmp";

    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            die("every option takes a value");
        if (strcmp(argv[i], "--records") == 0)
            n = (size_t)parse_long(argv[++i], "--records");
        else if (strcmp(argv[i], "--batch") == 0)
            batch = (size_t)parse_long(argv[++i], "--batch");
        else if (strcmp(argv[i], "--keys") == 0)
            n_keys = (size_t)parse_long(argv[++i], "--keys");
        else if (strcmp(argv[i], "--minutes") == 0)
            minutes = parse_long(argv[++i], "--minutes");
        else if (strcmp(argv[i], "--runs") == 0)
            runs = parse_long(argv[++i], "--runs");
        else if (strcmp(argv[i], "--sync") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "normal") != 0 && strcmp(v, "full") != 0)
                die("--sync is full or normal");
            sync_normal = strcmp(v, "normal") == 0;
        } else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[++i];
        else
            die("unknown option");
    }
    if (sqlite3_auto_extension((void (*)(void))catch_db) != SQLITE_OK)
        die("cannot register the auto-extension");

    double cpu[64], wall[64], replay[64], totals[64], series[64], size = 0;
    if (runs > 64)
        runs = 64;
    for (long r = 0; r < runs; r++) {
        result_t res;
        one_run(dir, n, batch, minutes * MINUTE_MS, sync_normal, &res);
        cpu[r] = res.cpu_us, wall[r] = res.wall_us, replay[r] = res.replay_cpu_us;
        totals[r] = res.totals_ms, series[r] = res.series_ms, size = res.size_mb;
        fprintf(stderr, "run %ld: %.3f us CPU/record, %.3f us wall/record\n", r + 1, res.cpu_us, res.wall_us);
    }
    printf("| records | keys | batch | synchronous | CPU us/record | wall us/record | replay CPU us/record"
           " | totals_by ms | series ms | file MB |\n");
    printf("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    printf("| %zu | %zu | %zu | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f |\n", n, n_keys, batch,
           sync_normal ? "NORMAL" : "FULL", median(cpu, (size_t)runs), median(wall, (size_t)runs),
           median(replay, (size_t)runs), median(totals, (size_t)runs), median(series, (size_t)runs), size);
    return 0;
}
