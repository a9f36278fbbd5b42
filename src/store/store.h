/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the key store's interface: orgs, environments, tokens and their secret
 * hashes, audit events, the change feed (SPEC §8), last-use batches and usage records. Every
 * write that an admin makes runs inside kg_store_begin()/kg_store_commit() together with its
 * audit event and its change-feed row, so the three can never disagree. Only src/store/
 * includes sqlite3.h. A store handle is used by one thread at a time.
 */
#ifndef KG_STORE_STORE_H
#define KG_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "keys/token.h"
#include "usage/usage.h"

typedef struct kg_store kg_store_t;

/**
 * Opens (creating if missing) the SQLite store at `path`, in WAL mode with synchronous=FULL,
 * and runs pending schema migrations. On failure returns NULL and writes why into err.
 */
kg_store_t *kg_store_open(const char *path, char *err, size_t err_cap);
/** Like kg_store_open, but a missing file is an error (KG_ENOT_FOUND in *code) and is not created. */
kg_store_t *kg_store_open_existing(const char *path, kg_err_t *code, char *err, size_t err_cap);
void kg_store_close(kg_store_t *st);

/**
 * Marks `st` as a background thread's connection: its long writes (kg_store_usage_insert*) give
 * the CPU up between statements, so an event loop that shares its core runs between them. That
 * does not bound the loop's wait: one statement (a commit's `fdatasync` write-out) can run for
 * milliseconds (docs/performance-profile.md, 2026-12-08, second stop).
 */
void kg_store_set_background(kg_store_t *st, bool background);

/** Schema version after migrations. */
int kg_store_schema_version(kg_store_t *st);

kg_err_t kg_store_begin(kg_store_t *st) KG_MUST_CHECK;      /* BEGIN IMMEDIATE: one writer at a time */
kg_err_t kg_store_begin_read(kg_store_t *st) KG_MUST_CHECK; /* BEGIN: reads see one snapshot */
kg_err_t kg_store_commit(kg_store_t *st) KG_MUST_CHECK;
void kg_store_rollback(kg_store_t *st);

/* ==== Orgs and environments ==== */

typedef struct kg_org {
    char *id;
    char *name;
    int64_t created_at;
    char *created_by;
} kg_org_t;

void kg_org_dispose(kg_org_t *o);
kg_err_t kg_store_org_insert(kg_store_t *st, const kg_org_t *o) KG_MUST_CHECK; /* KG_ECONFLICT: name taken */
kg_err_t kg_store_org_get(kg_store_t *st, const char *id, kg_org_t *out) KG_MUST_CHECK;
kg_err_t kg_store_org_get_by_name(kg_store_t *st, const char *name, kg_org_t *out) KG_MUST_CHECK;
/** Lists orgs in creation order, after id `after` (NULL: from the start); *n_out <= limit. */
kg_err_t kg_store_org_list(kg_store_t *st, const char *after, size_t limit, kg_org_t **out,
                           size_t *n_out) KG_MUST_CHECK;

typedef struct kg_environment {
    char *org_id;
    char *name;
    bool live;
    char *source; /* "config" or "api" */
    int64_t created_at;
} kg_environment_t;

void kg_environment_dispose(kg_environment_t *e);
kg_err_t kg_store_environment_upsert(kg_store_t *st, const kg_environment_t *e) KG_MUST_CHECK;
kg_err_t kg_store_environment_get(kg_store_t *st, const char *org_id, const char *name,
                                  kg_environment_t *out) KG_MUST_CHECK;
kg_err_t kg_store_environment_list(kg_store_t *st, const char *org_id, kg_environment_t **out,
                                   size_t *n_out) KG_MUST_CHECK;
kg_err_t kg_store_environment_delete(kg_store_t *st, const char *org_id, const char *name) KG_MUST_CHECK;
/** Number of tokens (any status) issued for an environment. */
kg_err_t kg_store_environment_token_count(kg_store_t *st, const char *org_id, const char *name,
                                          int64_t *count) KG_MUST_CHECK;

/* ==== Tokens ==== */

