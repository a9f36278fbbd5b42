/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the key store on SQLite: WAL journal, synchronous=FULL (a secret is
 * shown only after its hash is durable), a busy timeout so the CLI and a running gateway can
 * share the file, and statements prepared once per connection.
 */
#include "store/store.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "store/store_sqlite.h"
#include "store/usage_json.h"

enum {
    Q_ORG_INSERT,
    Q_ORG_GET,
    Q_ORG_GET_BY_NAME,
    Q_ENV_UPSERT,
    Q_ENV_GET,
    Q_ENV_LIST,
    Q_ENV_DELETE,
    Q_ENV_COUNT,
    Q_TOKEN_INSERT,
    Q_SECRET_INSERT,
    Q_TOKEN_GET,
    Q_TOKEN_UPDATE,
    Q_SECRET_DROP_GRACED,
    Q_SECRET_DROP_ALL,
    Q_SECRET_SET_GRACE,
    Q_SECRET_LIST,
    Q_TOKEN_TOUCH,
    Q_SECRET_FIND,
    Q_ROOT_EXISTS,
    Q_AUDIT_INSERT,
    Q_CHANGE_ADD,
    Q_CHANGE_LIST,
    Q_CHANGE_LAST,
    Q_DATA_VERSION,
    Q_USAGE_BATCH_ADD,
    Q_USAGE_STORED_IDS, /* the request ids and finish times stored with finish times in [?1, ?2] */
    Q_USAGE_MINUTE_ADD,
    Q_USAGE_MINUTE_ADD_16, /* 16 groups of one batch (never two of one row) in one statement */
    Q_USAGE_KEY_ADD,
    Q_USAGE_KEY_ADD_16, /* the same 16 groups' sums added to their keys' all-time rows */
    Q_USAGE_TOTALS_BY_KEY,
    Q_USAGE_TOTALS_BY_TEAM,
    Q_USAGE_TOTALS_BY_KEY_ALL, /* the same two for all time */
    Q_USAGE_TOTALS_BY_TEAM_ALL,
    Q_USAGE_KEY_TOTALS,
    Q_USAGE_SERIES, /* four variants, in this order: kg_store_usage_series picks by filter */
    Q_USAGE_SERIES_KEY,
    Q_USAGE_SERIES_TEAM,
    Q_USAGE_SERIES_KEY_TEAM,
    Q__COUNT
};

/* What adding a group's five sums to a rollup row that exists does. */
#define SUMS_UPSERT                                                                                                    \
    " DO UPDATE SET requests = requests + excluded.requests, errors = errors + excluded.errors,"                       \
    " input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,"    \
    " cost_micro = cost_micro + excluded.cost_micro"

/* A rollup row of usage_minutes. */
#define MINUTE_COLUMNS "key_id, minute_ms, org_id, team_id, requests, errors, input_tokens, output_tokens, cost_micro"
#define MINUTE_ROW "(?,?,?,?,?,?,?,?,?)"
#define MINUTE_ROWS_8                                                                                                  \
    MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW "," MINUTE_ROW
#define MINUTE_UPSERT " ON CONFLICT (minute_ms, key_id, org_id, team_id)" SUMS_UPSERT

/* A key's all-time row of usage_keys. A statement may add two groups of one key (two minutes,
 * two teams): SQLite applies the upsert row by row. */
#define KEY_COLUMNS "key_id, org_id, requests, errors, input_tokens, output_tokens, cost_micro"
#define KEY_ROW "(?,?,?,?,?,?,?)"
#define KEY_ROWS_8 KEY_ROW "," KEY_ROW "," KEY_ROW "," KEY_ROW "," KEY_ROW "," KEY_ROW "," KEY_ROW "," KEY_ROW
#define KEY_UPSERT " ON CONFLICT (key_id)" SUMS_UPSERT

/* The five sums of kg_usage_totals_t, in its field order, over usage_minutes rows. */
#define USAGE_SUMS "sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), sum(cost_micro)"

/* Reads go to the per-minute rollup (migration 6), never to the raw records. One variant per
 * filter shape, because a prepared "?2 IS NULL OR key_id = ?2" cannot use an index. With a key,
 * "+org_id" keeps the planner on usage_minutes_by_key (key_id, minute_ms) and off the org and
 * team indexes. ?5 and ?6 are minute starts. The floor is written out because SQLite's %
 * truncates toward zero. */
#define USAGE_SERIES(org, filter)                                                                                      \
    "SELECT minute_ms - ((minute_ms % ?4) + ?4) % ?4 AS start, " USAGE_SUMS " FROM usage_minutes WHERE " org           \
    " = ?1" filter " AND minute_ms >= ?5 AND minute_ms < ?6 GROUP BY start ORDER BY start LIMIT ?7"

