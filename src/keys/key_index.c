/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the key index (see key_index.h): a digest table (digest_table.h) from
 * secret hash to an immutable record (read on every request), and a cds_lfht from token id to
 * the token's mutable state (last use, the limiter's counters, the writer's list of current
 * hashes).
 */
#include "keys/key_index.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h>
#include <urcu/lfstack.h>
#include <urcu/rculfhash.h>

#include "core/alloc.h"
#include "core/objpool.h"
#include "keys/digest_table.h"
#include "keys/key_format.h"
#include "keys/key_hash.h"

#define MAX_SECRETS_PER_TOKEN 2 /* the current secret and at most one in rotation grace */

/* Three cache lines from a line-aligned pool slot, the fields a lookup touches in the first. */
typedef struct key_state {
    struct cds_lfht_node node; /* in idx->by_id */
    char id[KG_KEY_ID_LEN + 1];
    atomic_bool listed;                          /* set by the reader that lists it, cleared by the flusher */
    uint8_t n_recs;                              /* writer only */
    bool has_domains;                            /* writer only: the key has entries in idx->domain_entries */
    _Atomic int64_t last_used_at;                /* written by readers, at most once per second per key */
    _Atomic int64_t listed_at;                   /* when last listed; once taken, the time the flush wrote */
    struct cds_lfs_node used;                    /* in idx->used while `listed` */
    kg_limit_state_t limits;                     /* written by readers: survives edits and rotations */
    struct key_rec *recs[MAX_SECRETS_PER_TOKEN]; /* writer only: this token's records in idx->by_hash */
    struct key_rec *current;                     /* RCU: the current secret's record (publishable lookups by id) */
} key_state_t;
_Static_assert(sizeof(key_state_t) <= 192, "a key's state is three cache lines");

typedef struct domain_entry {
    const void *owner; /* the key_state_t that contributed it */
    char *pattern;
    int64_t expires_at; /* the key's expiry (0: never): expired keys stop counting without a change */
} domain_entry_t;

/* One live secret of a token, immutable once published (in idx->by_hash, which prefetches it
 * whole beside its state: a lookup reads both lines). */
typedef struct key_rec {
    uint8_t hash[KG_KEY_HASH_BYTES];
    int64_t secret_expires_at; /* 0: current secret; else end of rotation grace */
    key_state_t *state;        /* owned by by_id; outlives every record that points to it */
    kg_key_policy_t *policy;   /* shared (kg_key_policy_acquire); the view's strings point into it */
    int64_t expires_at;        /* the token's own expiry, 0: never */
    int64_t rotations;         /* the key's rotation count (an ephemeral token's generation) */
    int64_t grace_until;       /* the end of the last rotation's grace, 0 if none */
    uint8_t type;              /* kg_token_type_t */
    bool enabled;
    bool revoked;
    bool is_root;
    struct rcu_head rcu;
} key_rec_t;

/* Records and states come from pools of huge pages (core/objpool.h): with a million keys a lookup's
 * two objects were each a TLB miss and a page walk away. Process-wide: a record is freed by an RCU
 * callback that knows nothing of its index. */
static kg_objpool_t rec_pool = KG_OBJPOOL_INIT(sizeof(key_rec_t), 16);
static kg_objpool_t state_pool = KG_OBJPOOL_INIT(sizeof(key_state_t), 64);

struct kg_key_index {
    kg_digest_table_t *by_hash;
    struct cds_lfht *by_id;
    pthread_mutex_t write_lock;
    domain_entry_t *domain_entries; /* writer only: every active publishable key's patterns */
    size_t n_domain_entries, cap_domain_entries;
    kg_domain_set_t *domains; /* RCU: the distinct patterns, for CORS preflight */
    /* The keys used since the last flush: readers push, the flusher pops (so a flush costs the
     * keys used, not every key: walking a million states each second cost 20 µs per request). */
    struct __cds_lfs_stack used;
    struct cds_lfs_head *flushing; /* flusher only: popped, not yet taken */
    size_t n_states;               /* writer only */
    size_t n_buckets;              /* writer only: the size last asked of by_id */
};