/** Inserts a token and its first secret hash. */
kg_err_t kg_store_token_insert(kg_store_t *st, const kg_token_t *t,
                               const uint8_t hash[KG_KEY_HASH_BYTES]) KG_MUST_CHECK;

/** Reads token `id`; with org_id non-NULL, a token of another org is KG_ENOT_FOUND. */
kg_err_t kg_store_token_get(kg_store_t *st, const char *id, const char *org_id, kg_token_t *out) KG_MUST_CHECK;

/** Writes every editable field and the state fields (enabled, revoked_*, last_rotated_at). */
kg_err_t kg_store_token_update(kg_store_t *st, const kg_token_t *t) KG_MUST_CHECK;

typedef struct kg_token_filter {
    const char *org_id; /* NULL: every org (the feed's full load) */
    int type;           /* -1: any, else kg_token_type_t */
    int status;         /* -1: any, else kg_token_status_t (judged at `now`) */
    const char *environment;
    const char *team_id;
    const char *after; /* cursor: a token id; results are newest first */
    size_t limit;      /* 0: no limit */
    int64_t now;
} kg_token_filter_t;

/** Lists tokens; *has_more tells whether another page exists. Caller frees with kg_token_list_free. */
kg_err_t kg_store_token_list(kg_store_t *st, const kg_token_filter_t *f, kg_token_t **out, size_t *n_out,
                             bool *has_more) KG_MUST_CHECK;
void kg_token_list_free(kg_token_t *list, size_t n);

/**
 * Replaces the token's secrets by `new_hash`. With grace_until > now the current secret stays
 * valid until then; any earlier secret in grace is dropped at once (a second rotation ends the
 * first grace). Without grace every old secret is dropped.
 */
kg_err_t kg_store_token_rotate(kg_store_t *st, const char *id, const uint8_t new_hash[KG_KEY_HASH_BYTES], int64_t now,
                               int64_t grace_until) KG_MUST_CHECK;

/** The token's live secrets, the current one first (at most 2). */
kg_err_t kg_store_token_secrets(kg_store_t *st, const char *id, int64_t now, kg_token_secret_t out[2],
                                size_t *n_out) KG_MUST_CHECK;

/**
 * Every token, in storage order, for a bulk load of the key index: `fn` gets each with the
 * members the index is built from (id, org, team, environment, type, policy members, enabled,
 * is_root, expires_at, revoked_at, rotations; the rest zero), strings borrowed for the call
 * only; returning false stops the scan. Use inside a read transaction.
 */
typedef bool (*kg_token_scan_fn)(void *ctx, const kg_token_t *t);
kg_err_t kg_store_token_scan(kg_store_t *st, kg_token_scan_fn fn, void *ctx) KG_MUST_CHECK;

/** Every secret live at `now`, in storage order, with its token's id and when it was made. */
typedef void (*kg_secret_scan_fn)(void *ctx, const char *token_id, const kg_token_secret_t *secret, int64_t created_at);
kg_err_t kg_store_secret_scan(kg_store_t *st, int64_t now, kg_secret_scan_fn fn, void *ctx) KG_MUST_CHECK;

/** How many tokens the store holds, whatever their status. */
kg_err_t kg_store_token_count(kg_store_t *st, size_t *n) KG_MUST_CHECK;

/**
 * The id of the token a secret hash belongs to, if that secret is still live at `now` (the
 * current secret, or an old one within its rotation grace). KG_ENOT_FOUND otherwise.
 */
kg_err_t kg_store_token_id_by_hash(kg_store_t *st, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                                   char id[KG_KEY_ID_LEN + 1]) KG_MUST_CHECK;

/** Writes a batch of last-use times (each only if newer) in one transaction. */
kg_err_t kg_store_token_touch_batch(kg_store_t *st, const char *const *ids, const int64_t *at, size_t n) KG_MUST_CHECK;

/** Whether a root admin key exists. */
kg_err_t kg_store_root_exists(kg_store_t *st, bool *exists) KG_MUST_CHECK;

/* ==== Catalog objects ==== */

typedef struct kg_catalog_row {
    char *org_id;
    char *kind; /* provider | model | agent | prompt_module */
    char *name;
    char *spec;   /* JSON object text */
    char *source; /* config | api */
    int64_t created_at, updated_at;
    char *org_name; /* not stored: filled by kg_catalog_load for the credential grant check */
} kg_catalog_row_t;