static const char *const sql_text[Q__COUNT] = {
    [Q_ORG_INSERT] = "INSERT INTO orgs (id, name, created_at, created_by) VALUES (?1, ?2, ?3, ?4)",
    [Q_ORG_GET] = "SELECT id, name, created_at, created_by FROM orgs WHERE id = ?1",
    [Q_ORG_GET_BY_NAME] = "SELECT id, name, created_at, created_by FROM orgs WHERE name = ?1",
    [Q_ENV_UPSERT] = "INSERT INTO environments (org_id, name, live, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                     " ON CONFLICT (org_id, name) DO UPDATE SET live = excluded.live, source = excluded.source",
    [Q_ENV_GET] = "SELECT org_id, name, live, source, created_at FROM environments WHERE org_id = ?1 AND name = ?2",
    [Q_ENV_LIST] = "SELECT org_id, name, live, source, created_at FROM environments WHERE org_id = ?1"
                   " ORDER BY created_at, rowid",
    [Q_ENV_DELETE] = "DELETE FROM environments WHERE org_id = ?1 AND name = ?2",
    [Q_ENV_COUNT] = "SELECT count(*) FROM tokens WHERE org_id = ?1 AND environment = ?2",
    [Q_TOKEN_INSERT] =
        "INSERT INTO tokens (id, org_id, team_id, name, description, environment, token_type, purpose, scopes, allow,"
        " allowed_domains, prompt_modules, prompt_text, rate_limits, budget, metadata, enabled, is_root, legacy_gk,"
        " expires_at, created_at, created_by, last_used_at, last_rotated_at, revoked_at, revoked_by, prefix, last4)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,"
        " ?23, ?24, ?25, ?26, ?27, ?28)",
    [Q_SECRET_INSERT] = "INSERT INTO token_secrets (hash, token_id, expires_at, created_at) VALUES (?1, ?2, NULL, ?3)",
    [Q_TOKEN_GET] = "SELECT id, org_id, team_id, name, description, environment, token_type, purpose, scopes, allow,"
                    " allowed_domains, prompt_modules, prompt_text, rate_limits, budget, metadata, enabled, is_root,"
                    " legacy_gk, expires_at, created_at, created_by, last_used_at, last_rotated_at, revoked_at,"
                    " revoked_by, prefix, last4, rotations FROM tokens WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)",
    [Q_TOKEN_UPDATE] =
        "UPDATE tokens SET team_id = ?2, name = ?3, description = ?4, scopes = ?5, allow = ?6, allowed_domains = ?7,"
        " prompt_modules = ?8, prompt_text = ?9, rate_limits = ?10, budget = ?11, metadata = ?12, enabled = ?13,"
        " expires_at = ?14, last_rotated_at = ?15, revoked_at = ?16, revoked_by = ?17, prefix = ?18, last4 = ?19,"
        " rotations = ?20 WHERE id = ?1",
    [Q_SECRET_DROP_GRACED] = "DELETE FROM token_secrets WHERE token_id = ?1 AND expires_at IS NOT NULL",
    [Q_SECRET_DROP_ALL] = "DELETE FROM token_secrets WHERE token_id = ?1",
    [Q_SECRET_SET_GRACE] = "UPDATE token_secrets SET expires_at = ?2 WHERE token_id = ?1 AND expires_at IS NULL",
    [Q_SECRET_LIST] = "SELECT hash, expires_at FROM token_secrets WHERE token_id = ?1"
                      " AND (expires_at IS NULL OR expires_at > ?2) ORDER BY expires_at IS NOT NULL, created_at DESC",
    [Q_TOKEN_TOUCH] =
        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    [Q_SECRET_FIND] = "SELECT token_id FROM token_secrets WHERE hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    [Q_ROOT_EXISTS] = "SELECT 1 FROM tokens WHERE is_root = 1 AND revoked_at IS NULL LIMIT 1",
    [Q_AUDIT_INSERT] = "INSERT INTO audit_events (org_id, actor, action, object_type, object_id, changes, remote_addr,"
                       " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_CHANGE_ADD] = "INSERT INTO changes (object_type, object_id, created_at) VALUES (?1, ?2, ?3)",
    [Q_CHANGE_LIST] = "SELECT seq, object_type, object_id FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [Q_CHANGE_LAST] = "SELECT coalesce(max(seq), 0) FROM changes",
    [Q_DATA_VERSION] = "PRAGMA data_version",
    [Q_USAGE_BATCH_ADD] = "INSERT INTO usage_batches (first_ms, last_ms, records) VALUES (?1, ?2, ?3)",
    [Q_USAGE_STORED_IDS] = "SELECT json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]') AS at"
                           " FROM usage_batches AS b, json_each(b.records) AS r"
                           " WHERE b.last_ms >= ?1 AND b.first_ms <= ?2 AND at BETWEEN ?1 AND ?2",
    [Q_USAGE_MINUTE_ADD] = "INSERT INTO usage_minutes (" MINUTE_COLUMNS ") VALUES " MINUTE_ROW MINUTE_UPSERT,
    [Q_USAGE_MINUTE_ADD_16] =
        "INSERT INTO usage_minutes (" MINUTE_COLUMNS ") VALUES " MINUTE_ROWS_8 "," MINUTE_ROWS_8 MINUTE_UPSERT,
    [Q_USAGE_KEY_ADD] = "INSERT INTO usage_keys (" KEY_COLUMNS ") VALUES " KEY_ROW KEY_UPSERT,
    [Q_USAGE_KEY_ADD_16] = "INSERT INTO usage_keys (" KEY_COLUMNS ") VALUES " KEY_ROWS_8 "," KEY_ROWS_8 KEY_UPSERT,
    /* A key id belongs to one org (tokens.id is the primary key), so org_id is the same on every
     * row of a group. The unary + keeps the planner on the primary key's range of minutes since
     * ?1 (then a sort): grouping along usage_minutes_by_key instead would read every row ever
     * stored, each through the index. */
    [Q_USAGE_TOTALS_BY_KEY] = "SELECT org_id, key_id, " USAGE_SUMS " FROM usage_minutes WHERE minute_ms >= ?1"
                              " GROUP BY +key_id",
    [Q_USAGE_TOTALS_BY_TEAM] = "SELECT org_id, team_id, " USAGE_SUMS " FROM usage_minutes WHERE minute_ms >= ?1"
                               " AND team_id <> '' GROUP BY +org_id, +team_id",
    /* All time (the budgets without a period): a row per key, or the whole rollup in the team
     * index's order (no sort). */
    [Q_USAGE_TOTALS_BY_KEY_ALL] = "SELECT org_id, key_id, requests, errors, input_tokens, output_tokens, cost_micro"
                                  " FROM usage_keys",
    [Q_USAGE_TOTALS_BY_TEAM_ALL] = "SELECT org_id, team_id, " USAGE_SUMS " FROM usage_minutes WHERE team_id <> ''"
                                   " GROUP BY org_id, team_id",
    [Q_USAGE_KEY_TOTALS] = "SELECT requests, errors, input_tokens, output_tokens, cost_micro FROM usage_keys"
                           " WHERE key_id = ?1",
    [Q_USAGE_SERIES] = USAGE_SERIES("org_id", ""),
    [Q_USAGE_SERIES_KEY] = USAGE_SERIES("+org_id", " AND key_id = ?2"),
    [Q_USAGE_SERIES_TEAM] = USAGE_SERIES("org_id", " AND team_id = ?3"),
    [Q_USAGE_SERIES_KEY_TEAM] = USAGE_SERIES("+org_id", " AND key_id = ?2 AND team_id = ?3"),
};

/* One usage_minutes row being summed by kg_store_usage_insert: the records newly stored in a
 * batch, per key, org, team and minute. */
typedef struct usage_group {
    const kg_usage_record_t *rec; /* the group's first record: its key, org and team */
    int64_t minute_ms;
    uint64_t hash;
    kg_usage_totals_t t;
} usage_group_t;

struct kg_store {
    sqlite3 *db;
    sqlite3_stmt *stmts[Q__COUNT];
    int schema_version;
    bool background; /* kg_store_set_background */
    /* kg_store_usage_insert's scratch, kept between calls: groups, an open-addressing table of
     * group index + 1 (0 = empty), and the batch's JSON */
    usage_group_t *groups;
    size_t groups_cap;
    uint32_t *slots;
    size_t slots_cap;
    usage_group_t *group_last; /* the group of the record added last, or NULL */
    char *json;
    size_t json_cap;
};

/* ==== Helpers ==== */

void kg_store_set_background(kg_store_t *st, bool background)
{
    st->background = background;
}

/* Between the statements of a long write on a background connection: lets any other thread
 * that is ready to run on this core go first (Linux's CFS and EEVDF put the caller behind it). */
static void let_others_run(const kg_store_t *st)
{
    if (st->background)
        sched_yield();
}

/* A prepared statement, ready to bind (reset and unbound). */
static sqlite3_stmt *stmt(kg_store_t *st, int q)
{
    if (st->stmts[q] == NULL &&
        sqlite3_prepare_v3(st->db, sql_text[q], -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[q], NULL) != SQLITE_OK) {
        fprintf(stderr, "keygate: cannot prepare statement %d: %s\n", q, sqlite3_errmsg(st->db));
        return NULL;
    }
    return st->stmts[q];
}

/* Resets a statement after use; bindings are cleared so no borrowed buffer outlives the call. */
static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v != NULL)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* 0 means "unset" for every optional time column. */
static void bind_time(sqlite3_stmt *s, int i, int64_t v)
{
    if (v != 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v != NULL ? kg_xstrdup((const char *)v) : NULL;
}

/* A column's text, borrowed: valid until the statement steps again. */
static char *col_borrow(sqlite3_stmt *s, int i)
{
    return (char *)sqlite3_column_text(s, i);
}

/* Runs a statement expected to return no rows. */
static kg_err_t exec_done(kg_store_t *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    done(s);
    if (rc == SQLITE_DONE)
        return KG_OK;
    if (rc == SQLITE_CONSTRAINT)
        return KG_ECONFLICT;
    fprintf(stderr, "keygate: store write failed: %s\n", sqlite3_errmsg(st->db));
    return KG_ESTORE;
}

/* ==== Lifecycle ==== */

static kg_store_t *open_with_flags(const char *path, int flags, char *err, size_t err_cap)
{
    kg_store_t *st = kg_xcalloc(1, sizeof(*st));
    if (sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, err_cap, "cannot open %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 10000);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", NULL,
                     NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_cap, "cannot configure %s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    st->schema_version = kg__store_migrate(st->db, err, err_cap);
    if (st->schema_version < 0)
        goto fail;
    return st;
fail:
    kg_store_close(st);
    return NULL;
}

kg_store_t *kg_store_open(const char *path, char *err, size_t err_cap)
{
    return open_with_flags(path, SQLITE_OPEN_CREATE, err, err_cap);
}

kg_store_t *kg_store_open_existing(const char *path, kg_err_t *code, char *err, size_t err_cap)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        *code = KG_ENOT_FOUND;
        snprintf(err, err_cap, "%s does not exist", path);
        return NULL;
    }
    *code = KG_ESTORE;
    return open_with_flags(path, 0, err, err_cap);
}

