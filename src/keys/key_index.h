/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the in-memory key index that authenticates every request without touching
 * the store: a lock-free hash table (digest_table.h) from SHA-256(secret) to an immutable
 * record. A writer replaces a token's records under RCU and frees the old ones after a grace
 * period; readers take no lock and allocate nothing. Mutable per-key state (last use, the
 * limiter's counters) lives in a separate per-id object shared by all records of the token.
 * Both are kept small (a record's hot fields fill one cache line; org, environment and team
 * live in the shared compiled policy): with a million keys every lookup is a few cache misses,
 * and every byte is a megabyte.
 *
 * Threads that call lookup must be registered with liburcu (kg_key_index_thread_online).
 * See docs/architecture.md, "The key index".
 */
#ifndef KG_KEYS_KEY_INDEX_H
#define KG_KEYS_KEY_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "keys/key_policy.h"
#include "keys/token.h"

typedef struct kg_key_index kg_key_index_t;

/**
 * What authentication yields: a copy, but its strings and `policy` point into the index and are
 * valid only until the caller's kg_key_index_read_unlock() (copy what must outlive it).
 */
typedef struct kg_key_view {
    char id[KG_KEY_ID_LEN + 1];
    const char *org_id;
    const char *environment; /* "" for none */
    const char *team_id;     /* "" for none */
    kg_token_type_t type;
    bool is_root;
    int64_t rotations;             /* the key's rotation count (an ephemeral token's generation) */
    int64_t grace_until;           /* the end of the last rotation's grace, 0 if none */
    bool old_secret;               /* the secret presented is the previous one, in its grace */
    const kg_key_policy_t *policy; /* the key's compiled policy (org_id and the rest point into it) */
    /* The key's counters (limits, budget): shared by all its records, valid while the index lives. */
    kg_limit_state_t *limit_state;
    /* How the request authenticated (set by the HTTP layer, not the index). */
    bool publishable; /* by the public id alone, from an allowed origin */
    bool ephemeral;   /* by an ephemeral token of this key: narrowed further below */
    uint32_t eph_scopes;
    const char *eph_allow; /* "m=a,b;a=c;" (absent tag: the key's own list); borrowed from the request pool */
} kg_key_view_t;

kg_key_index_t *kg_key_index_new(void);
/** Frees the index and every record; no reader may be running. */
void kg_key_index_free(kg_key_index_t *idx);

/**
 * A read-side section: a view's `policy` may be used between these (they nest, cost no shared
 * write and never block). Hold it only for synchronous work, never across an event-loop turn.
 */
void kg_key_index_read_lock(void);
void kg_key_index_read_unlock(void);

/**
 * Frees `obj` with `destroy` once every reader that may still see it has moved on (call_rcu).
 * For read-mostly snapshots that a writer has just replaced with rcu_xchg_pointer.
 */
void kg_rcu_retire(void *obj, void (*destroy)(void *));

/** Registers / unregisters the calling thread as an RCU reader (once per thread). */
void kg_key_index_thread_online(void);
void kg_key_index_thread_offline(void);

/**
 * Replaces every record of token `t` by one per secret in `secrets` (writer side; writers are
 * serialised internally). Borrowed arguments are copied. Old records are freed after an RCU
 * grace period, so concurrent readers never see a torn or freed record.
 */
void kg_key_index_put(kg_key_index_t *idx, const kg_token_t *t, const kg_token_secret_t *secrets, size_t n_secrets);

/**
 * A bulk load into an empty index (the start of the gateway): tokens are added, then linked
 * into the tables all at once, in bucket order, by kg_key_index_load_end — several times faster
 * than a put per token with a million keys. Writers wait until the load ends; nothing added is
 * visible before it ends, so no reader may rely on the index meanwhile.
 */
typedef struct kg_key_index_load kg_key_index_load_t;
kg_key_index_load_t *kg_key_index_load_begin(kg_key_index_t *idx);
/** As kg_key_index_put, for a token not in the index yet (each token once per load). */
void kg_key_index_load_add(kg_key_index_load_t *l, const kg_token_t *t, const kg_token_secret_t *secrets, size_t n);
/** Links what was added; KG_ESTORE if two tokens shared an id or two secrets a hash (a corrupt store). */
kg_err_t kg_key_index_load_end(kg_key_index_load_t *l) KG_MUST_CHECK;

/** Drops every record of token `id` (writer side). */
void kg_key_index_remove(kg_key_index_t *idx, const char *id);

/**
 * Authenticates a secret hash at time `now` (unix seconds): KG_OK with *out filled, or
 * KG_EINVALID_API_KEY (unknown, or an old secret past its rotation grace), KG_EKEY_REVOKED,
 * KG_EKEY_DISABLED, KG_EKEY_EXPIRED. No allocation, no lock, no store access. On KG_OK the
 * key's last use is recorded in memory (flushed later by kg_key_index_take_last_used).
 */
kg_err_t kg_key_index_lookup(kg_key_index_t *idx, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                             kg_key_view_t *out) KG_MUST_CHECK;

/**
 * kg_key_index_lookup of the hash of a secret whose shape and checksum passed before (a
 * connection's memo of it: http/auth.c), with the table's first line fetched ahead.
 */
kg_err_t kg_key_index_check_hash(kg_key_index_t *idx, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                                 kg_key_view_t *out) KG_MUST_CHECK;
/**
 * Authenticates a presented secret (SPEC §2): its shape, then SHA-256, then its checksum while
 * the table's first cache miss is on its way, then kg_key_index_lookup. A malformed secret or a
 * bad checksum is KG_EINVALID_API_KEY before any lookup (typos never reach the table); a hash
 * that cannot be computed is KG_EINTERNAL. The hash is left in hash_out (the caller wipes it).
 */
kg_err_t kg_key_index_check_secret(kg_key_index_t *idx, const char *secret, size_t len, int64_t now, kg_key_view_t *out,
                                   uint8_t hash_out[KG_KEY_HASH_BYTES]) KG_MUST_CHECK;

/**
 * Authenticates a publishable key by its public id alone (SPEC §2 form 3): only a key with
 * allowed_domains qualifies (else KG_EINVALID_API_KEY, as for an unknown id); statuses as for
 * kg_key_index_lookup. The caller still checks the request's origin against view->policy.
 */
kg_err_t kg_key_index_lookup_id(kg_key_index_t *idx, const char *id, size_t len, int64_t now, bool publishable_only,
                                kg_key_view_t *out) KG_MUST_CHECK;

/** Every allowed_domains pattern of the enabled, unrevoked publishable keys (CORS preflight). */
typedef struct kg_domain_set {
    size_t n;
    char **patterns;
    int64_t *expires_at; /* per pattern: its key's expiry (0: never); judge it at `now` */
} kg_domain_set_t;

/** The current set: use inside kg_key_index_read_lock(); may be NULL (no publishable key). */
const kg_domain_set_t *kg_key_index_domains(kg_key_index_t *idx);

/** The counters of token `id`, made if the token is not indexed yet (writer side: seeding at start). */
kg_limit_state_t *kg_key_index_limit_state(kg_key_index_t *idx, const char *id);

/** Sizes the tables, and makes the memory, for `n_keys` tokens with `n_secrets` live secrets in
 * all ahead of a bulk load (writer side). */
void kg_key_index_reserve(kg_key_index_t *idx, size_t n_keys, size_t n_secrets);

/** Number of records (one per live secret hash). */
size_t kg_key_index_size(kg_key_index_t *idx);

/**
 * A key is listed for the store at most once per KG_LAST_USED_STEP_S seconds of its use (its
 * first use at once): a key in steady use is written about once a minute, not once a second,
 * so the stored last_used_at trails the last use by less than this. With the load spread over
 * a thousand keys, a write per key per second cost ~1 µs a request (scattered pages of tokens).
 */
#define KG_LAST_USED_STEP_S 60

/** A last-use time waiting to be written to the store. */
typedef struct kg_last_used {
    char id[KG_KEY_ID_LEN + 1];
    int64_t at;
} kg_last_used_t;

/**
 * Collects up to `cap` keys used since their last flush into out[] and marks them flushed.
 * Returns how many were written. Called by the flusher, never on the request path.
 */
size_t kg_key_index_take_last_used(kg_key_index_t *idx, kg_last_used_t *out, size_t cap);

/** Lists again keys taken whose write to the store failed, for the next flush to retry. */
void kg_key_index_relist_last_used(kg_key_index_t *idx, const kg_last_used_t *failed, size_t n);

/**
 * Lists every key used since its last flush, within KG_LAST_USED_STEP_S or not: the final
 * flush at shutdown writes them all. Walks every key (a million in tens of milliseconds).
 */
void kg_key_index_list_unflushed(kg_key_index_t *idx);

#endif
