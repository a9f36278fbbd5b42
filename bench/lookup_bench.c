/* SPDX-License-Identifier: Apache-2.0
 *
 * This file is the key-index microbenchmark run by bench/run: it fills a kg_key_index_t with
 * N tokens (one secret each, composed and hashed as the gateway does; each with its own rate
 * limits, in a team with limits and a credit pool), then times kg_key_index_lookup alone, the
 * secret check (kg_key_index_check_secret: shape, SHA-256, checksum, lookup), the whole
 * verification a request pays (that, then the policy decision and the key's and team's
 * admission, settled), unknown
 * keys, and the same at 1,000 keys. Each operation's input (the presented secret or hash) is
 * copied into a small buffer before its chunk is timed, as the gateway has it in the request
 * it has just read: what is timed is the index, not the bench's own input arrays. Every figure
 * is the median of several batches; the output is a markdown table. Not a test: nothing here
 * asserts a speed.
 *
 *   lookup_bench [--keys N] [--small N] [--batches N] [--ops N] [--threads 1|2]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keys/key_format.h"
#include "keys/key_hash.h"
#include "keys/key_index.h"
#include "keys/token.h"
#include "catalog/catalog.h"
#include "config/config.h"
#include "limits/admit.h"
#include "policy/policy.h"
#include "bench_util.h"

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* ==== Deterministic inputs (splitmix64: the bench must not depend on the CSPRNG's speed) ==== */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill_base62(uint64_t *s, char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = base62[splitmix64(s) % 62];
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t flen = strlen(field);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, flen) == 0 && line[flen] == ':')
            kb = strtol(line + flen + 1, NULL, 10);
    fclose(f);
    return kb;
}

const char *const bench_name = "lookup_bench";

/* ==== A populated index ==== */

typedef struct keyset {
    size_t n;
    char (*secrets)[KG_KEY_SECRET_MAX];
    size_t *secret_len;
    uint8_t (*hashes)[KG_KEY_HASH_BYTES];
    kg_key_index_t *idx;
    double compose_hash_ns; /* total, for all n */
    double put_ns;          /* total, for all n */
    long rss_before_kb, rss_after_kb;
} keyset_t;

static void keyset_build(keyset_t *ks, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    memset(ks, 0, sizeof(*ks));
    ks->n = n;
    ks->secrets = calloc(n, sizeof(*ks->secrets));
    ks->secret_len = calloc(n, sizeof(*ks->secret_len));
    ks->hashes = calloc(n, sizeof(*ks->hashes));
    if (ks->secrets == NULL || ks->secret_len == NULL || ks->hashes == NULL)
        die("out of memory");

    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        char rnd[KG_KEY_RANDOM_CHARS];
        fill_base62(&s, rnd, sizeof(rnd));
        ks->secret_len[i] = kg_key_secret_compose("kg", KG_KEY_KIND_LIVE, rnd, ks->secrets[i]);
        if (ks->secret_len[i] == 0)
            die("kg_key_secret_compose failed");
        if (!kg_key_hash(ks->secrets[i], ks->secret_len[i], ks->hashes[i]))
            die("kg_key_hash failed");
    }
    ks->compose_hash_ns = now_ns() - t0;

    /* The inputs are all in memory now: what RSS grows by from here on is the index. */
    ks->rss_before_kb = rss_kb("VmRSS");
    ks->idx = kg_key_index_new();
    static char org_id[] = KG_DEFAULT_ORG_ID, environment[] = "production", team_id[] = "bench";
    static char rate_limits[] = "{\"rpm\":1000000000,\"tpm\":1000000000000}", scopes[] = "[\"inference:chat\"]";
    kg_token_t t;
    memset(&t, 0, sizeof(t));
    t.org_id = org_id;
    t.environment = environment;
    t.team_id = team_id;
    t.rate_limits = rate_limits;
    t.scopes = scopes;
    t.type = KG_TOKEN_ACCESS;
    t.enabled = true;
    t.created_at = (int64_t)time(NULL);
    memcpy(t.id, "pk_", 3);
    t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        kg_token_secret_t sec = {.expires_at = 0};
        fill_base62(&s, t.id + 3, KG_KEY_ID_RANDOM_CHARS);
        t.id[KG_KEY_ID_LEN] = '\0';
        memcpy(sec.hash, ks->hashes[i], KG_KEY_HASH_BYTES);
        kg_key_index_put(ks->idx, &t, &sec, 1);
    }
    ks->put_ns = now_ns() - t0;
    ks->rss_after_kb = rss_kb("VmRSS");
    if (kg_key_index_size(ks->idx) != n)
        die("index size differs from the number of keys put (id collision?)");
}