void kg_store_close(kg_store_t *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    sqlite3_close(st->db);
    free(st->groups);
    free(st->slots);
    free(st->json);
    free(st);
}

int kg_store_schema_version(kg_store_t *st)
{
    return st->schema_version;
}

kg_err_t kg_store_begin(kg_store_t *st)
{
    return sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_begin_read(kg_store_t *st)
{
    return sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_commit(kg_store_t *st)
{
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return KG_OK;
    fprintf(stderr, "keygate: commit failed: %s\n", sqlite3_errmsg(st->db));
    kg_store_rollback(st);
    return KG_ESTORE;
}

void kg_store_rollback(kg_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ==== Orgs ==== */

void kg_org_dispose(kg_org_t *o)
{
    free(o->id), free(o->name), free(o->created_by);
    memset(o, 0, sizeof(*o));
}

kg_err_t kg_store_org_insert(kg_store_t *st, const kg_org_t *o)
{
    sqlite3_stmt *s = stmt(st, Q_ORG_INSERT);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, o->id), bind_text(s, 2, o->name), sqlite3_bind_int64(s, 3, o->created_at);
    bind_text(s, 4, o->created_by);
    return exec_done(st, s);
}

static void read_org(sqlite3_stmt *s, kg_org_t *out)
{
    out->id = col_text(s, 0), out->name = col_text(s, 1), out->created_at = sqlite3_column_int64(s, 2);
    out->created_by = col_text(s, 3);
}

static kg_err_t org_get_one(kg_store_t *st, int q, const char *key, kg_org_t *out)
{
    sqlite3_stmt *s = stmt(st, q);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_org(s, out);
    done(s);
    return rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
}

kg_err_t kg_store_org_get(kg_store_t *st, const char *id, kg_org_t *out)
{
    return org_get_one(st, Q_ORG_GET, id, out);
}

kg_err_t kg_store_org_get_by_name(kg_store_t *st, const char *name, kg_org_t *out)
{
    return org_get_one(st, Q_ORG_GET_BY_NAME, name, out);
}

kg_err_t kg_store_org_list(kg_store_t *st, const char *after, size_t limit, kg_org_t **out, size_t *n_out)
{
    sqlite3_stmt *s = NULL;
    const char *sql = "SELECT id, name, created_at, created_by FROM orgs"
                      " WHERE ?1 IS NULL OR rowid > (SELECT rowid FROM orgs WHERE id = ?1) ORDER BY rowid LIMIT ?2";
    size_t n = 0;
    int rc;

    *out = NULL, *n_out = 0;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, after);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
    kg_org_t *list = kg_xcalloc(limit, sizeof(*list));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < limit)
        read_org(s, &list[n++]);
    sqlite3_finalize(s);
    *out = list, *n_out = n;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

/* ==== Environments ==== */

void kg_environment_dispose(kg_environment_t *e)
{
    free(e->org_id), free(e->name), free(e->source);
    memset(e, 0, sizeof(*e));
}

kg_err_t kg_store_environment_upsert(kg_store_t *st, const kg_environment_t *e)
{
    sqlite3_stmt *s = stmt(st, Q_ENV_UPSERT);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, e->org_id), bind_text(s, 2, e->name), sqlite3_bind_int(s, 3, e->live);
    bind_text(s, 4, e->source), sqlite3_bind_int64(s, 5, e->created_at);
    return exec_done(st, s);
}

static void read_env(sqlite3_stmt *s, kg_environment_t *e)
{
    e->org_id = col_text(s, 0), e->name = col_text(s, 1), e->live = sqlite3_column_int(s, 2) != 0;
    e->source = col_text(s, 3), e->created_at = sqlite3_column_int64(s, 4);
}

kg_err_t kg_store_environment_get(kg_store_t *st, const char *org_id, const char *name, kg_environment_t *out)
{
    sqlite3_stmt *s = stmt(st, Q_ENV_GET);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, org_id), bind_text(s, 2, name);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_env(s, out);
    done(s);
    return rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
}

kg_err_t kg_store_environment_list(kg_store_t *st, const char *org_id, kg_environment_t **out, size_t *n_out)
{
    sqlite3_stmt *s = stmt(st, Q_ENV_LIST);
    size_t n = 0, cap = 8;
    int rc;
    if (s == NULL)
        return KG_ESTORE;
    kg_environment_t *list = kg_xcalloc(cap, sizeof(*list));
    bind_text(s, 1, org_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap *= 2;
            kg_environment_t *grown = realloc(list, cap * sizeof(*list));
            if (grown == NULL)
                break;
            list = grown;
        }
        memset(&list[n], 0, sizeof(list[n]));
        read_env(s, &list[n++]);
    }
    done(s);
    *out = list, *n_out = n;
    return rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_environment_delete(kg_store_t *st, const char *org_id, const char *name)
{
    sqlite3_stmt *s = stmt(st, Q_ENV_DELETE);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, org_id), bind_text(s, 2, name);
    kg_err_t rv = exec_done(st, s);
    if (rv == KG_OK && sqlite3_changes(st->db) == 0)
        rv = KG_ENOT_FOUND;
    return rv;
}

kg_err_t kg_store_environment_token_count(kg_store_t *st, const char *org_id, const char *name, int64_t *count)
{
    sqlite3_stmt *s = stmt(st, Q_ENV_COUNT);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, org_id), bind_text(s, 2, name);
    int rc = sqlite3_step(s);
    *count = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    done(s);
    return rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

/* ==== Tokens ==== */

#define TOKEN_COLUMNS                                                                                                  \
    "id, org_id, team_id, name, description, environment, token_type, purpose, scopes, allow, allowed_domains,"        \
    " prompt_modules, prompt_text, rate_limits, budget, metadata, enabled, is_root, legacy_gk, expires_at, "           \
    "created_at,"                                                                                                      \
    " created_by, last_used_at, last_rotated_at, revoked_at, revoked_by, prefix, last4, rotations"

static void read_token(sqlite3_stmt *s, kg_token_t *t)
{
    const unsigned char *type = sqlite3_column_text(s, 6);
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", (const char *)sqlite3_column_text(s, 0));
    t->org_id = col_text(s, 1), t->team_id = col_text(s, 2), t->name = col_text(s, 3);
    t->description = col_text(s, 4), t->environment = col_text(s, 5);
    if (type == NULL || !kg_token_type_parse((const char *)type, &t->type))
        t->type = KG_TOKEN_ACCESS;
    t->purpose = col_text(s, 7), t->scopes = col_text(s, 8), t->allow = col_text(s, 9);
    t->allowed_domains = col_text(s, 10), t->prompt_modules = col_text(s, 11), t->prompt_text = col_text(s, 12);
    t->rate_limits = col_text(s, 13), t->budget = col_text(s, 14), t->metadata = col_text(s, 15);
    t->enabled = sqlite3_column_int(s, 16) != 0, t->is_root = sqlite3_column_int(s, 17) != 0;
    t->legacy_gk = sqlite3_column_int(s, 18) != 0;
    t->expires_at = sqlite3_column_int64(s, 19), t->created_at = sqlite3_column_int64(s, 20);
    t->created_by = col_text(s, 21), t->last_used_at = sqlite3_column_int64(s, 22);
    t->last_rotated_at = sqlite3_column_int64(s, 23), t->revoked_at = sqlite3_column_int64(s, 24);
    t->revoked_by = col_text(s, 25);
    snprintf(t->prefix, sizeof(t->prefix), "%s", (const char *)sqlite3_column_text(s, 26));
    snprintf(t->last4, sizeof(t->last4), "%s", (const char *)sqlite3_column_text(s, 27));
    t->rotations = sqlite3_column_int64(s, 28);
}