#define INITIAL_BUCKETS 4096

static void free_domain_set(kg_domain_set_t *set);

/*
 * by_id is grown by the writer itself, ahead of need: liburcu's lazy automatic resize was seen
 * not to happen at all on this platform (1,000,000 keys in 1,024 buckets: 86 µs per lookup).
 * Writers hold write_lock and are registered RCU threads outside a read-side section, as
 * cds_lfht_resize requires. (by_hash grows itself.)
 */
static void grow_if_needed(kg_key_index_t *idx, size_t states)
{
    if (states <= idx->n_buckets)
        return;
    size_t size = idx->n_buckets;
    while (size < states)
        size *= 2;
    cds_lfht_resize(idx->by_id, size);
    idx->n_buckets = size;
}

static unsigned long hash_of_id(const char *id)
{
    return (unsigned long)kg_key_id_hash(id);
}

static int match_id(struct cds_lfht_node *node, const void *key)
{
    const key_state_t *st = caa_container_of(node, key_state_t, node);
    return strcmp(st->id, key) == 0;
}

static void rec_free(key_rec_t *rec)
{
    kg_key_policy_release(rec->policy);
    kg_objpool_free(&rec_pool, rec);
}

static void free_rec_rcu(struct rcu_head *head)
{
    rec_free(caa_container_of(head, key_rec_t, rcu));
}

kg_key_index_t *kg_key_index_new(void)
{
    kg_key_index_t *idx = kg_xcalloc(1, sizeof(*idx));
    idx->by_hash = kg_digest_table_new(offsetof(key_rec_t, hash), offsetof(key_rec_t, rcu), sizeof(key_state_t));
    idx->by_id = cds_lfht_new(INITIAL_BUCKETS, INITIAL_BUCKETS, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    idx->n_buckets = INITIAL_BUCKETS;
    __cds_lfs_init(&idx->used);
    if (idx->by_hash == NULL || idx->by_id == NULL) {
        fprintf(stderr, "keygate: cannot allocate the key index\n");
        abort();
    }
    pthread_mutex_init(&idx->write_lock, NULL);
    return idx;
}

static void retire_rec(void *ctx, void *rec)
{
    (void)ctx;
    call_rcu(&((key_rec_t *)rec)->rcu, free_rec_rcu);
}

void kg_key_index_free(kg_key_index_t *idx)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;

    if (idx == NULL)
        return;
    /* Unlink everything, then free through call_rcu: a table resize running on liburcu's
     * worker may still be reading the nodes until a grace period has passed. */
    key_state_t **states = kg_xcalloc(idx->n_states + 1, sizeof(*states));
    size_t n_states = 0;
    rcu_read_lock();
    kg_digest_table_for_each(idx->by_hash, retire_rec, NULL);
    cds_lfht_for_each (idx->by_id, &iter, node) {
        if (cds_lfht_del(idx->by_id, node) == 0 && n_states < idx->n_states)
            states[n_states++] = caa_container_of(node, key_state_t, node);
    }
    rcu_read_unlock();
    rcu_barrier();     /* every record and slot array freed above (and earlier) is gone */
    synchronize_rcu(); /* and no reader or table resize can reach a state any more */
    for (size_t i = 0; i < n_states; i++)
        kg_objpool_free(&state_pool, states[i]);
    free(states);
    for (size_t i = 0; i < idx->n_domain_entries; i++)
        free(idx->domain_entries[i].pattern);
    free(idx->domain_entries);
    free_domain_set(idx->domains);
    kg_digest_table_free(idx->by_hash);
    cds_lfht_destroy(idx->by_id, NULL);
    pthread_mutex_destroy(&idx->write_lock);
    free(idx);
}