void kg_catalog_row_dispose(kg_catalog_row_t *r);
void kg_catalog_rows_free(kg_catalog_row_t *rows, size_t n);
/** Inserts or replaces one object (created_at kept on replace). */
kg_err_t kg_store_catalog_put(kg_store_t *st, const kg_catalog_row_t *r) KG_MUST_CHECK;
kg_err_t kg_store_catalog_get(kg_store_t *st, const char *org_id, const char *kind, const char *name,
                              kg_catalog_row_t *out) KG_MUST_CHECK;
kg_err_t kg_store_catalog_delete(kg_store_t *st, const char *org_id, const char *kind, const char *name) KG_MUST_CHECK;
/** Deletes every object of org_id with this source (the config sync rewrites its own rows). */
kg_err_t kg_store_catalog_delete_source(kg_store_t *st, const char *org_id, const char *source) KG_MUST_CHECK;
/** Lists objects (org_id, kind: NULL for any), by org, kind, then name. */
kg_err_t kg_store_catalog_list(kg_store_t *st, const char *org_id, const char *kind, kg_catalog_row_t **out,
                               size_t *n_out) KG_MUST_CHECK;

/* ==== Deployment values ==== */

/** Reads meta value `k` into out (exactly `len` bytes expected). KG_ENOT_FOUND if absent. */
kg_err_t kg_store_meta_get(kg_store_t *st, const char *k, void *out, size_t len) KG_MUST_CHECK;
/** Writes meta value `k` unless it exists (first writer wins). */
kg_err_t kg_store_meta_put_new(kg_store_t *st, const char *k, const void *v, size_t len) KG_MUST_CHECK;

/* ==== Audit ==== */

typedef struct kg_audit_event {
    int64_t id;
    char *org_id;
    char *actor;
    char *action;
    char *object_type;
    char *object_id;
    char *changes; /* JSON object text, secrets never included */
    char *remote_addr;
    int64_t created_at;
} kg_audit_event_t;

void kg_audit_event_dispose(kg_audit_event_t *e);
kg_err_t kg_store_audit_insert(kg_store_t *st, const kg_audit_event_t *e) KG_MUST_CHECK;

typedef struct kg_audit_filter {
    const char *org_id; /* NULL: all (root across orgs) */
    const char *object_id;
    int64_t from, to; /* 0: unbounded */
    int64_t after;    /* cursor: event id; newest first */
    size_t limit;
} kg_audit_filter_t;

kg_err_t kg_store_audit_list(kg_store_t *st, const kg_audit_filter_t *f, kg_audit_event_t **out, size_t *n_out,
                             bool *has_more) KG_MUST_CHECK;

/* ==== Change feed ==== */

/** Records that an object changed; call inside the transaction that changed it. */
kg_err_t kg_store_change_add(kg_store_t *st, const char *object_type, const char *object_id, int64_t now) KG_MUST_CHECK;

typedef struct kg_change {
    int64_t seq;
    char object_type[16];
    char object_id[64];
} kg_change_t;

/** Changes after `since`, oldest first, at most `cap`. */
kg_err_t kg_store_change_list(kg_store_t *st, int64_t since, kg_change_t *out, size_t cap, size_t *n_out) KG_MUST_CHECK;
kg_err_t kg_store_change_last(kg_store_t *st, int64_t *seq) KG_MUST_CHECK;

/** SQLite's data_version: changes when another connection commits (cheap: no I/O). */
kg_err_t kg_store_data_version(kg_store_t *st, int64_t *out) KG_MUST_CHECK;

/* ==== Usage (issue 6) ==== */

/*
 * Records are stored raw (`usage_batches`, many to a row; the `usage` view shows a row per
 * record) and summed, in the same transaction, into a per-minute rollup (`usage_minutes`: per
 * UTC minute, key, org and team) and each key's all-time sums (`usage_keys`).
 * Every read below comes from the rollups, so its time bounds have minute granularity: a bound
 * is rounded down to the start of the UTC minute that contains it, and a record counts in the
 * minute that contains its at_ms. Budget periods (UTC day and month starts) and the minute,
 * hour and day buckets fall on minute starts and are exact; GET /v1/usage's from and to are
 * whole seconds, so a window starting or ending mid-minute takes the whole of its first minute
 * and none of its last.
 */