static void keyset_free(keyset_t *ks)
{
    kg_key_index_free(ks->idx);
    free(ks->secrets);
    free(ks->secret_len);
    free(ks->hashes);
}

/* The catalog OP_FULL decides against: the fixture's model, priced, and the keys' team with
 * limits and a credit pool (far above what the bench reaches: nothing is refused). */
static kg_catalog_t *bench_catalog(void)
{
    static const char yaml[] = "providers:\n"
                               "  - {name: bench, base_url: \"http://127.0.0.1:9/v1\"}\n"
                               "models:\n"
                               "  - {name: gpt-4o-mini, provider: bench, input: 0.15, output: 0.60}\n";
    static kg_config_t cfg; /* the catalog borrows from it until the process ends */
    char err[256];
    kg_config_init(&cfg);
    if (!kg_config_parse(&cfg, yaml, sizeof(yaml) - 1, "lookup_bench", err, sizeof(err)))
        die(err);
    kg_catalog_row_t *rows;
    size_t n;
    kg_catalog_config_rows(&cfg, &rows, &n);
    kg_catalog_row_t *all = realloc(rows, (n + 1) * sizeof(*all));
    if (all == NULL)
        die("out of memory");
    static char org[] = KG_DEFAULT_ORG_ID, kind[] = "team", name[] = "bench", source[] = "api";
    static char spec[] = "{\"tier\":\"custom\",\"rate_limits\":{\"rpm\":1000000000,\"tpm\":1000000000000},"
                         "\"budget\":{\"limit_credits\":1000000000,\"period\":\"month\"}}";
    all[n] = (kg_catalog_row_t){.org_id = org, .kind = kind, .name = name, .spec = spec, .source = source};
    kg_catalog_t *cat = kg_catalog_build_rows(&cfg, all, n + 1);
    kg_catalog_rows_free(all, n); /* the team row's strings are static */
    if (kg_catalog_team(cat, KG_DEFAULT_ORG_ID, "bench") == NULL)
        die("the bench catalog has no team");
    return cat;
}

/* ==== Timed loops ==== */

typedef enum op {
    OP_LOOKUP,         /* kg_key_index_lookup on a known hash */
    OP_VERIFY,         /* parse + hash + lookup of a known secret string */
    OP_FULL,           /* OP_VERIFY, then the policy decision and the admission of key and team */
    OP_LOOKUP_UNKNOWN, /* kg_key_index_lookup on a hash that is not in the index */
    OP_VERIFY_UNKNOWN, /* parse + hash + lookup of a well-formed secret that is not in the index */
    OP_PARSE_BADSUM,   /* parse of a secret whose checksum is wrong: refused before any hashing */
} op_t;

typedef struct probe {
    const keyset_t *ks;
    const kg_catalog_t *cat; /* the model and team OP_FULL decides against */
    /* unknown inputs, made from a different seed */
    char (*u_secrets)[KG_KEY_SECRET_MAX];
    size_t *u_len;
    uint8_t (*u_hashes)[KG_KEY_HASH_BYTES];
    size_t n_unknown;
    uint32_t *order; /* random positions, pre-drawn so the loop times only the operation */
    size_t n_order;
} probe_t;

static volatile unsigned sink;

/* What the gateway does with an authenticated chat call before it forwards it. */
static bool decide_and_admit(const kg_catalog_t *cat, const kg_key_view_t *view, int64_t now_s)
{
    kg_decision_t d;
    kg_admission_t a;
    kg_refusal_t why;
    if (kg_policy_decide(cat, view, view->policy, KG_ROUTE_CHAT, "gpt-4o-mini", 11, &d) != KG_OK)
        return false;
    const kg_team_t *team = kg_catalog_team(cat, view->org_id, view->team_id);
    memset(&a, 0, sizeof(a));
    a.holders[0] = (kg_holder_t){view->limit_state, view->policy->limits, view->policy->budget};
    if (team != NULL)
        a.holders[1] = (kg_holder_t){team->state, team->limits, team->budget};
    a.n_holders = team != NULL ? 2 : 1;
    int64_t mono = (int64_t)now_ns();
    if (kg_admit(&a, 100, 10, mono, now_s, &why) != KG_OK)
        return false;
    kg_admission_settle(&a, 100, 10, mono, now_s);
    return team != NULL;
}