void kg_key_index_read_lock(void)
{
    rcu_read_lock();
}

void kg_key_index_read_unlock(void)
{
    rcu_read_unlock();
}

void kg_key_index_thread_online(void)
{
    rcu_register_thread();
}

void kg_key_index_thread_offline(void)
{
    rcu_unregister_thread();
}

/* Writer side, under write_lock and rcu_read_lock: the state of `id`, created on first use. */
static key_state_t *state_get_or_add(kg_key_index_t *idx, const char *id)
{
    /* One walk of the bucket for lookup and insertion: a new state is made up front and given
     * back if the token has one already (a change of a known key: the cold case at a bulk load). */
    key_state_t *st = kg_objpool_alloc(&state_pool);
    size_t len = strnlen(id, KG_KEY_ID_LEN);
    memcpy(st->id, id, len);
    cds_lfht_node_init(&st->node);
    struct cds_lfht_node *node = cds_lfht_add_unique(idx->by_id, hash_of_id(st->id), match_id, st->id, &st->node);
    if (node != &st->node) {
        kg_objpool_free(&state_pool, st);
        return caa_container_of(node, key_state_t, node);
    }
    idx->n_states++;
    return st;
}

/* Writer side: unlinks a record, freeing it after a grace period. */
static void rec_del(kg_key_index_t *idx, key_rec_t *rec)
{
    if (kg_digest_table_remove(idx->by_hash, rec))
        call_rcu(&rec->rcu, free_rec_rcu);
}

static bool hash_in(const uint8_t hash[KG_KEY_HASH_BYTES], const kg_token_secret_t *secrets, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(secrets[i].hash, hash, KG_KEY_HASH_BYTES) == 0)
            return true;
    return false;
}

/* ==== The CORS origin set (writer side) ==== */

static void free_domain_set(kg_domain_set_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        free(set->patterns[i]);
    free(set->patterns);
    free(set->expires_at);
    free(set);
}

typedef struct retired {
    struct rcu_head rcu;
    void *obj;
    void (*destroy)(void *);
} retired_t;

static void free_retired(struct rcu_head *head)
{
    retired_t *r = caa_container_of(head, retired_t, rcu);
    r->destroy(r->obj);
    free(r);
}

void kg_rcu_retire(void *obj, void (*destroy)(void *))
{
    if (obj == NULL)
        return;
    retired_t *r = kg_xcalloc(1, sizeof(*r));
    r->obj = obj, r->destroy = destroy;
    call_rcu(&r->rcu, free_retired);
}

static void destroy_domain_set(void *set)
{
    free_domain_set(set);
}

/* Publishes every (pattern, expiry) of the active publishable keys. */
static void publish_domains(kg_key_index_t *idx)
{
    kg_domain_set_t *set = kg_xcalloc(1, sizeof(*set));
    set->patterns = kg_xcalloc(idx->n_domain_entries + 1, sizeof(char *));
    set->expires_at = kg_xcalloc(idx->n_domain_entries + 1, sizeof(int64_t));
    for (size_t i = 0; i < idx->n_domain_entries; i++) {
        set->patterns[set->n] = kg_xstrdup(idx->domain_entries[i].pattern);
        set->expires_at[set->n++] = idx->domain_entries[i].expires_at;
    }
    kg_rcu_retire(rcu_xchg_pointer(&idx->domains, set), destroy_domain_set);
}

/* Replaces a key's entries in the origin set by `domains` (none: the key no longer counts).
 * Returns whether the set changed (then publish_domains makes it visible). */