/**
 * Stores records in ONE transaction (BEGIN IMMEDIATE … COMMIT), in rows of usage_batches of
 * up to 512 records (the `usage` view shows a row per record) and in the rollup. A record already
 * stored (the same request id and finish time, as a replayed journal record has), or repeated
 * from an earlier record of the call, is skipped and adds nothing to the rollup, so replaying a
 * journal twice counts nothing twice. *inserted (may be NULL) =
 * records actually added. On error nothing is added. KG_EINVALID_VALUE, storing nothing, if a
 * record has an empty request id. Call outside any transaction.
 */
kg_err_t kg_store_usage_insert(kg_store_t *st, const kg_usage_record_t *recs, size_t n,
                               size_t *inserted /* OUT */) KG_MUST_CHECK;
/**
 * kg_store_usage_insert for records the caller knows were never stored and are not repeated
 * within the call (the journal's records read for the first time): the request ids are not
 * looked up (kg_store_usage_insert reads back the stored records of the same span of time to
 * find them). Storing a record twice this way counts it twice.
 */
kg_err_t kg_store_usage_insert_new(kg_store_t *st, const kg_usage_record_t *recs, size_t n,
                                   size_t *inserted /* OUT */) KG_MUST_CHECK;

typedef struct kg_usage_totals {
    int64_t requests;
    int64_t errors; /* status >= 400 */
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cost_micro;
} kg_usage_totals_t;

/** Called once per group; the strings and `t` are borrowed for the call only. */
typedef void (*kg_usage_totals_cb)(void *ctx, const char *org_id, const char *id, const kg_usage_totals_t *t);

/**
 * Sums since `since_ms` (inclusive, rounded down to its minute: every record of the minute that
 * contains since_ms counts; 0 = all time) grouped by key (by_team=false: id = key_id,
 * org_id) or by team (by_team=true: id = team name, rows with team_id '' excluded), calling fn
 * once per group. Used at start to seed budget counters.
 */
kg_err_t kg_store_usage_totals_by(kg_store_t *st, bool by_team, int64_t since_ms, kg_usage_totals_cb fn,
                                  void *ctx) KG_MUST_CHECK;

/** Totals of one key (all time): the `usage` summary in key listings. All zero if it has none. */
kg_err_t kg_store_usage_key_totals(kg_store_t *st, const char *key_id, kg_usage_totals_t *out /* OUT */) KG_MUST_CHECK;

typedef struct kg_usage_filter {
    const char *org_id;     /* required: never mix orgs */
    const char *key_id;     /* NULL: any */
    const char *team_id;    /* NULL: any ("" : keys without a team) */
    int64_t from_ms, to_ms; /* [from, to), each rounded down to the start of its minute */
    int64_t bucket_ms;      /* 60000, 3600000 or 86400000 */
} kg_usage_filter_t;

typedef struct kg_usage_bucket {
    int64_t start_ms;
    kg_usage_totals_t totals;
} kg_usage_bucket_t;

/**
 * The usage series for GET /v1/usage: non-empty buckets in time order (bucket start =
 * floor(minute / bucket_ms) * bucket_ms, UTC, where minute = floor(at_ms / 60000) * 60000: the
 * same as floor(at_ms / bucket_ms) * bucket_ms for any bucket_ms that is a whole number of
 * minutes). The records counted are those whose minute is in [minute(from_ms), minute(to_ms)).
 * *out is malloc'd (caller frees; NULL when *n_out is 0); at most `max` buckets (the newest
 * are dropped past it and *truncated set). KG_EINVALID_VALUE without org_id or with
 * bucket_ms <= 0.
 */
kg_err_t kg_store_usage_series(kg_store_t *st, const kg_usage_filter_t *f, size_t max,
                               kg_usage_bucket_t **out /* OUT */, size_t *n_out /* OUT */,
                               bool *truncated /* OUT */) KG_MUST_CHECK;

#endif