/* One operation on staged input (the secret or hash, in a hot buffer); returns whether it succeeded. */
static bool run_op(const probe_t *p, op_t op, const char *s, size_t len, const uint8_t *staged_hash, int64_t now)
{
    kg_key_view_t view;
    kg_key_secret_ref_t ref;
    uint8_t hash[KG_KEY_HASH_BYTES];
    bool ok;
    switch (op) {
    case OP_LOOKUP:
    case OP_LOOKUP_UNKNOWN: return kg_key_index_lookup(p->ks->idx, staged_hash, now, &view) == KG_OK;
    case OP_PARSE_BADSUM: return kg_key_secret_parse(s, len, &ref) == KG_OK;
    case OP_VERIFY:
    case OP_VERIFY_UNKNOWN:
    case OP_FULL: /* as the gateway's authentication does it */
        kg_key_index_read_lock();
        ok = kg_key_index_check_secret(p->ks->idx, s, len, now, &view, hash) == KG_OK;
        if (ok && op == OP_FULL)
            ok = decide_and_admit(p->cat, &view, now);
        kg_key_index_read_unlock();
        return ok;
    }
    return false;
}

#define CHUNK 32 /* operations timed together, their inputs staged just before */

/* One batch of `ops` operations; returns ns per operation. */
static double run_batch(const probe_t *p, op_t op, size_t ops, size_t start)
{
    const keyset_t *ks = p->ks;
    int64_t now = (int64_t)time(NULL);
    char secrets[CHUNK][KG_KEY_SECRET_MAX];
    size_t lens[CHUNK];
    uint8_t hashes[CHUNK][KG_KEY_HASH_BYTES];
    bool known = op == OP_LOOKUP || op == OP_VERIFY || op == OP_FULL;
    unsigned ok = 0;
    double timed = 0;
    for (size_t i = 0; i < ops; i += CHUNK) {
        size_t n = ops - i < CHUNK ? ops - i : CHUNK;
        for (size_t k = 0; k < n; k++) { /* staging: not timed */
            size_t j = p->order[(start + i + k) % p->n_order];
            size_t at = known ? j % ks->n : j % p->n_unknown;
            lens[k] = known ? ks->secret_len[at] : p->u_len[at];
            memcpy(secrets[k], known ? ks->secrets[at] : p->u_secrets[at], lens[k]);
            memcpy(hashes[k], known ? ks->hashes[at] : p->u_hashes[at], KG_KEY_HASH_BYTES);
            if (op == OP_PARSE_BADSUM) /* the unknown secrets with their last checksum char changed */
                secrets[k][lens[k] - 1] = secrets[k][lens[k] - 1] == 'A' ? 'B' : 'A';
        }
        double t0 = now_ns();
        for (size_t k = 0; k < n; k++)
            ok += run_op(p, op, secrets[k], lens[k], hashes[k], now);
        timed += now_ns() - t0;
    }
    sink += ok;
    /* Sanity: known keys must all be found (and admitted), unknown and corrupted ones never. */
    if ((known && ok != ops) || (!known && ok != 0)) {
        fprintf(stderr, "lookup_bench: op %d: %u of %zu succeeded\n", (int)op, ok, ops);
        exit(1);
    }
    return timed / (double)ops;
}

#define MAX_BATCHES 64

static double measure(const probe_t *p, op_t op, size_t ops, int batches)
{
    double v[MAX_BATCHES];
    run_batch(p, op, ops / 4 + 1, 0); /* warm-up: caches, branch predictors, the thread's EVP context */
    for (int b = 0; b < batches; b++)
        v[b] = run_batch(p, op, ops, (size_t)b * ops);
    return median(v, (size_t)batches);
}

static void probe_init(probe_t *p, const keyset_t *ks, const kg_catalog_t *cat, size_t n_order, uint64_t seed)
{
    uint64_t s = seed;
    memset(p, 0, sizeof(*p));
    p->ks = ks;
    p->cat = cat;
    p->n_unknown = 4096;
    p->u_secrets = calloc(p->n_unknown, sizeof(*p->u_secrets));
    p->u_len = calloc(p->n_unknown, sizeof(*p->u_len));
    p->u_hashes = calloc(p->n_unknown, sizeof(*p->u_hashes));
    p->n_order = n_order;
    p->order = calloc(n_order, sizeof(*p->order));
    if (p->u_secrets == NULL || p->u_len == NULL || p->u_hashes == NULL || p->order == NULL)
        die("out of memory");
    for (size_t i = 0; i < p->n_unknown; i++) {
        char rnd[KG_KEY_RANDOM_CHARS];
        fill_base62(&s, rnd, sizeof(rnd));
        p->u_len[i] = kg_key_secret_compose("kg", KG_KEY_KIND_LIVE, rnd, p->u_secrets[i]);
        if (p->u_len[i] == 0 || !kg_key_hash(p->u_secrets[i], p->u_len[i], p->u_hashes[i]))
            die("cannot make the unknown keys");
    }
    for (size_t i = 0; i < n_order; i++)
        p->order[i] = (uint32_t)(splitmix64(&s) % 0xFFFFFFFFu);
}