static bool set_key_domains(kg_key_index_t *idx, key_state_t *st, char *const *domains, size_t n, int64_t expires_at)
{
    bool changed = false;
    for (size_t j = 0; st->has_domains && j < idx->n_domain_entries;) {
        if (idx->domain_entries[j].owner == st) {
            free(idx->domain_entries[j].pattern);
            idx->domain_entries[j] = idx->domain_entries[--idx->n_domain_entries];
            changed = true;
        } else {
            j++;
        }
    }
    if (n > 0) {
        if (idx->n_domain_entries + n > idx->cap_domain_entries) { /* grown geometrically: a bulk load adds many */
            size_t cap = idx->cap_domain_entries > 0 ? 2 * idx->cap_domain_entries : 16;
            while (cap < idx->n_domain_entries + n)
                cap *= 2;
            domain_entry_t *grown = realloc(idx->domain_entries, cap * sizeof(*grown));
            if (grown == NULL)
                abort();
            idx->domain_entries = grown, idx->cap_domain_entries = cap;
        }
        for (size_t i = 0; i < n; i++)
            idx->domain_entries[idx->n_domain_entries++] = (domain_entry_t){st, kg_xstrdup(domains[i]), expires_at};
        changed = true;
    }
    st->has_domains = n > 0;
    return changed;
}

const kg_domain_set_t *kg_key_index_domains(kg_key_index_t *idx)
{
    return rcu_dereference(idx->domains);
}

/* A record of secret i (of n) of token t, not linked anywhere yet (cold: per key change, never per request). */
static key_rec_t *rec_new(key_state_t *st, const kg_token_t *t, const kg_token_secret_t *secrets, size_t n, size_t i,
                          kg_key_policy_t *policy)
{
    key_rec_t *rec = kg_objpool_alloc(&rec_pool);
    memcpy(rec->hash, secrets[i].hash, KG_KEY_HASH_BYTES);
    rec->secret_expires_at = secrets[i].expires_at;
    rec->state = st;
    rec->policy = policy;
    rec->expires_at = t->expires_at;
    rec->rotations = t->rotations;
    rec->grace_until = n > 1 ? secrets[1].expires_at : 0;
    rec->type = (uint8_t)t->type;
    rec->enabled = t->enabled;
    rec->revoked = t->revoked_at != 0;
    rec->is_root = t->is_root;
    return rec;
}

void kg_key_index_put(kg_key_index_t *idx, const kg_token_t *t, const kg_token_secret_t *secrets, size_t n_secrets)
{
    if (n_secrets > MAX_SECRETS_PER_TOKEN)
        n_secrets = MAX_SECRETS_PER_TOKEN; /* the store keeps at most two; newest first */
    /* Outside the lock: compiling a policy nobody shares yet parses JSON. One reference per record. */
    kg_key_policy_t *policies[MAX_SECRETS_PER_TOKEN] = {NULL};
    for (size_t i = 0; i < n_secrets; i++)
        policies[i] = kg_key_policy_acquire(t);
    pthread_mutex_lock(&idx->write_lock);
    grow_if_needed(idx, idx->n_states + 1);
    rcu_read_lock();
    key_state_t *st = state_get_or_add(idx, t->id);

    /* Secrets that are gone (rotated away without grace, or a grace ended by a second rotation);
     * the ones that stay are replaced below. */
    for (size_t i = 0; i < st->n_recs; i++)
        if (!hash_in(st->recs[i]->hash, secrets, n_secrets))
            rec_del(idx, st->recs[i]);

    for (size_t i = 0; i < n_secrets; i++) {
        key_rec_t *rec = rec_new(st, t, secrets, n_secrets, i, policies[i]);
        key_rec_t *old = kg_digest_table_put(idx->by_hash, rec, st);
        if (old != NULL)
            call_rcu(&old->rcu, free_rec_rcu);
        st->recs[i] = rec;
    }
    rcu_assign_pointer(st->current, n_secrets > 0 ? st->recs[0] : NULL);
    st->n_recs = (uint8_t)n_secrets;
    /* Only an active publishable key widens the CORS set (expiry is judged per request). */
    bool counts = n_secrets > 0 && t->enabled && t->revoked_at == 0;
    if (set_key_domains(idx, st, counts ? policies[0]->domains : NULL, counts ? policies[0]->n_domains : 0,
                        t->expires_at))
        publish_domains(idx);
    rcu_read_unlock();
    pthread_mutex_unlock(&idx->write_lock);
}

