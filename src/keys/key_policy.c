/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the compilation of a key's policy (see key_policy.h) with jansson, on
 * the writer side only.
 */
#include "keys/key_policy.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"

static const struct {
    kg_scope_t bit;
    const char *name;
} scope_names[] = {
    {KG_SCOPE_CHAT, "inference:chat"},
    {KG_SCOPE_EMBED, "inference:embed"},
    {KG_SCOPE_TRANSCRIBE, "inference:transcribe"},
    {KG_SCOPE_SPEECH, "inference:speech"},
    {KG_SCOPE_IMAGE, "inference:image"},
    {KG_SCOPE_DATASETS_WRITE, "datasets:write"},
    {KG_SCOPE_CONVERSATIONS_WRITE, "conversations:write"},
};

const char *kg_scope_name(kg_scope_t s)
{
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
        if (scope_names[i].bit == s)
            return scope_names[i].name;
    return "?";
}

uint32_t kg_scope_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
        if (strcmp(scope_names[i].name, name) == 0)
            return scope_names[i].bit;
    return 0;
}

char *kg_json_escape_dup(const char *s)
{
    json_t *str = json_string(s);
    char *quoted = str != NULL ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
    json_decref(str);
    if (quoted == NULL)
        return NULL;
    size_t len = strlen(quoted);
    char *out = kg_xstrndup(quoted + 1, len >= 2 ? len - 2 : 0); /* without the quotes */
    free(quoted);
    return out;
}

void kg_allow_list_compile(kg_allow_list_t *list, json_t *v)
{
    size_t i;
    json_t *item;
    memset(list, 0, sizeof(*list));
    if (v == NULL || (json_is_string(v) && strcmp(json_string_value(v), "*") == 0)) {
        list->all = v != NULL;
        return;
    }
    if (!json_is_array(v))
        return;
    list->patterns = kg_xcalloc(json_array_size(v), sizeof(char *));
    json_array_foreach (v, i, item) {
        if (!json_is_string(item))
            continue;
        if (strcmp(json_string_value(item), "*") == 0)
            list->all = true;
        list->patterns[list->n++] = kg_xstrdup(json_string_value(item));
    }
}

void kg_allow_list_dispose(kg_allow_list_t *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->patterns[i]);
    free(list->patterns);
}

kg_key_policy_t *kg_key_policy_new(const kg_token_t *t)
{
    kg_key_policy_t *p = kg_xcalloc(1, sizeof(*p));
    p->org_id = kg_xstrdup(t->org_id != NULL ? t->org_id : "");
    p->environment = kg_xstrdup(t->environment != NULL ? t->environment : "");
    p->team_id = kg_xstrdup(t->team_id != NULL ? t->team_id : "");
    json_t *scopes = t->scopes != NULL ? json_loads(t->scopes, 0, NULL) : NULL;
    json_t *allow = t->allow != NULL ? json_loads(t->allow, 0, NULL) : NULL;
    json_t *modules = t->prompt_modules != NULL ? json_loads(t->prompt_modules, 0, NULL) : NULL;
    size_t i;
    json_t *item;

    json_array_foreach (scopes, i, item) {
        if (json_is_string(item))
            p->scopes |= kg_scope_parse(json_string_value(item));
    }
    /* An access key without `allow` (made before allowlists existed) may reach everything; a
     * key of another type reaches nothing, whatever else fails. */
    if (t->allow == NULL) {
        p->models.all = p->agents.all = t->type == KG_TOKEN_ACCESS;
    } else {
        kg_allow_list_compile(&p->models, json_object_get(allow, "models"));
        kg_allow_list_compile(&p->agents, json_object_get(allow, "agents"));
    }
    if (json_is_array(modules)) {
        p->prompt_modules = kg_xcalloc(json_array_size(modules), sizeof(char *));
        json_array_foreach (modules, i, item) {
            if (json_is_string(item))
                p->prompt_modules[p->n_prompt_modules++] = kg_xstrdup(json_string_value(item));
        }
    }
    json_t *domains = t->allowed_domains != NULL ? json_loads(t->allowed_domains, 0, NULL) : NULL;
    if (json_is_array(domains) && t->type == KG_TOKEN_ACCESS) {
        p->domains = kg_xcalloc(json_array_size(domains), sizeof(char *));
        json_array_foreach (domains, i, item) {
            if (json_is_string(item))
                p->domains[p->n_domains++] = kg_xstrdup(json_string_value(item));
        }
    }
    json_decref(domains);
    if (t->prompt_text != NULL && t->prompt_text[0] != '\0')
        p->prompt_text_json = kg_json_escape_dup(t->prompt_text);
    p->limits = kg_rate_limits_parse(t->rate_limits);
    p->budget = kg_budget_parse(t->budget);
    json_decref(scopes), json_decref(allow), json_decref(modules);
    return p;
}