kg_err_t kg_store_token_insert(kg_store_t *st, const kg_token_t *t, const uint8_t hash[KG_KEY_HASH_BYTES])
{
    sqlite3_stmt *s = stmt(st, Q_TOKEN_INSERT);
    kg_err_t rv;
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, t->id), bind_text(s, 2, t->org_id), bind_text(s, 3, t->team_id), bind_text(s, 4, t->name);
    bind_text(s, 5, t->description), bind_text(s, 6, t->environment);
    bind_text(s, 7, kg_token_type_name(t->type)), bind_text(s, 8, t->purpose), bind_text(s, 9, t->scopes);
    bind_text(s, 10, t->allow), bind_text(s, 11, t->allowed_domains), bind_text(s, 12, t->prompt_modules);
    bind_text(s, 13, t->prompt_text), bind_text(s, 14, t->rate_limits), bind_text(s, 15, t->budget);
    bind_text(s, 16, t->metadata), sqlite3_bind_int(s, 17, t->enabled), sqlite3_bind_int(s, 18, t->is_root);
    sqlite3_bind_int(s, 19, t->legacy_gk), bind_time(s, 20, t->expires_at);
    sqlite3_bind_int64(s, 21, t->created_at), bind_text(s, 22, t->created_by), bind_time(s, 23, t->last_used_at);
    bind_time(s, 24, t->last_rotated_at), bind_time(s, 25, t->revoked_at), bind_text(s, 26, t->revoked_by);
    bind_text(s, 27, t->prefix), bind_text(s, 28, t->last4);
    if ((rv = exec_done(st, s)) != KG_OK)
        return rv;
    if ((s = stmt(st, Q_SECRET_INSERT)) == NULL)
        return KG_ESTORE;
    sqlite3_bind_blob(s, 1, hash, KG_KEY_HASH_BYTES, SQLITE_STATIC);
    bind_text(s, 2, t->id), sqlite3_bind_int64(s, 3, t->created_at);
    return exec_done(st, s);
}

kg_err_t kg_store_token_get(kg_store_t *st, const char *id, const char *org_id, kg_token_t *out)
{
    sqlite3_stmt *s = stmt(st, Q_TOKEN_GET);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, id), bind_text(s, 2, org_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_token(s, out);
    done(s);
    return rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
}

kg_err_t kg_store_token_update(kg_store_t *st, const kg_token_t *t)
{
    sqlite3_stmt *s = stmt(st, Q_TOKEN_UPDATE);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, t->id), bind_text(s, 2, t->team_id), bind_text(s, 3, t->name), bind_text(s, 4, t->description);
    bind_text(s, 5, t->scopes), bind_text(s, 6, t->allow), bind_text(s, 7, t->allowed_domains);
    bind_text(s, 8, t->prompt_modules), bind_text(s, 9, t->prompt_text), bind_text(s, 10, t->rate_limits);
    bind_text(s, 11, t->budget), bind_text(s, 12, t->metadata), sqlite3_bind_int(s, 13, t->enabled);
    bind_time(s, 14, t->expires_at), bind_time(s, 15, t->last_rotated_at), bind_time(s, 16, t->revoked_at);
    bind_text(s, 17, t->revoked_by), bind_text(s, 18, t->prefix), bind_text(s, 19, t->last4);
    sqlite3_bind_int64(s, 20, t->rotations);
    kg_err_t rv = exec_done(st, s);
    if (rv == KG_OK && sqlite3_changes(st->db) == 0)
        rv = KG_ENOT_FOUND;
    return rv;
}

void kg_token_list_free(kg_token_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kg_token_dispose(&list[i]);
    free(list);
}

kg_err_t kg_store_token_list(kg_store_t *st, const kg_token_filter_t *f, kg_token_t **out, size_t *n_out,
                             bool *has_more)
{
    /* Status is derived (SPEC §3), so it is filtered with the same precedence as kg_token_status. */
    static const char *const status_sql[] = {
        " AND revoked_at IS NULL AND enabled = 1 AND (expires_at IS NULL OR expires_at > ?7)",
        " AND revoked_at IS NULL AND enabled = 0",
        " AND revoked_at IS NULL AND enabled = 1 AND expires_at IS NOT NULL AND expires_at <= ?7",
        " AND revoked_at IS NOT NULL",
    };
    char sql[2048];
    sqlite3_stmt *s = NULL;
    size_t n = 0, cap = 16;
    int rc;

    snprintf(sql, sizeof(sql),
             "SELECT " TOKEN_COLUMNS
             " FROM tokens WHERE (?1 IS NULL OR org_id = ?1) AND (?2 IS NULL OR token_type = ?2)"
             " AND (?3 IS NULL OR environment = ?3) AND (?4 IS NULL OR team_id = ?4)"
             " AND (?5 IS NULL OR rowid < (SELECT rowid FROM tokens WHERE id = ?5 AND (?1 IS NULL OR org_id = ?1)))%s"
             " ORDER BY rowid DESC LIMIT ?6",
             f->status >= 0 && f->status <= KG_STATUS_REVOKED ? status_sql[f->status] : "");
    *out = NULL, *n_out = 0, *has_more = false;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, f->org_id);
    bind_text(s, 2, f->type >= 0 ? kg_token_type_name((kg_token_type_t)f->type) : NULL);
    bind_text(s, 3, f->environment), bind_text(s, 4, f->team_id), bind_text(s, 5, f->after);
    sqlite3_bind_int64(s, 6, f->limit > 0 ? (sqlite3_int64)f->limit + 1 : -1);
    sqlite3_bind_int64(s, 7, f->now);
    kg_token_t *list = kg_xcalloc(cap, sizeof(*list));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (f->limit > 0 && n == f->limit) {
            *has_more = true;
            continue;
        }
        if (n == cap) {
            kg_token_t *grown = realloc(list, 2 * cap * sizeof(*list));
            if (grown == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            list = grown, cap *= 2;
        }
        read_token(s, &list[n++]);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        kg_token_list_free(list, n);
        return KG_ESTORE;
    }
    *out = list, *n_out = n;
    return KG_OK;
}

kg_err_t kg_store_token_rotate(kg_store_t *st, const char *id, const uint8_t new_hash[KG_KEY_HASH_BYTES], int64_t now,
                               int64_t grace_until)
{
    sqlite3_stmt *s;
    kg_err_t rv;

    /* A second rotation ends the first grace at once. */
    if ((s = stmt(st, Q_SECRET_DROP_GRACED)) == NULL)
        return KG_ESTORE;
    bind_text(s, 1, id);
    if ((rv = exec_done(st, s)) != KG_OK)
        return rv;
    if (grace_until > now) {
        if ((s = stmt(st, Q_SECRET_SET_GRACE)) == NULL)
            return KG_ESTORE;
        bind_text(s, 1, id), sqlite3_bind_int64(s, 2, grace_until);
    } else {
        if ((s = stmt(st, Q_SECRET_DROP_ALL)) == NULL)
            return KG_ESTORE;
        bind_text(s, 1, id);
    }
    if ((rv = exec_done(st, s)) != KG_OK)
        return rv;
    if ((s = stmt(st, Q_SECRET_INSERT)) == NULL)
        return KG_ESTORE;
    sqlite3_bind_blob(s, 1, new_hash, KG_KEY_HASH_BYTES, SQLITE_STATIC);
    bind_text(s, 2, id), sqlite3_bind_int64(s, 3, now);
    return exec_done(st, s);
}

