/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the versioned schema of the SQLite store. Each entry of `migrations` moves
 * the schema from version i to i+1 and runs in one transaction together with the bump of
 * PRAGMA user_version, so a store is never left half-migrated. Append; never edit a shipped
 * entry.
 */
#include "store/store_sqlite.h"

#include <stdio.h>

#include "core/log.h"
#include "store/usage_json.h"

/* Field i of the usage view's record r. json_extract, not SQLite 3.38's ->>: a view is parsed
 * whenever the schema is, and an older sqlite3 shell that could not parse it could not read the
 * store at all. */
#define USAGE_FIELD(i) "json_extract(r.value, '$[" #i "]')"

static const char *const migrations[] = {
    /* 1: orgs, environments, tokens and their secrets, audit, change feed */
    "CREATE TABLE orgs ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, created_by TEXT NOT NULL);"
    "CREATE TABLE environments ("
    "  org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL, live INTEGER NOT NULL,"
    "  source TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (org_id, name));"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), team_id TEXT, name TEXT NOT NULL,"
    "  description TEXT, environment TEXT, token_type TEXT NOT NULL, purpose TEXT, scopes TEXT, allow TEXT,"
    "  allowed_domains TEXT, prompt_modules TEXT, prompt_text TEXT, rate_limits TEXT, budget TEXT, metadata TEXT,"
    "  enabled INTEGER NOT NULL, is_root INTEGER NOT NULL DEFAULT 0, legacy_gk INTEGER NOT NULL DEFAULT 0,"
    "  expires_at INTEGER, created_at INTEGER NOT NULL, created_by TEXT, last_used_at INTEGER,"
    "  last_rotated_at INTEGER, revoked_at INTEGER, revoked_by TEXT, prefix TEXT NOT NULL, last4 TEXT NOT NULL);"
    "CREATE INDEX tokens_by_org ON tokens(org_id);"
    "CREATE TABLE token_secrets ("
    "  hash BLOB PRIMARY KEY, token_id TEXT NOT NULL REFERENCES tokens(id), expires_at INTEGER,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX token_secrets_by_token ON token_secrets(token_id);"
    "CREATE TABLE audit_events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, org_id TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
    "  object_type TEXT NOT NULL, object_id TEXT NOT NULL, changes TEXT NOT NULL, remote_addr TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX audit_by_org ON audit_events(org_id, id);"
    "CREATE INDEX audit_by_object ON audit_events(object_id, id);"
    "CREATE TABLE changes ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, object_type TEXT NOT NULL, object_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);",
    /* 2: the model catalog (providers, models, agents, prompt modules), per org; `spec` is the
     * object's JSON as the admin layer validated it; config-declared objects have source 'config' */
    "CREATE TABLE catalog_objects ("
    "  org_id TEXT NOT NULL REFERENCES orgs(id), kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,"
    "  source TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (org_id, kind, name));",
    /* 3: deployment-wide values (the ephemeral-token signing key) */
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);",
    /* 4: a token's rotation count (the generation ephemeral tokens are minted under) */
    "ALTER TABLE tokens ADD COLUMN rotations INTEGER NOT NULL DEFAULT 0;",
    /* 5: usage records (issue 6), one row per request; the request id's uniqueness is what makes
     * a journal replay count nothing twice. A rowid table, not WITHOUT ROWID: rows arrive in time
     * order and are a few hundred bytes, so the table appends and the secondary indexes carry an
     * 8-byte rowid instead of the request id. */
    "CREATE TABLE usage ("
    "  request_id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, key_id TEXT NOT NULL, org_id TEXT NOT NULL,"
    "  team_id TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, upstream_model TEXT NOT NULL,"
    "  route INTEGER NOT NULL, status INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL, latency_us INTEGER NOT NULL,"
    "  upstream_latency_us INTEGER NOT NULL, stream INTEGER NOT NULL, estimated INTEGER NOT NULL);"
    "CREATE INDEX usage_by_key ON usage(key_id, at_ms);"
    "CREATE INDEX usage_by_team ON usage(org_id, team_id, at_ms);"
    "CREATE INDEX usage_by_org ON usage(org_id, at_ms);",
    /* 6: usage made cheap to write. Version 5 paid four b-tree inserts per record (the table, the
     * request-id key and three time indexes); now a record is one insert into `usage`, rebuilt
     * WITHOUT ROWID and keyed by request id alone (the exactly-once check), and every read goes
     * to `usage_minutes`: per key, team and UTC minute, the five sums, maintained by
     * kg_store_usage_insert in the same transaction. Its rows are few (one per key per active
     * minute), so its two indexes cost next to nothing. The name `usage` stays: operators (and
     * the e2e tests) read it. The rollup is backfilled from the version-5 rows; the minute is
     * floor(at_ms / 60000) * 60000, written out because SQLite's % truncates toward zero. */
    "CREATE TABLE usage_v6 ("
    "  request_id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL, key_id TEXT NOT NULL, org_id TEXT NOT NULL,"
    "  team_id TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, upstream_model TEXT NOT NULL,"
    "  route INTEGER NOT NULL, status INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL, latency_us INTEGER NOT NULL,"
    "  upstream_latency_us INTEGER NOT NULL, stream INTEGER NOT NULL, estimated INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO usage_v6 SELECT request_id, at_ms, key_id, org_id, team_id, model, upstream_model, route, status,"
    "  input_tokens, output_tokens, cost_micro, latency_us, upstream_latency_us, stream, estimated"
    "  FROM usage ORDER BY request_id;"
    "CREATE TABLE usage_minutes ("
    "  key_id TEXT NOT NULL, minute_ms INTEGER NOT NULL, org_id TEXT NOT NULL, team_id TEXT NOT NULL,"
    "  requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL,"
    "  PRIMARY KEY (key_id, minute_ms, org_id, team_id)) WITHOUT ROWID;"
    "INSERT INTO usage_minutes SELECT key_id, at_ms - ((at_ms % 60000) + 60000) % 60000 AS m, org_id, team_id,"
    "  count(*), sum(status >= 400), sum(input_tokens), sum(output_tokens), sum(cost_micro)"
    "  FROM usage GROUP BY key_id, m, org_id, team_id;"
    "DROP TABLE usage;"
    "ALTER TABLE usage_v6 RENAME TO usage;"
    "CREATE INDEX usage_minutes_by_org ON usage_minutes(org_id, minute_ms);"
    "CREATE INDEX usage_minutes_by_team ON usage_minutes(org_id, team_id, minute_ms);",
    /* 7: usage records stored many to a row. Version 6 paid a b-tree insert of sixteen columns
     * per record, most of the usage writer's cost (itself the largest part of the gateway's CPU
     * beyond a plain proxy): now the writer stores up to 512 records as one row of
     * usage_batches, a JSON array of arrays (store/usage_json.h gives the order), and `usage`
     * is a view with a row per record, as before, for operators and tools. first_ms and last_ms
     * bound the records' finish times: a replayed record's stored copy is looked for only in the
     * rows whose span holds its time. The version-6 rows move into rows of 512 in time order.
     * The rollup (usage_minutes) is unchanged. */
    "CREATE TABLE usage_batches ("
    "  id INTEGER PRIMARY KEY, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, records TEXT NOT NULL);"
    "CREATE INDEX usage_batches_by_last ON usage_batches(last_ms);"
    "INSERT INTO usage_batches (first_ms, last_ms, records)"
    "  SELECT min(at_ms), max(at_ms), json_group_array(json_array(request_id, at_ms, key_id, org_id, team_id,"
    "    model, upstream_model, route, status, input_tokens, output_tokens, cost_micro, latency_us,"
    "    upstream_latency_us, stream, estimated))"
    "  FROM (SELECT *, (row_number() OVER (ORDER BY at_ms, request_id) - 1) / 512 AS batch FROM usage)"
    "  GROUP BY batch ORDER BY batch;"
    "DROP TABLE usage;"
    "CREATE VIEW usage (" USAGE_JSON_COLUMNS ") AS"
    "  SELECT " USAGE_FIELD(0) ", " USAGE_FIELD(1) ", " USAGE_FIELD(2) ", " USAGE_FIELD(3) ", " USAGE_FIELD(
        4) ","
           "    " USAGE_FIELD(5) ", " USAGE_FIELD(6) ", " USAGE_FIELD(7) ", " USAGE_FIELD(8) ", " USAGE_FIELD(
               9) ","
                  "    " USAGE_FIELD(10) ", " USAGE_FIELD(11) ", " USAGE_FIELD(12) ", " USAGE_FIELD(
                      13) ", " USAGE_FIELD(14) ","
                                               "    " USAGE_FIELD(
                                                   15) " FROM usage_batches AS b, json_each(b.records) AS r;",
    /* 8: the rollup ordered by minute first. Keyed by key first, a batch of records from a
     * thousand keys added to a thousand rows each on its own page (at the end of its key's
     * range), so every batch wrote about a thousand pages to the WAL (and again at the
     * checkpoint) however few its records: most of the writer's cost with the load spread over
     * many keys, and growing with the table's age. Minute first, the current minute's rows are
     * adjacent: a batch rewrites a few pages. A key-filtered series goes through
     * usage_minutes_by_key (each new key and minute adds one entry there); a key's all-time
     * totals (key listings show them, all-time budgets are seeded from them) have a row of
     * their own in usage_keys, with its org: one lookup instead of one per minute the key was
     * ever used. */
    "CREATE TABLE usage_minutes_v8 ("
    "  minute_ms INTEGER NOT NULL, key_id TEXT NOT NULL, org_id TEXT NOT NULL, team_id TEXT NOT NULL,"
    "  requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
    "  output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL,"
    "  PRIMARY KEY (minute_ms, key_id, org_id, team_id)) WITHOUT ROWID;"
    "INSERT INTO usage_minutes_v8 SELECT minute_ms, key_id, org_id, team_id, requests, errors, input_tokens,"
    "  output_tokens, cost_micro FROM usage_minutes ORDER BY minute_ms, key_id, org_id, team_id;"
    "DROP TABLE usage_minutes;"
    "ALTER TABLE usage_minutes_v8 RENAME TO usage_minutes;"
    "CREATE INDEX usage_minutes_by_key ON usage_minutes(key_id, minute_ms);"
    "CREATE INDEX usage_minutes_by_org ON usage_minutes(org_id, minute_ms);"
    "CREATE INDEX usage_minutes_by_team ON usage_minutes(org_id, team_id, minute_ms);"
    "CREATE TABLE usage_keys ("
    "  key_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,"
    "  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_micro INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO usage_keys SELECT key_id, min(org_id), sum(requests), sum(errors), sum(input_tokens),"
    "  sum(output_tokens), sum(cost_micro) FROM usage_minutes GROUP BY key_id;",
};

int kg__store_migrate(sqlite3 *db, char *err, size_t err_cap)
{
    sqlite3_stmt *stmt = NULL;
    int version = 0;
    const int target = (int)(sizeof(migrations) / sizeof(migrations[0]));

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (version > target) {
        snprintf(err, err_cap, "the store's schema (version %d) is newer than this keygate (%d)", version, target);
        return -1;
    }
    if (version > 0 && version < target) /* an upgrade may rewrite much of a large store: say why start-up waits */
        kg_log_info("store: upgrading the schema from version %d to %d", version, target);
    for (; version < target; version++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
        if (sqlite3_exec(db, migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, bump, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, err_cap, "migration %d failed: %s", version + 1, sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    }
    return version;
fail:
    snprintf(err, err_cap, "migration failed: %s", sqlite3_errmsg(db));
    return -1;
}