void kg_key_policy_free(kg_key_policy_t *p)
{
    if (p == NULL)
        return;
    free(p->org_id), free(p->environment), free(p->team_id);
    kg_allow_list_dispose(&p->models);
    kg_allow_list_dispose(&p->agents);
    for (size_t i = 0; i < p->n_prompt_modules; i++)
        free(p->prompt_modules[i]);
    free(p->prompt_modules);
    free(p->prompt_text_json);
    for (size_t i = 0; i < p->n_domains; i++)
        free(p->domains[i]);
    free(p->domains);
    free(p->signature);
    free(p);
}

bool kg_allow_list_match(const kg_allow_list_t *list, const char *name, size_t len)
{
    if (list->all)
        return true;
    for (size_t i = 0; i < list->n; i++) {
        const char *pat = list->patterns[i];
        size_t plen = strlen(pat);
        if (plen > 0 && pat[plen - 1] == '*') {
            if (len >= plen - 1 && memcmp(pat, name, plen - 1) == 0)
                return true;
        } else if (plen == len && memcmp(pat, name, len) == 0) {
            return true;
        }
    }
    return false;
}

bool kg_key_policy_has_prompt(const kg_key_policy_t *p)
{
    return p->n_prompt_modules > 0 || p->prompt_text_json != NULL;
}

/* ==== Shared policies ==== */

#define SIGNATURE_PARTS 10
#define SHARED_BUCKETS 65536

/* The members a policy is compiled from, besides the token type. */
static void parts_of(const kg_token_t *t, const char *parts[SIGNATURE_PARTS])
{
    const char *all[SIGNATURE_PARTS] = {t->scopes,      t->allow,       t->allowed_domains, t->prompt_modules,
                                        t->prompt_text, t->rate_limits, t->budget,          t->org_id,
                                        t->environment, t->team_id};
    memcpy(parts, all, sizeof(all));
}

/* The signature a shared policy keeps: the type's digit, then every part, NUL-separated, each
 * led by '+' when present or '-' when absent (so no value can pass for an absent member). */
static char *signature_of(kg_token_type_t type, const char *const parts[SIGNATURE_PARTS])
{
    size_t len = 2;
    for (size_t i = 0; i < SIGNATURE_PARTS; i++)
        len += (parts[i] != NULL ? strlen(parts[i]) : 0) + 2;
    char *sig = kg_xcalloc(1, len);
    size_t at = 2;
    sig[0] = (char)('0' + (int)type); /* one digit: kg_token_type_t has three values */
    for (size_t i = 0; i < SIGNATURE_PARTS; i++) {
        size_t n = parts[i] != NULL ? strlen(parts[i]) : 0;
        sig[at++] = parts[i] != NULL ? '+' : '-';
        memcpy(sig + at, parts[i] != NULL ? parts[i] : "", n), at += n + 1;
    }
    return sig;
}