kg_err_t kg_store_token_secrets(kg_store_t *st, const char *id, int64_t now, kg_token_secret_t out[2], size_t *n_out)
{
    sqlite3_stmt *s = stmt(st, Q_SECRET_LIST);
    size_t n = 0;
    int rc;
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, id), sqlite3_bind_int64(s, 2, now);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == 2 || sqlite3_column_bytes(s, 0) != KG_KEY_HASH_BYTES)
            continue;
        memcpy(out[n].hash, sqlite3_column_blob(s, 0), KG_KEY_HASH_BYTES);
        out[n].expires_at = sqlite3_column_int64(s, 1);
        n++;
    }
    done(s);
    *n_out = n;
    return rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_token_scan(kg_store_t *st, kg_token_scan_fn fn, void *ctx)
{
    sqlite3_stmt *s = NULL;
    int rc;
    /* Only what the key index is built from: decoding the other columns was a third of the scan. */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, org_id, team_id, environment, token_type, scopes, allow, allowed_domains,"
                           " prompt_modules, prompt_text, rate_limits, budget, enabled, is_root, expires_at,"
                           " revoked_at, rotations FROM tokens",
                           -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kg_token_t t = {0};
        const unsigned char *id = sqlite3_column_text(s, 0), *type = sqlite3_column_text(s, 4);
        if (id == NULL || (size_t)sqlite3_column_bytes(s, 0) > KG_KEY_ID_LEN)
            continue;
        memcpy(t.id, id, (size_t)sqlite3_column_bytes(s, 0));
        t.org_id = col_borrow(s, 1), t.team_id = col_borrow(s, 2), t.environment = col_borrow(s, 3);
        if (type == NULL || !kg_token_type_parse((const char *)type, &t.type))
            t.type = KG_TOKEN_ACCESS;
        t.scopes = col_borrow(s, 5), t.allow = col_borrow(s, 6), t.allowed_domains = col_borrow(s, 7);
        t.prompt_modules = col_borrow(s, 8), t.prompt_text = col_borrow(s, 9), t.rate_limits = col_borrow(s, 10);
        t.budget = col_borrow(s, 11), t.enabled = sqlite3_column_int(s, 12) != 0;
        t.is_root = sqlite3_column_int(s, 13) != 0, t.expires_at = sqlite3_column_int64(s, 14);
        t.revoked_at = sqlite3_column_int64(s, 15), t.rotations = sqlite3_column_int64(s, 16);
        if (!fn(ctx, &t)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_secret_scan(kg_store_t *st, int64_t now, kg_secret_scan_fn fn, void *ctx)
{
    sqlite3_stmt *s = NULL;
    int rc;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT token_id, hash, expires_at, created_at FROM token_secrets"
                           " WHERE expires_at IS NULL OR expires_at > ?1",
                           -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    sqlite3_bind_int64(s, 1, now);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(s, 0);
        if (id == NULL || sqlite3_column_bytes(s, 1) != KG_KEY_HASH_BYTES)
            continue;
        kg_token_secret_t sec = {.expires_at = sqlite3_column_int64(s, 2)};
        memcpy(sec.hash, sqlite3_column_blob(s, 1), KG_KEY_HASH_BYTES);
        fn(ctx, (const char *)id, &sec, sqlite3_column_int64(s, 3));
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_token_count(kg_store_t *st, size_t *n)
{
    sqlite3_stmt *s = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM tokens", -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = (size_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_token_id_by_hash(kg_store_t *st, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                                   char id[KG_KEY_ID_LEN + 1])
{
    sqlite3_stmt *s = stmt(st, Q_SECRET_FIND);
    if (s == NULL)
        return KG_ESTORE;
    sqlite3_bind_blob(s, 1, hash, KG_KEY_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(id, KG_KEY_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(s, 0));
    done(s);
    return rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
}

kg_err_t kg_store_token_touch_batch(kg_store_t *st, const char *const *ids, const int64_t *at, size_t n)
{
    kg_err_t rv = KG_OK;
    sqlite3_stmt *s = stmt(st, Q_TOKEN_TOUCH);
    if (s == NULL || n == 0)
        return s == NULL ? KG_ESTORE : KG_OK;
    /* Last use is advisory: NORMAL durability is plenty and keeps the batch cheap. */
    sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    if ((rv = kg_store_begin(st)) == KG_OK) {
        for (size_t i = 0; i < n && rv == KG_OK; i++) {
            bind_text(s, 1, ids[i]), sqlite3_bind_int64(s, 2, at[i]);
            rv = exec_done(st, s);
            if (i % 64 == 63)
                let_others_run(st);
        }
        if (rv == KG_OK)
            rv = kg_store_commit(st);
        else
            kg_store_rollback(st);
    }
    sqlite3_exec(st->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    return rv;
}

kg_err_t kg_store_root_exists(kg_store_t *st, bool *exists)
{
    sqlite3_stmt *s = stmt(st, Q_ROOT_EXISTS);
    if (s == NULL)
        return KG_ESTORE;
    int rc = sqlite3_step(s);
    *exists = rc == SQLITE_ROW;
    done(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

/* ==== Catalog objects ==== */

void kg_catalog_row_dispose(kg_catalog_row_t *r)
{
    free(r->org_id), free(r->kind), free(r->name), free(r->spec), free(r->source), free(r->org_name);
    memset(r, 0, sizeof(*r));
}

void kg_catalog_rows_free(kg_catalog_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kg_catalog_row_dispose(&rows[i]);
    free(rows);
}

static kg_err_t exec_sql(kg_store_t *st, const char *sql, const char *const *params, size_t n)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    for (size_t i = 0; i < n; i++)
        bind_text(s, (int)i + 1, params[i]);
    kg_err_t rv = exec_done(st, s);
    sqlite3_finalize(s);
    return rv;
}

kg_err_t kg_store_catalog_put(kg_store_t *st, const kg_catalog_row_t *r)
{
    sqlite3_stmt *s = NULL;
    const char *sql = "INSERT INTO catalog_objects (org_id, kind, name, spec, source, created_at, updated_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (org_id, kind, name) DO UPDATE SET"
                      " spec = excluded.spec, source = excluded.source, updated_at = excluded.updated_at";
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, r->org_id), bind_text(s, 2, r->kind), bind_text(s, 3, r->name), bind_text(s, 4, r->spec);
    bind_text(s, 5, r->source), sqlite3_bind_int64(s, 6, r->updated_at);
    kg_err_t rv = exec_done(st, s);
    sqlite3_finalize(s);
    return rv;
}

static void read_catalog_row(sqlite3_stmt *s, kg_catalog_row_t *r)
{
    r->org_id = col_text(s, 0), r->kind = col_text(s, 1), r->name = col_text(s, 2), r->spec = col_text(s, 3);
    r->source = col_text(s, 4), r->created_at = sqlite3_column_int64(s, 5), r->updated_at = sqlite3_column_int64(s, 6);
}

kg_err_t kg_store_catalog_get(kg_store_t *st, const char *org_id, const char *kind, const char *name,
                              kg_catalog_row_t *out)
{
    sqlite3_stmt *s = NULL;
    const char *sql = "SELECT org_id, kind, name, spec, source, created_at, updated_at FROM catalog_objects"
                      " WHERE org_id = ?1 AND kind = ?2 AND name = ?3";
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, org_id), bind_text(s, 2, kind), bind_text(s, 3, name);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_catalog_row(s, out);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
}

kg_err_t kg_store_catalog_delete(kg_store_t *st, const char *org_id, const char *kind, const char *name)
{
    const char *params[] = {org_id, kind, name};
    kg_err_t rv = exec_sql(st, "DELETE FROM catalog_objects WHERE org_id = ?1 AND kind = ?2 AND name = ?3", params, 3);
    if (rv == KG_OK && sqlite3_changes(st->db) == 0)
        rv = KG_ENOT_FOUND;
    return rv;
}

kg_err_t kg_store_catalog_delete_source(kg_store_t *st, const char *org_id, const char *source)
{
    const char *params[] = {org_id, source};
    return exec_sql(st, "DELETE FROM catalog_objects WHERE org_id = ?1 AND source = ?2", params, 2);
}

kg_err_t kg_store_catalog_list(kg_store_t *st, const char *org_id, const char *kind, kg_catalog_row_t **out,
                               size_t *n_out)
{
    sqlite3_stmt *s = NULL;
    const char *sql = "SELECT org_id, kind, name, spec, source, created_at, updated_at FROM catalog_objects"
                      " WHERE (?1 IS NULL OR org_id = ?1) AND (?2 IS NULL OR kind = ?2) ORDER BY org_id, kind, name";
    size_t n = 0, cap = 16;
    int rc;
    *out = NULL, *n_out = 0;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, org_id), bind_text(s, 2, kind);
    kg_catalog_row_t *rows = kg_xcalloc(cap, sizeof(*rows));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            kg_catalog_row_t *grown = realloc(rows, 2 * cap * sizeof(*rows));
            if (grown == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            rows = grown, cap *= 2;
        }
        memset(&rows[n], 0, sizeof(rows[n]));
        read_catalog_row(s, &rows[n++]);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        kg_catalog_rows_free(rows, n);
        return KG_ESTORE;
    }
    *out = rows, *n_out = n;
    return KG_OK;
}

/* ==== Deployment values ==== */

kg_err_t kg_store_meta_get(kg_store_t *st, const char *k, void *out, size_t len)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT v FROM meta WHERE k = ?1", -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, k);
    int rc = sqlite3_step(s);
    kg_err_t rv = rc == SQLITE_ROW ? KG_OK : rc == SQLITE_DONE ? KG_ENOT_FOUND : KG_ESTORE;
    if (rv == KG_OK && (size_t)sqlite3_column_bytes(s, 0) == len)
        memcpy(out, sqlite3_column_blob(s, 0), len);
    else if (rv == KG_OK)
        rv = KG_ESTORE;
    sqlite3_finalize(s);
    return rv;
}

kg_err_t kg_store_meta_put_new(kg_store_t *st, const char *k, const void *v, size_t len)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO meta (k, v) VALUES (?1, ?2)", -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, k);
    sqlite3_bind_blob(s, 2, v, (int)len, SQLITE_STATIC);
    kg_err_t rv = exec_done(st, s);
    sqlite3_finalize(s);
    return rv;
}

/* ==== Audit ==== */

void kg_audit_event_dispose(kg_audit_event_t *e)
{
    free(e->org_id), free(e->actor), free(e->action), free(e->object_type), free(e->object_id), free(e->changes);
    free(e->remote_addr);
    memset(e, 0, sizeof(*e));
}

kg_err_t kg_store_audit_insert(kg_store_t *st, const kg_audit_event_t *e)
{
    sqlite3_stmt *s = stmt(st, Q_AUDIT_INSERT);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, e->org_id), bind_text(s, 2, e->actor), bind_text(s, 3, e->action);
    bind_text(s, 4, e->object_type), bind_text(s, 5, e->object_id), bind_text(s, 6, e->changes);
    bind_text(s, 7, e->remote_addr), sqlite3_bind_int64(s, 8, e->created_at);
    return exec_done(st, s);
}