/* ==== Bulk load ==== */

typedef struct bulk_item {
    unsigned long bucket;
    struct cds_lfht_node *node;
    unsigned long hash;
} bulk_item_t;

struct kg_key_index_load {
    kg_key_index_t *idx;
    bulk_item_t *states;
    size_t n_states, cap_states;
    void **recs;             /* key_rec_t *, added to by_hash at load_end */
    const void **rec_states; /* each record's state: the table's prefetch hint */
    size_t n_recs, cap_recs;
    bool domains_changed;
};

static void bulk_push(bulk_item_t **items, size_t *n, size_t *cap, struct cds_lfht_node *node, unsigned long hash)
{
    if (*n == *cap) {
        *cap = *cap > 0 ? 2 * *cap : 1024;
        *items = realloc(*items, *cap * sizeof(**items));
        if (*items == NULL)
            abort();
    }
    (*items)[(*n)++] = (bulk_item_t){0, node, hash};
}

kg_key_index_load_t *kg_key_index_load_begin(kg_key_index_t *idx)
{
    kg_key_index_load_t *l = kg_xcalloc(1, sizeof(*l));
    l->idx = idx;
    pthread_mutex_lock(&idx->write_lock); /* held until load_end: the load is the only writer */
    return l;
}

void kg_key_index_load_add(kg_key_index_load_t *l, const kg_token_t *t, const kg_token_secret_t *secrets, size_t n)
{
    kg_key_index_t *idx = l->idx;
    if (n > MAX_SECRETS_PER_TOKEN)
        n = MAX_SECRETS_PER_TOKEN;
    key_state_t *st = kg_objpool_alloc(&state_pool);
    memcpy(st->id, t->id, strnlen(t->id, KG_KEY_ID_LEN));
    cds_lfht_node_init(&st->node);
    bulk_push(&l->states, &l->n_states, &l->cap_states, &st->node, hash_of_id(st->id));
    for (size_t i = 0; i < n; i++) {
        key_rec_t *rec = rec_new(st, t, secrets, n, i, kg_key_policy_acquire(t));
        st->recs[i] = rec;
        if (l->n_recs == l->cap_recs) {
            l->cap_recs = l->cap_recs > 0 ? 2 * l->cap_recs : 1024;
            l->recs = realloc(l->recs, l->cap_recs * sizeof(*l->recs));
            l->rec_states = realloc(l->rec_states, l->cap_recs * sizeof(*l->rec_states));
            if (l->recs == NULL || l->rec_states == NULL)
                abort();
        }
        l->recs[l->n_recs] = rec, l->rec_states[l->n_recs++] = st;
    }
    st->n_recs = (uint8_t)n;
    st->current = n > 0 ? st->recs[0] : NULL; /* published with the tables at load_end */
    if (n > 0 && t->enabled && t->revoked_at == 0)
        l->domains_changed |=
            set_key_domains(idx, st, st->recs[0]->policy->domains, st->recs[0]->policy->n_domains, t->expires_at);
}

/*
 * Links states into by_id in the order of their buckets: each insertion then walks a bucket
 * array and a chain the previous ones have just brought into cache, where random order paid
 * several cache misses per node (a third of a million keys' load, measured).
 */