/* FNV-1a of the signature signature_of would make, without making it (a lookup allocates nothing). */
static uint64_t signature_hash(kg_token_type_t type, const char *const parts[SIGNATURE_PARTS])
{
    uint64_t h = 1469598103934665603ULL;
#define FNV(c) (h = (h ^ (unsigned char)(c)) * 1099511628211ULL)
    FNV('0' + (int)type), FNV('\0');
    for (size_t i = 0; i < SIGNATURE_PARTS; i++) {
        FNV(parts[i] != NULL ? '+' : '-');
        for (const char *c = parts[i] != NULL ? parts[i] : ""; *c != '\0'; c++)
            FNV(*c);
        FNV('\0');
    }
#undef FNV
    return h;
}

/* Whether a kept signature is the one signature_of would make, compared part by part. */
static bool signature_matches(const char *sig, kg_token_type_t type, const char *const parts[SIGNATURE_PARTS])
{
    if (sig[0] != (char)('0' + (int)type) || sig[1] != '\0')
        return false;
    size_t at = 2;
    for (size_t i = 0; i < SIGNATURE_PARTS; i++) {
        if (sig[at++] != (parts[i] != NULL ? '+' : '-'))
            return false;
        size_t n = parts[i] != NULL ? strlen(parts[i]) : 0;
        /* strncmp, not memcmp: a kept part shorter than this one must not be read past its end */
        if ((n > 0 && strncmp(sig + at, parts[i], n) != 0) || sig[at + n] != '\0')
            return false;
        at += n + 1;
    }
    return true;
}

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static kg_key_policy_t *shared[SHARED_BUCKETS];
/* The policy acquired last: keys loaded one after another mostly share it, and comparing with
 * it skips hashing the members (a tenth of a million keys' load, measured). */
static kg_key_policy_t *last_acquired;

/* Under shared_lock: the shared policy with this signature, counted once more, or NULL. */
static kg_key_policy_t *find_shared(uint64_t h, kg_token_type_t type, const char *const parts[SIGNATURE_PARTS])
{
    for (kg_key_policy_t *p = shared[h % SHARED_BUCKETS]; p != NULL; p = p->next_shared)
        if (p->signature_hash == h && signature_matches(p->signature, type, parts)) {
            p->refs++;
            return p;
        }
    return NULL;
}

kg_key_policy_t *kg_key_policy_acquire(const kg_token_t *t)
{
    const char *parts[SIGNATURE_PARTS];
    parts_of(t, parts);
    pthread_mutex_lock(&shared_lock);
    kg_key_policy_t *p = last_acquired;
    if (p != NULL && signature_matches(p->signature, t->type, parts)) {
        p->refs++;
        pthread_mutex_unlock(&shared_lock);
        return p;
    }
    pthread_mutex_unlock(&shared_lock);
    uint64_t h = signature_hash(t->type, parts);
    pthread_mutex_lock(&shared_lock);
    if ((p = find_shared(h, t->type, parts)) != NULL)
        last_acquired = p;
    pthread_mutex_unlock(&shared_lock);
    if (p != NULL)
        return p;
    p = kg_key_policy_new(t); /* outside the lock: compiling parses JSON */
    p->signature = signature_of(t->type, parts);
    p->signature_hash = h;
    p->refs = 1;
    pthread_mutex_lock(&shared_lock);
    kg_key_policy_t *raced = find_shared(h, t->type, parts);
    if (raced == NULL) {
        p->next_shared = shared[h % SHARED_BUCKETS];
        shared[h % SHARED_BUCKETS] = p;
    }
    last_acquired = raced != NULL ? raced : p;
    pthread_mutex_unlock(&shared_lock);
    if (raced != NULL) { /* another writer compiled the same meanwhile: use that one */
        kg_key_policy_free(p);
        return raced;
    }
    return p;
}

void kg_key_policy_release(kg_key_policy_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&shared_lock);
    if (--p->refs > 0) {
        pthread_mutex_unlock(&shared_lock);
        return;
    }
    kg_key_policy_t **link = &shared[p->signature_hash % SHARED_BUCKETS];
    while (*link != NULL && *link != p)
        link = &(*link)->next_shared;
    if (*link == p)
        *link = p->next_shared;
    if (last_acquired == p)
        last_acquired = NULL;
    pthread_mutex_unlock(&shared_lock);
    kg_key_policy_free(p);
}