kg_err_t kg_store_audit_list(kg_store_t *st, const kg_audit_filter_t *f, kg_audit_event_t **out, size_t *n_out,
                             bool *has_more)
{
    const char *sql = "SELECT id, org_id, actor, action, object_type, object_id, changes, remote_addr, created_at"
                      " FROM audit_events WHERE (?1 IS NULL OR org_id = ?1) AND (?2 IS NULL OR object_id = ?2)"
                      " AND (?3 = 0 OR created_at >= ?3) AND (?4 = 0 OR created_at <= ?4) AND (?5 = 0 OR id < ?5)"
                      " ORDER BY id DESC LIMIT ?6";
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    int rc;

    *out = NULL, *n_out = 0, *has_more = false;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return KG_ESTORE;
    bind_text(s, 1, f->org_id), bind_text(s, 2, f->object_id);
    sqlite3_bind_int64(s, 3, f->from), sqlite3_bind_int64(s, 4, f->to), sqlite3_bind_int64(s, 5, f->after);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)f->limit + 1);
    kg_audit_event_t *list = kg_xcalloc(f->limit + 1, sizeof(*list));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == f->limit) {
            *has_more = true;
            continue;
        }
        kg_audit_event_t *e = &list[n++];
        e->id = sqlite3_column_int64(s, 0), e->org_id = col_text(s, 1), e->actor = col_text(s, 2);
        e->action = col_text(s, 3), e->object_type = col_text(s, 4), e->object_id = col_text(s, 5);
        e->changes = col_text(s, 6), e->remote_addr = col_text(s, 7), e->created_at = sqlite3_column_int64(s, 8);
    }
    sqlite3_finalize(s);
    *out = list, *n_out = n;
    return rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

/* ==== Change feed ==== */

kg_err_t kg_store_change_add(kg_store_t *st, const char *object_type, const char *object_id, int64_t now)
{
    sqlite3_stmt *s = stmt(st, Q_CHANGE_ADD);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, object_type), bind_text(s, 2, object_id), sqlite3_bind_int64(s, 3, now);
    return exec_done(st, s);
}

kg_err_t kg_store_change_list(kg_store_t *st, int64_t since, kg_change_t *out, size_t cap, size_t *n_out)
{
    sqlite3_stmt *s = stmt(st, Q_CHANGE_LIST);
    size_t n = 0;
    int rc;
    if (s == NULL)
        return KG_ESTORE;
    sqlite3_bind_int64(s, 1, since), sqlite3_bind_int64(s, 2, (sqlite3_int64)cap);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < cap) {
        out[n].seq = sqlite3_column_int64(s, 0);
        snprintf(out[n].object_type, sizeof(out[n].object_type), "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(out[n].object_id, sizeof(out[n].object_id), "%s", (const char *)sqlite3_column_text(s, 2));
        n++;
    }
    done(s);
    *n_out = n;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_change_last(kg_store_t *st, int64_t *seq)
{
    sqlite3_stmt *s = stmt(st, Q_CHANGE_LAST);
    if (s == NULL)
        return KG_ESTORE;
    int rc = sqlite3_step(s);
    *seq = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    done(s);
    return rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_data_version(kg_store_t *st, int64_t *out)
{
    sqlite3_stmt *s = stmt(st, Q_DATA_VERSION);
    if (s == NULL)
        return KG_ESTORE;
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    done(s);
    return rc == SQLITE_ROW ? KG_OK : KG_ESTORE;
}

/* ==== Usage ==== */

/* A record may come from a journal slot, so its strings are read within their arrays and never
 * past them, even if a torn write lost the terminating NUL. */
static void bind_field(sqlite3_stmt *s, int i, const char *v, size_t cap)
{
    sqlite3_bind_text(s, i, v, (int)strnlen(v, cap), SQLITE_STATIC);
}

#define BIND_FIELD(s, i, rec, field) bind_field((s), (i), (rec)->field, sizeof((rec)->field))

#define MINUTE_MS 60000

/* floor(ms / 1 min) * 1 min: the start of the UTC minute holding `ms` (INT64_MIN for the few
 * instants whose minute starts before it). */
static int64_t minute_of(int64_t ms)
{
    int64_t r = ms % MINUTE_MS;
    if (r < 0)
        r += MINUTE_MS;
    return ms >= INT64_MIN + r ? ms - r : INT64_MIN;
}

/* A sum of journaled values never wraps (a torn record may hold anything): it saturates. */
static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* FNV-1a over a string read within its array. */
static uint64_t hash_field(uint64_t h, const char *v, size_t cap)
{
    for (size_t i = 0; i < cap && v[i] != '\0'; i++)
        h = (h ^ (unsigned char)v[i]) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL; /* a separator: ("ab", "c") is not ("a", "bc") */
}

#define SAME_FIELD(a, b, field) (strncmp((a)->field, (b)->field, sizeof((a)->field)) == 0)

/* Whether record r, finished in minute, belongs to group g. */
static bool group_holds(const usage_group_t *g, int64_t minute, const kg_usage_record_t *r)
{
    return g->minute_ms == minute && SAME_FIELD(g->rec, r, key_id) && SAME_FIELD(g->rec, r, org_id) &&
           SAME_FIELD(g->rec, r, team_id);
}

/* The group of record r (finished in minute), made if r is the first of it. The tables hold at
 * least 2 * n slots for n records, so a free slot is always found. */
static usage_group_t *group_find(kg_store_t *st, size_t *n_groups, size_t slot_mask, int64_t minute,
                                 const kg_usage_record_t *r)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)minute;
    h = hash_field(h, r->key_id, sizeof(r->key_id)), h = hash_field(h, r->org_id, sizeof(r->org_id));
    h = hash_field(h, r->team_id, sizeof(r->team_id));
    for (size_t i = (size_t)(h ^ (h >> 29)) & slot_mask;; i = (i + 1) & slot_mask) {
        if (st->slots[i] == 0) {
            usage_group_t *g = &st->groups[*n_groups];
            memset(g, 0, sizeof(*g));
            g->rec = r, g->minute_ms = minute, g->hash = h;
            st->slots[i] = (uint32_t)(*n_groups += 1);
            return g;
        }
        usage_group_t *g = &st->groups[st->slots[i] - 1];
        if (g->hash == h && group_holds(g, minute, r))
            return g;
    }
}