static size_t link_in_bucket_order(kg_key_index_t *idx, bulk_item_t *items, size_t n)
{
    size_t duplicates = 0, n_buckets = idx->n_buckets;
    /* A counting sort by bucket: two passes, where qsort's comparisons cost a tenth of the load. */
    uint32_t *start = kg_xcalloc(n_buckets + 1, sizeof(*start));
    bulk_item_t *sorted = kg_xcalloc(n + 1, sizeof(*sorted));
    for (size_t i = 0; i < n; i++)
        start[(items[i].bucket = items[i].hash & (n_buckets - 1)) + 1]++;
    for (size_t b = 0; b < n_buckets; b++)
        start[b + 1] += start[b];
    for (size_t i = 0; i < n; i++)
        sorted[start[items[i].bucket]++] = items[i];
    free(start);
    for (size_t i = 0; i < n; i++) {
        struct cds_lfht_node *node = sorted[i].node;
        key_state_t *st = caa_container_of(node, key_state_t, node);
        if (cds_lfht_add_unique(idx->by_id, sorted[i].hash, match_id, st->id, node) != node)
            duplicates++;
        else
            idx->n_states++;
    }
    free(sorted);
    return duplicates;
}

kg_err_t kg_key_index_load_end(kg_key_index_load_t *l)
{
    kg_key_index_t *idx = l->idx;
    grow_if_needed(idx, idx->n_states + l->n_states);
    rcu_read_lock();
    size_t duplicates = link_in_bucket_order(idx, l->states, l->n_states) +
                        kg_digest_table_put_many(idx->by_hash, l->recs, l->rec_states, l->n_recs);
    if (l->domains_changed)
        publish_domains(idx);
    rcu_read_unlock();
    pthread_mutex_unlock(&idx->write_lock);
    free(l->states);
    free(l->recs);
    free(l->rec_states);
    free(l);
    /* Ids and secret hashes are the store's primary keys: a duplicate means a corrupt store (what
     * was not linked is not freed: the caller is expected to stop). */
    return duplicates == 0 ? KG_OK : KG_ESTORE;
}

void kg_key_index_remove(kg_key_index_t *idx, const char *id)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;

    pthread_mutex_lock(&idx->write_lock);
    rcu_read_lock();
    cds_lfht_lookup(idx->by_id, hash_of_id(id), match_id, id, &iter);
    node = cds_lfht_iter_get_node(&iter);
    if (node != NULL) {
        key_state_t *st = caa_container_of(node, key_state_t, node);
        for (size_t i = 0; i < st->n_recs; i++)
            rec_del(idx, st->recs[i]);
        st->n_recs = 0;
        rcu_assign_pointer(st->current, NULL);
        if (set_key_domains(idx, st, NULL, 0, 0))
            publish_domains(idx);
        /* The state stays: records freed after the grace period may still point to it. */
    }
    rcu_read_unlock();
    pthread_mutex_unlock(&idx->write_lock);
}

kg_err_t kg_key_index_lookup_id(kg_key_index_t *idx, const char *id, size_t len, int64_t now, bool publishable_only,
                                kg_key_view_t *out)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    char buf[KG_KEY_ID_LEN + 1];
    uint8_t hash[KG_KEY_HASH_BYTES];
    kg_err_t rv = KG_EINVALID_API_KEY;

    if (!kg_key_id_is_valid(id, len))
        return KG_EINVALID_API_KEY;
    memcpy(buf, id, len);
    buf[len] = '\0';
    rcu_read_lock();
    cds_lfht_lookup(idx->by_id, hash_of_id(buf), match_id, buf, &iter);
    node = cds_lfht_iter_get_node(&iter);
    const key_rec_t *rec = node != NULL ? rcu_dereference(caa_container_of(node, key_state_t, node)->current) : NULL;
    if (rec != NULL && (!publishable_only || rec->policy->n_domains > 0)) {
        /* The status checks are the secret path's own: look the current secret's record up by hash. */
        memcpy(hash, rec->hash, sizeof(hash));
        rv = kg_key_index_lookup(idx, hash, now, out);
    }
    rcu_read_unlock();
    return rv;
}

/* Lists a key for the next last-use flush, unless it is listed already (readers race for it:
 * one pushes). */
