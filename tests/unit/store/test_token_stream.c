/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/store/token_stream.c on a real SQLite file: the stream hands over exactly what the
 * direct scan does, in the same order, whatever the block size (records larger than a block, a
 * reader held back by a consumer that has not given blocks back), and stops when told to.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

#include "../test.h"
#include "store/store.h"
#include "store/token_stream.h"

#define N_TOKENS 3000

typedef struct seen {
    char **rows; /* each token, every member written out */
    size_t n, stop_after;
    bool pause_first; /* give the reader 50 ms to run as far ahead as it may */
} seen_t;

static char *describe(const kg_token_t *t)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    const char *strings[] = {t->org_id,          t->team_id,        t->name,        t->description,
                             t->environment,     t->purpose,        t->scopes,      t->allow,
                             t->allowed_domains, t->prompt_modules, t->prompt_text, t->rate_limits,
                             t->budget,          t->metadata,       t->created_by,  t->revoked_by};
    fprintf(f, "%s|%d|%d|%d|%lld|%lld|%lld", t->id, (int)t->type, t->enabled, t->is_root, (long long)t->expires_at,
            (long long)t->revoked_at, (long long)t->rotations);
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        fprintf(f, "|%s", strings[i] != NULL ? strings[i] : "(null)");
    fclose(f);
    return out;
}

static bool remember(void *ctx, const kg_token_t *t)
{
    seen_t *s = ctx;
    if (s->pause_first && s->n == 0) {
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    s->rows = realloc(s->rows, (s->n + 1) * sizeof(*s->rows));
    s->rows[s->n++] = describe(t);
    return s->stop_after == 0 || s->n < s->stop_after;
}

static void forget(seen_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->rows[i]);
    free(s->rows);
    *s = (seen_t){0};
}

/* N_TOKENS tokens in SQL, with varied members: NULLs, a team on some, a prompt of 200 KiB on one. */
static void fill_store(const char *db)
{
    sqlite3 *h = NULL;
    CHECK(sqlite3_open(db, &h) == SQLITE_OK);
    char *sql = sqlite3_mprintf(
        "BEGIN;"
        "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < %d)"
        " INSERT INTO tokens (id, org_id, team_id, name, environment, token_type, scopes, allow, prompt_text,"
        "  rate_limits, enabled, is_root, expires_at, created_at, revoked_at, prefix, last4, rotations)"
        " SELECT printf('pk_%%024d', n), 'org_default', CASE WHEN n %% 3 = 0 THEN 'team_' || n END, 'k' || n,"
        "  'production', 'access', CASE WHEN n %% 2 = 0 THEN '[\"chat\"]' END, '{\"models\":[\"m' || n || '\"]}',"
        "  CASE WHEN n = 1234 THEN printf('%%.*c', 204800, 'p') END, '{\"rpm\":' || n || '}', n %% 5 <> 0, 0,"
        "  CASE WHEN n %% 7 = 0 THEN 4000000000 + n END, 1000 + n, CASE WHEN n %% 11 = 0 THEN 2000 + n END,"
        "  'pk_', substr('000' || n, -4), n %% 4"
        " FROM i;"
        "COMMIT;",
        N_TOKENS);
    char *err = NULL;
    CHECK(sqlite3_exec(h, sql, NULL, NULL, &err) == SQLITE_OK);
    if (err != NULL)
        fprintf(stderr, "    %s\n", err);
    sqlite3_free(err);
    sqlite3_free(sql);
    sqlite3_close(h);
}

static void check_same(const seen_t *want, const seen_t *got)
{
    CHECK_INT(got->n, want->n);
    size_t same = 0;
    for (size_t i = 0; i < want->n && i < got->n; i++)
        same += strcmp(want->rows[i], got->rows[i]) == 0;
    CHECK_INT(same, want->n);
}

void test_token_stream_matches_scan(void)
{
    char dir[64], db[128], err[256];
    kg_test_tmpdir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/k.db", dir);
    kg_store_t *st = kg_store_open(db, err, sizeof(err));
    CHECK(st != NULL);
    if (st == NULL)
        return;
    fill_store(db);

    seen_t direct = {0};
    CHECK_INT(kg_store_begin_read(st), KG_OK);
    CHECK_INT(kg_store_token_scan(st, remember, &direct), KG_OK);
    CHECK_INT(direct.n, N_TOKENS);
    CHECK(direct.n > 1233 && strlen(direct.rows[1233]) > 204800); /* the large prompt is there */

    /* Default blocks; 4 KiB blocks, two at most (a dozen records fill one, the 200 KiB one needs
     * its own, and the reader waits for blocks to come back); one block; a block per record. The
     * consumer pauses at the first token: the reader never holds more blocks than it may. */
    const size_t sizes[][2] = {{0, 0}, {4096, 2}, {4096, 1}, {300, 3}};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        seen_t streamed = {.pause_first = true};
        kg_token_stream_counts_t counts = {0};
        kg_token_stream_t *s = sizes[k][0] == 0 ? kg_token_stream_start(st)
                                                : kg_token_stream_start_sized(st, sizes[k][0], sizes[k][1], &counts);
        CHECK_INT(kg_token_stream_finish(s, remember, &streamed), KG_OK);
        check_same(&direct, &streamed);
        if (sizes[k][0] != 0) {
            CHECK_INT(counts.rows_copied, N_TOKENS);
            CHECK(counts.most_blocks >= 1 && counts.most_blocks <= sizes[k][1]);
        }
        forget(&streamed);
    }

    /* The consumer stops: no token after, the reader stops too (it had copied at most the ten
     * and the blocks it may hold, a dozen records each), and the store is free again. */
    seen_t first = {.stop_after = 10, .pause_first = true};
    kg_token_stream_counts_t counts = {0};
    CHECK_INT(kg_token_stream_finish(kg_token_stream_start_sized(st, 4096, 2, &counts), remember, &first), KG_OK);
    CHECK_INT(first.n, 10);
    CHECK(counts.rows_copied >= 10 && counts.rows_copied <= 100);
    for (size_t i = 0; i < first.n; i++)
        CHECK_STR(first.rows[i], direct.rows[i]);
    forget(&first);
    size_t n = 0;
    CHECK_INT(kg_store_token_count(st, &n), KG_OK);
    CHECK_INT(n, N_TOKENS);

    kg_store_rollback(st);
    forget(&direct);
    kg_store_close(st);
}