/* Adds a newly stored record to its group. A batch comes in runs of one key's records (at one
 * key, it is one run), so the group of the record before is tried first: that spares the hash
 * of three strings. */
static void group_add(kg_store_t *st, size_t *n_groups, size_t slot_mask, const kg_usage_record_t *r)
{
    const int64_t minute = minute_of(r->at_ms);
    usage_group_t *g = st->group_last;
    if (g == NULL || !group_holds(g, minute, r))
        g = st->group_last = group_find(st, n_groups, slot_mask, minute, r);
    g->t.requests++;
    g->t.errors += r->status >= 400;
    g->t.input_tokens = add_sat(g->t.input_tokens, r->input_tokens);
    g->t.output_tokens = add_sat(g->t.output_tokens, r->output_tokens);
    g->t.cost_micro = add_sat(g->t.cost_micro, r->cost_micro);
}

/* Grows the scratch tables for a batch of n records; returns the slot mask. */
static size_t groups_reserve(kg_store_t *st, size_t n)
{
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    if (st->groups_cap < n) {
        free(st->groups);
        st->groups = kg_xcalloc(n, sizeof(*st->groups));
        st->groups_cap = n;
    }
    if (st->slots_cap < slots) {
        free(st->slots);
        st->slots = kg_xcalloc(slots, sizeof(*st->slots));
        st->slots_cap = slots;
    }
    memset(st->slots, 0, slots * sizeof(*st->slots));
    st->group_last = NULL;
    return slots - 1;
}

/* Binds a group's five sums to parameters o + 1 … o + 5. */
static void bind_sums(sqlite3_stmt *s, int o, const kg_usage_totals_t *t)
{
    sqlite3_bind_int64(s, o + 1, t->requests), sqlite3_bind_int64(s, o + 2, t->errors);
    sqlite3_bind_int64(s, o + 3, t->input_tokens), sqlite3_bind_int64(s, o + 4, t->output_tokens);
    sqlite3_bind_int64(s, o + 5, t->cost_micro);
}

/* Adds k groups to their rollup rows with one statement (k: 1 or 16): their minute rows, or
 * (all_time) their keys' rows. At a thousand keys a batch holds a group per key, and a statement
 * per group was most of the batch's rollup. */
static kg_err_t groups_store(kg_store_t *st, sqlite3_stmt *s, const usage_group_t *groups, size_t k, bool all_time)
{
    for (size_t i = 0; i < k; i++) {
        const usage_group_t *g = &groups[i];
        const kg_usage_record_t *r = g->rec;
        if (all_time) {
            const int o = 7 * (int)i;
            BIND_FIELD(s, o + 1, r, key_id), BIND_FIELD(s, o + 2, r, org_id), bind_sums(s, o + 2, &g->t);
        } else {
            const int o = 9 * (int)i;
            BIND_FIELD(s, o + 1, r, key_id), sqlite3_bind_int64(s, o + 2, g->minute_ms);
            BIND_FIELD(s, o + 3, r, org_id), BIND_FIELD(s, o + 4, r, team_id), bind_sums(s, o + 4, &g->t);
        }
    }
    return exec_done(st, s);
}

/* A record's identity (its request id and finish time: a replayed record has both), and which
 * record of the batch it is (0: a stored one). */
typedef struct id_seen {
    char id[sizeof(((kg_usage_record_t *)0)->request_id) + 1]; /* one more: a NUL even for a torn id */
    int64_t at_ms;
    size_t record; /* index + 1 */
} id_seen_t;

static int compare_identity(const id_seen_t *x, const id_seen_t *y)
{
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->at_ms > y->at_ms) - (x->at_ms < y->at_ms);
}

static int compare_seen(const void *a, const void *b)
{
    const id_seen_t *x = a, *y = b;
    int c = compare_identity(x, y);
    return c != 0 ? c : (x->record > y->record) - (x->record < y->record);
}

/*
 * Marks in fresh[] the records that are neither stored already nor repeated from an earlier
 * record of the batch, by request id and finish time. A stored copy of a record has its finish
 * time, so only the rows whose span meets the records' are read: after a crash, the last few.
 */
static kg_err_t mark_unseen(kg_store_t *st, const kg_usage_record_t *recs, size_t n, bool *fresh)
{
    sqlite3_stmt *s = stmt(st, Q_USAGE_STORED_IDS);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    size_t n_seen = n, cap = 2 * n;
    id_seen_t *seen = kg_xcalloc(cap, sizeof(*seen));
    int rc;

    if (s == NULL) {
        free(seen);
        return KG_ESTORE;
    }
    for (size_t i = 0; i < n; i++) {
        lo = recs[i].at_ms < lo ? recs[i].at_ms : lo, hi = recs[i].at_ms > hi ? recs[i].at_ms : hi;
        /* As the JSON has it: the id within its array (usage_json.c); calloc's NUL after it. */
        memcpy(seen[i].id, recs[i].request_id, strnlen(recs[i].request_id, sizeof(recs[i].request_id)));
        seen[i].at_ms = recs[i].at_ms;
        seen[i].record = i + 1;
    }
    sqlite3_bind_int64(s, 1, lo), sqlite3_bind_int64(s, 2, hi);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (id == NULL || len >= sizeof(seen[0].id))
            continue; /* no record of ours has it */
        if (n_seen == cap)
            seen = kg_xrealloc(seen, (cap *= 2) * sizeof(*seen));
        memset(&seen[n_seen], 0, sizeof(seen[n_seen]));
        memcpy(seen[n_seen].id, id, len);
        seen[n_seen++].at_ms = sqlite3_column_int64(s, 1);
    }
    done(s);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "keygate: usage lookup failed: %s\n", sqlite3_errmsg(st->db));
        free(seen);
        return KG_ESTORE;
    }
    /* Sorted by identity, a stored copy (0) before any record with it, records in batch order. */
    qsort(seen, n_seen, sizeof(*seen), compare_seen);
    for (size_t i = 0; i < n_seen; i++) {
        bool first_of_its_kind = i == 0 || compare_identity(&seen[i - 1], &seen[i]) != 0;
        if (seen[i].record != 0 && first_of_its_kind)
            fresh[seen[i].record - 1] = true;
    }
    free(seen);
    return KG_OK;
}

/* The rollups: one upsert per key, org, team and minute of the records just stored, and one
 * per group into its key's all-time row. */
static kg_err_t rollup_store(kg_store_t *st, size_t n_groups)
{
    for (int all_time = 0; all_time <= 1; all_time++) {
        sqlite3_stmt *add = stmt(st, all_time ? Q_USAGE_KEY_ADD : Q_USAGE_MINUTE_ADD);
        sqlite3_stmt *add_16 = stmt(st, all_time ? Q_USAGE_KEY_ADD_16 : Q_USAGE_MINUTE_ADD_16);
        if (add == NULL || add_16 == NULL)
            return KG_ESTORE;
        size_t g = 0;
        kg_err_t rv = KG_OK;
        for (; rv == KG_OK && n_groups - g >= 16; g += 16) {
            rv = groups_store(st, add_16, &st->groups[g], 16, all_time);
            if (g % 64 == 48)
                let_others_run(st);
        }
        for (; rv == KG_OK && g < n_groups; g++)
            rv = groups_store(st, add, &st->groups[g], 1, all_time);
        if (rv != KG_OK)
            return rv;
    }
    return KG_OK;
}

/* Records per usage_batches row: a row is encoded and written in one piece on a core the event
 * loops may share, so it is kept to a fraction of a millisecond (let_others_run between rows). */
#define RECORDS_PER_ROW 512