static void list_used(kg_key_index_t *idx, key_state_t *st, int64_t listed_at)
{
    if (!atomic_load_explicit(&st->listed, memory_order_relaxed) &&
        !atomic_exchange_explicit(&st->listed, true, memory_order_acq_rel)) {
        atomic_store_explicit(&st->listed_at, listed_at, memory_order_relaxed);
        cds_lfs_push(&idx->used, &st->used);
    }
}

kg_err_t kg_key_index_lookup(kg_key_index_t *idx, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                             kg_key_view_t *out)
{
    kg_err_t rv = KG_EINVALID_API_KEY;

    rcu_read_lock();
    /* The table has prefetched the record and its state (the key's counters) together. */
    const key_rec_t *rec = kg_digest_table_find(idx->by_hash, hash);
    if (rec == NULL)
        goto out;
    /* The table matched on the hash already; compare again in constant time for good measure. */
    if (!kg_key_hash_equal(rec->hash, hash))
        goto out;
    if (rec->secret_expires_at != 0 && now >= rec->secret_expires_at)
        goto out; /* an old secret past its rotation grace is simply unknown */
#ifndef KG_BREAK_RULE_STATUS
    if (rec->revoked) {
        rv = KG_EKEY_REVOKED;
    } else if (!rec->enabled) {
        rv = KG_EKEY_DISABLED;
    } else if (rec->expires_at != 0 && now >= rec->expires_at) {
        rv = KG_EKEY_EXPIRED;
    } else
#endif
    {
        const key_state_t *st = rec->state;
        const kg_key_policy_t *p = rec->policy;
        memcpy(out->id, st->id, sizeof(out->id));
        out->org_id = p->org_id, out->environment = p->environment, out->team_id = p->team_id;
        out->type = (kg_token_type_t)rec->type;
        out->is_root = rec->is_root;
        out->rotations = rec->rotations;
        out->grace_until = rec->grace_until;
        out->old_secret = rec->secret_expires_at != 0;
        out->policy = p;
        out->limit_state = &rec->state->limits;
        out->publishable = out->ephemeral = false;
        out->eph_scopes = 0;
        out->eph_allow = NULL;
        /* Only write when the second changes, so a hot key does not bounce its cache line; a key
         * not listed in the last KG_LAST_USED_STEP_S is listed for the next flush. */
        key_state_t *used = rec->state;
        if (atomic_load_explicit(&used->last_used_at, memory_order_relaxed) < now) {
            atomic_store_explicit(&used->last_used_at, now, memory_order_relaxed);
            int64_t listed_at = atomic_load_explicit(&used->listed_at, memory_order_relaxed);
            if (listed_at == 0 || now - listed_at >= KG_LAST_USED_STEP_S)
                list_used(idx, used, now);
        }
        rv = KG_OK;
    }
out:
    rcu_read_unlock();
    return rv;
}

kg_err_t kg_key_index_check_hash(kg_key_index_t *idx, const uint8_t hash[KG_KEY_HASH_BYTES], int64_t now,
                                 kg_key_view_t *out)
{
    rcu_read_lock();
    kg_digest_table_prefetch(idx->by_hash, hash);
    kg_err_t rv = kg_key_index_lookup(idx, hash, now, out);
    rcu_read_unlock();
    return rv;
}

kg_err_t kg_key_index_check_secret(kg_key_index_t *idx, const char *secret, size_t len, int64_t now, kg_key_view_t *out,
                                   uint8_t hash_out[KG_KEY_HASH_BYTES])
{
    kg_key_secret_ref_t ref;
    if (kg_key_secret_parse_shape(secret, len, &ref) != KG_OK)
        return KG_EINVALID_API_KEY;
    if (!kg_key_hash(secret, len, hash_out))
        return KG_EINTERNAL;
    rcu_read_lock();
    kg_digest_table_prefetch(idx->by_hash, hash_out); /* the CRC below runs while it arrives */
    kg_err_t rv = kg_key_secret_checksum_ok(&ref) ? kg_key_index_lookup(idx, hash_out, now, out) : KG_EINVALID_API_KEY;
    rcu_read_unlock();
    return rv;
}