static void probe_dispose(probe_t *p)
{
    free(p->u_secrets);
    free(p->u_len);
    free(p->u_hashes);
    free(p->order);
}

/* ==== Two readers at once ==== */

typedef struct reader {
    pthread_t thread;
    const probe_t *probe;
    size_t ops;
    int batches;
    size_t offset;
    double ns_per_op;
} reader_t;

static pthread_barrier_t start_line;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    double v[MAX_BATCHES];
    kg_key_index_thread_online();
    run_batch(r->probe, OP_LOOKUP, r->ops / 4 + 1, r->offset);
    pthread_barrier_wait(&start_line);
    for (int b = 0; b < r->batches; b++)
        v[b] = run_batch(r->probe, OP_LOOKUP, r->ops, r->offset + (size_t)b * r->ops);
    r->ns_per_op = median(v, (size_t)r->batches);
    kg_key_index_thread_offline();
    return NULL;
}

/* ==== Reference: what one cache/TLB miss costs on this machine ==== */

/* ns per dependent random load in a `mib` MiB array (a single-cycle random permutation). */
static double chase_ns(size_t mib)
{
    size_t n = mib * 1024 * 1024 / sizeof(size_t);
    size_t *next = malloc(n * sizeof(*next));
    uint64_t s = 0x636861736521ULL;
    if (next == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        next[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Sattolo: one cycle through every slot */
        size_t j = (size_t)(splitmix64(&s) % i), t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    size_t p = 0, steps = 4000000;
    double v[5];
    for (int b = 0; b < 5; b++) {
        double t0 = now_ns();
        for (size_t k = 0; k < steps; k++)
            p = next[p];
        v[b] = (now_ns() - t0) / (double)steps;
    }
    sink += (unsigned)p;
    free(next);
    return median(v, 5);
}

/* ==== Main ==== */

static size_t parse_size(const char *flag, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n == 0)
        fprintf(stderr, "lookup_bench: %s needs a positive whole number\n", flag), exit(2);
    return (size_t)n;
}

int main(int argc, char **argv)
{
    size_t n_big = 1000000, n_small = 1000, ops = 1000000, threads = 1;
    int batches = 7;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            fprintf(stderr, "usage: lookup_bench [--keys N] [--small N] [--batches N] [--ops N] [--threads 1|2]\n"),
                exit(2);
        size_t v = parse_size(a, argv[++i]);
        if (strcmp(a, "--keys") == 0)
            n_big = v;
        else if (strcmp(a, "--small") == 0)
            n_small = v;
        else if (strcmp(a, "--ops") == 0)
            ops = v;
        else if (strcmp(a, "--batches") == 0 && v <= MAX_BATCHES)
            batches = (int)v;
        else if (strcmp(a, "--threads") == 0 && v <= 2)
            threads = v;
        else
            fprintf(stderr, "lookup_bench: bad option %s\n", a), exit(2);
    }

    kg_key_index_thread_online();
    long rss_start = rss_kb("VmRSS");

    keyset_t big, small;
    keyset_build(&big, n_big, 0x6B657967617465ULL);
    keyset_build(&small, n_small, 0x736D616C6CULL);
    /* The table grows lazily (a resize runs on liburcu's worker thread): give it a moment, as a
     * gateway that loaded its keys at start would have. */
    sleep(1);
    kg_catalog_t *cat = bench_catalog();
    probe_t pb, ps;
    probe_init(&pb, &big, cat, 1u << 20, 0x756E6B6E6F776EULL);
    probe_init(&ps, &small, cat, 1u << 20, 0x756E6B6E6F776FULL);

    struct {
        const char *what;
        op_t op;
        double big, small;
    } rows[] = {
        {"`kg_key_index_lookup`, known key (random order)", OP_LOOKUP, 0, 0},
        {"full check of a known secret: `kg_key_index_check_secret` (shape, SHA-256, checksum, lookup)", OP_VERIFY, 0,
         0},
        {"whole verification: the full check, then `kg_policy_decide` and `kg_admit` + settle (key and team "
         "limits, team budget)",
         OP_FULL, 0, 0},
        {"`kg_key_index_lookup`, unknown hash", OP_LOOKUP_UNKNOWN, 0, 0},
        {"full check of a well-formed unknown secret", OP_VERIFY_UNKNOWN, 0, 0},
        {"`kg_key_secret_parse` of a secret with a wrong checksum (refused before hashing)", OP_PARSE_BADSUM, 0, 0},
    };
    size_t n_rows = sizeof(rows) / sizeof(rows[0]);
    for (size_t r = 0; r < n_rows; r++) {
        size_t o = rows[r].op == OP_VERIFY || rows[r].op == OP_VERIFY_UNKNOWN || rows[r].op == OP_FULL ? ops / 4 : ops;
        rows[r].big = measure(&pb, rows[r].op, o, batches);
        rows[r].small = measure(&ps, rows[r].op, o, batches);
    }

    double two_a = 0, two_b = 0;
    if (threads == 2) {
        reader_t rd[2] = {{.probe = &pb, .ops = ops, .batches = batches, .offset = 0},
                          {.probe = &pb, .ops = ops, .batches = batches, .offset = 1u << 19}};
        pthread_barrier_init(&start_line, NULL, 2);
        for (int t = 0; t < 2; t++)
            if (pthread_create(&rd[t].thread, NULL, reader_main, &rd[t]) != 0)
                die("pthread_create failed");
        for (int t = 0; t < 2; t++)
            pthread_join(rd[t].thread, NULL);
        pthread_barrier_destroy(&start_line);
        two_a = rd[0].ns_per_op, two_b = rd[1].ns_per_op;
    }

    double ref_small = chase_ns(1), ref_big = chase_ns(256);

    printf("| operation | %zu keys: ns/op | %zu keys: ns/op | ratio |\n", n_big, n_small);
    printf("|---|---:|---:|---:|\n");
    for (size_t r = 0; r < n_rows; r++)
        printf("| %s | %.1f | %.1f | %.2f× |\n", rows[r].what, rows[r].big, rows[r].small, rows[r].big / rows[r].small);
    if (threads == 2)
        printf("| `kg_key_index_lookup`, known key, 2 threads at once (per thread: %.1f and %.1f) | %.1f | | |\n",
               two_a, two_b, (two_a + two_b) / 2);
    printf("| reference, not keygate: one dependent random load in a 256 MiB / 1 MiB array | %.1f | %.1f | |\n",
           ref_big, ref_small);
    printf("\n");
    printf("| building the index | %zu keys | %zu keys |\n", n_big, n_small);
    printf("|---|---:|---:|\n");
    printf("| compose + hash each secret, ns/key | %.0f | %.0f |\n", big.compose_hash_ns / (double)n_big,
           small.compose_hash_ns / (double)n_small);
    printf("| `kg_key_index_put`, ns/key | %.0f | %.0f |\n", big.put_ns / (double)n_big,
           small.put_ns / (double)n_small);
    printf("| `kg_key_index_put`, total s | %.2f | %.4f |\n", big.put_ns / 1e9, small.put_ns / 1e9);
    printf("| index memory (VmRSS growth during the puts), MiB | %.1f | %.2f |\n",
           (double)(big.rss_after_kb - big.rss_before_kb) / 1024,
           (double)(small.rss_after_kb - small.rss_before_kb) / 1024);
    printf("| index memory per key, bytes | %.0f | %.0f |\n",
           (double)(big.rss_after_kb - big.rss_before_kb) * 1024 / (double)n_big,
           (double)(small.rss_after_kb - small.rss_before_kb) * 1024 / (double)n_small);
    printf("\nProcess VmRSS %.1f MiB at start, %.1f MiB with both indexes and their inputs (VmHWM %.1f MiB). "
           "Median of %d batches of %zu lookups (%zu for the full checks); single thread.\n",
           (double)rss_start / 1024, (double)rss_kb("VmRSS") / 1024, (double)rss_kb("VmHWM") / 1024, batches, ops,
           ops / 4);

    probe_dispose(&pb);
    probe_dispose(&ps);
    kg_catalog_free(cat);
    keyset_free(&big);
    keyset_free(&small);
    kg_key_index_thread_offline();
    return sink == 0xFFFFFFFFu; /* never: keeps `sink` observable */
}