/* Stores records [from, to) (those marked in fresh[], or all when it is NULL) as one
 * usage_batches row and adds them to their groups. */
static kg_err_t row_store(kg_store_t *st, sqlite3_stmt *s, const kg_usage_record_t *recs, const bool *fresh,
                          size_t from, size_t to, size_t *n_groups, size_t mask, size_t *added)
{
    int64_t first = INT64_MAX, last = INT64_MIN;
    size_t kept = 0;
    for (size_t i = from; i < to; i++) {
        if (fresh != NULL && !fresh[i])
            continue;
        group_add(st, n_groups, mask, &recs[i]);
        first = recs[i].at_ms < first ? recs[i].at_ms : first, last = recs[i].at_ms > last ? recs[i].at_ms : last;
        kept++;
    }
    if (kept == 0)
        return KG_OK;
    size_t len =
        kg_usage_json_encode(&st->json, &st->json_cap, recs + from, fresh != NULL ? fresh + from : NULL, to - from);
    sqlite3_bind_int64(s, 1, first), sqlite3_bind_int64(s, 2, last);
    sqlite3_bind_text(s, 3, st->json, (int)len, SQLITE_STATIC); /* at most ~1.5 MiB: RECORDS_PER_ROW */
    *added += kept;
    return exec_done(st, s);
}

/* Stores the records (those marked in fresh[], or all when it is NULL) in usage_batches rows,
 * and adds them to the rollup. Inside the caller's transaction. */
static kg_err_t batch_store(kg_store_t *st, const kg_usage_record_t *recs, const bool *fresh, size_t n, size_t *added)
{
    size_t n_groups = 0, mask = groups_reserve(st, n);
    sqlite3_stmt *s = stmt(st, Q_USAGE_BATCH_ADD);
    kg_err_t rv = s != NULL ? KG_OK : KG_ESTORE;
    *added = 0;
    for (size_t from = 0; rv == KG_OK && from < n; from += RECORDS_PER_ROW) {
        rv = row_store(st, s, recs, fresh, from, n - from < RECORDS_PER_ROW ? n : from + RECORDS_PER_ROW, &n_groups,
                       mask, added);
        let_others_run(st);
    }
    return rv != KG_OK ? rv : rollup_store(st, n_groups);
}

static kg_err_t usage_insert(kg_store_t *st, const kg_usage_record_t *recs, size_t n, bool may_repeat, size_t *inserted)
{
    size_t added = 0;
    bool *fresh = NULL;
    kg_err_t rv;

    if (inserted != NULL)
        *inserted = 0;
    /* An empty request id could not tell a replayed record from a new one: refuse the batch
     * rather than silently drop usage. */
    for (size_t j = 0; j < n; j++)
        if (recs[j].request_id[0] == '\0')
            return KG_EINVALID_VALUE;
    if (n == 0)
        return KG_OK;
    if (n > UINT32_MAX / 2)
        return KG_EINVALID_VALUE; /* the group table's indexes are 32-bit */
    if ((rv = kg_store_begin(st)) != KG_OK)
        return rv;
    if (may_repeat) {
        fresh = kg_xcalloc(n, sizeof(*fresh));
        rv = mark_unseen(st, recs, n, fresh);
    }
    if (rv == KG_OK)
        rv = batch_store(st, recs, fresh, n, &added);
    free(fresh);
    if (rv != KG_OK) {
        kg_store_rollback(st);
        return rv;
    }
    if ((rv = kg_store_commit(st)) != KG_OK)
        return rv;
    if (inserted != NULL)
        *inserted = added;
    return KG_OK;
}

kg_err_t kg_store_usage_insert(kg_store_t *st, const kg_usage_record_t *recs, size_t n, size_t *inserted)
{
    return usage_insert(st, recs, n, true, inserted);
}

kg_err_t kg_store_usage_insert_new(kg_store_t *st, const kg_usage_record_t *recs, size_t n, size_t *inserted)
{
    return usage_insert(st, recs, n, false, inserted);
}

/* Reads the USAGE_SUMS columns starting at `col`; sum() of no rows is NULL, read as 0. */
static void read_totals(sqlite3_stmt *s, int col, kg_usage_totals_t *t)
{
    t->requests = sqlite3_column_int64(s, col), t->errors = sqlite3_column_int64(s, col + 1);
    t->input_tokens = sqlite3_column_int64(s, col + 2), t->output_tokens = sqlite3_column_int64(s, col + 3);
    t->cost_micro = sqlite3_column_int64(s, col + 4);
}

kg_err_t kg_store_usage_totals_by(kg_store_t *st, bool by_team, int64_t since_ms, kg_usage_totals_cb fn, void *ctx)
{
    const bool all_time = since_ms == 0;
    sqlite3_stmt *s = stmt(st, by_team ? (all_time ? Q_USAGE_TOTALS_BY_TEAM_ALL : Q_USAGE_TOTALS_BY_TEAM)
                                       : (all_time ? Q_USAGE_TOTALS_BY_KEY_ALL : Q_USAGE_TOTALS_BY_KEY));
    kg_usage_totals_t t;
    int rc;

    if (s == NULL)
        return KG_ESTORE;
    if (!all_time)
        sqlite3_bind_int64(s, 1, minute_of(since_ms));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_totals(s, 2, &t);
        fn(ctx, (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1), &t);
    }
    done(s);
    if (rc == SQLITE_DONE)
        return KG_OK;
    fprintf(stderr, "keygate: usage totals failed: %s\n", sqlite3_errmsg(st->db));
    return KG_ESTORE;
}

kg_err_t kg_store_usage_key_totals(kg_store_t *st, const char *key_id, kg_usage_totals_t *out)
{
    sqlite3_stmt *s = stmt(st, Q_USAGE_KEY_TOTALS);
    if (s == NULL)
        return KG_ESTORE;
    bind_text(s, 1, key_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_totals(s, 0, out);
    else
        memset(out, 0, sizeof(*out)); /* no row: no usage yet */
    done(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? KG_OK : KG_ESTORE;
}

kg_err_t kg_store_usage_series(kg_store_t *st, const kg_usage_filter_t *f, size_t max, kg_usage_bucket_t **out,
                               size_t *n_out, bool *truncated)
{
    const int q = Q_USAGE_SERIES + (f->key_id != NULL ? 1 : 0) + (f->team_id != NULL ? 2 : 0);
    kg_usage_bucket_t *list = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *s;
    int rc;

    *out = NULL, *n_out = 0, *truncated = false;
    if (f->org_id == NULL || f->bucket_ms <= 0)
        return KG_EINVALID_VALUE;
    if ((s = stmt(st, q)) == NULL)
        return KG_ESTORE;
    if (max > (size_t)INT64_MAX - 1)
        max = (size_t)INT64_MAX - 1;
    bind_text(s, 1, f->org_id), bind_text(s, 2, f->key_id), bind_text(s, 3, f->team_id);
    sqlite3_bind_int64(s, 4, f->bucket_ms), sqlite3_bind_int64(s, 5, minute_of(f->from_ms));
    sqlite3_bind_int64(s, 6, minute_of(f->to_ms));
    sqlite3_bind_int64(s, 7, (sqlite3_int64)max + 1); /* one more tells whether newer buckets were dropped */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == max) {
            *truncated = true;
            continue;
        }
        if (n == cap) {
            size_t grown_cap = cap == 0 ? 64 : 2 * cap;
            kg_usage_bucket_t *grown = realloc(list, grown_cap * sizeof(*list));
            if (grown == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            list = grown, cap = grown_cap;
        }
        list[n].start_ms = sqlite3_column_int64(s, 0);
        read_totals(s, 1, &list[n].totals);
        n++;
    }
    done(s);
    if (rc != SQLITE_DONE) {
        free(list);
        *truncated = false;
        if (rc == SQLITE_NOMEM)
            return KG_ENOMEM;
        fprintf(stderr, "keygate: usage series failed: %s\n", sqlite3_errmsg(st->db));
        return KG_ESTORE;
    }
    *out = list, *n_out = n;
    return KG_OK;
}