kg_limit_state_t *kg_key_index_limit_state(kg_key_index_t *idx, const char *id)
{
    pthread_mutex_lock(&idx->write_lock);
    grow_if_needed(idx, idx->n_states + 1);
    rcu_read_lock();
    key_state_t *st = state_get_or_add(idx, id);
    rcu_read_unlock();
    pthread_mutex_unlock(&idx->write_lock);
    return &st->limits;
}

void kg_key_index_reserve(kg_key_index_t *idx, size_t n_keys, size_t n_secrets)
{
    kg_objpool_reserve(&state_pool, n_keys);
    kg_objpool_reserve(&rec_pool, n_secrets);
    pthread_mutex_lock(&idx->write_lock);
    grow_if_needed(idx, n_keys);
    rcu_read_lock(); /* the old slot array is retired with call_rcu */
    kg_digest_table_reserve(idx->by_hash, n_secrets);
    rcu_read_unlock();
    pthread_mutex_unlock(&idx->write_lock);
}

size_t kg_key_index_size(kg_key_index_t *idx)
{
    pthread_mutex_lock(&idx->write_lock);
    size_t n = kg_digest_table_count(idx->by_hash);
    pthread_mutex_unlock(&idx->write_lock);
    return n;
}

size_t kg_key_index_take_last_used(kg_key_index_t *idx, kg_last_used_t *out, size_t cap)
{
    struct cds_lfs_node *node, *next;
    size_t n = 0;

    if (idx->flushing == NULL)
        idx->flushing = __cds_lfs_pop_all(&idx->used); /* the flusher is the only consumer */
    if (idx->flushing == NULL)
        return 0;
    cds_lfs_for_each_safe(idx->flushing, node, next)
    {
        if (n == cap) {
            idx->flushing = caa_container_of(node, struct cds_lfs_head, node); /* the rest: next call */
            return n;
        }
        key_state_t *st = caa_container_of(node, key_state_t, used);
        /* Unlisted before the time is read: a use after this lists the key again. */
        atomic_store_explicit(&st->listed, false, memory_order_seq_cst);
        snprintf(out[n].id, sizeof(out[n].id), "%s", st->id);
        out[n].at = atomic_load_explicit(&st->last_used_at, memory_order_relaxed);
        atomic_store_explicit(&st->listed_at, out[n++].at, memory_order_relaxed);
    }
    idx->flushing = NULL;
    return n;
}

void kg_key_index_relist_last_used(kg_key_index_t *idx, const kg_last_used_t *failed, size_t n)
{
    struct cds_lfht_iter iter;
    rcu_read_lock();
    for (size_t i = 0; i < n; i++) {
        cds_lfht_lookup(idx->by_id, hash_of_id(failed[i].id), match_id, failed[i].id, &iter);
        struct cds_lfht_node *node = cds_lfht_iter_get_node(&iter);
        if (node != NULL)
            list_used(idx, caa_container_of(node, key_state_t, node), 0); /* 0: not in the store yet */
    }
    rcu_read_unlock();
}

void kg_key_index_list_unflushed(kg_key_index_t *idx)
{
    struct cds_lfht_iter iter;
    struct cds_lfht_node *node;
    rcu_read_lock();
    cds_lfht_for_each (idx->by_id, &iter, node) { /* not _entry: its container_of of the end's NULL is UB */
        key_state_t *st = caa_container_of(node, key_state_t, node);
        int64_t listed_at = atomic_load_explicit(&st->listed_at, memory_order_relaxed);
        if (atomic_load_explicit(&st->last_used_at, memory_order_relaxed) > listed_at)
            list_used(idx, st, listed_at);
    }
    rcu_read_unlock();
}
