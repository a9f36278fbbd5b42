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

/* Every member a policy is compiled from, in one string: NUL-separated fields, each led by '+'
 * when present or '-' when absent (so no value can pass for an absent member). */
static char *signature_of(const kg_token_t *t)
{
    const char *parts[] = {t->scopes,      t->allow,       t->allowed_domains, t->prompt_modules,
                           t->prompt_text, t->rate_limits, t->budget};
    size_t len = 4;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        len += (parts[i] != NULL ? strlen(parts[i]) : 0) + 2;
    char *sig = kg_xcalloc(1, len);
    size_t at = (size_t)snprintf(sig, len, "%d", (int)t->type) + 1;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t n = parts[i] != NULL ? strlen(parts[i]) : 0;
        sig[at++] = parts[i] != NULL ? '+' : '-';
        memcpy(sig + at, parts[i] != NULL ? parts[i] : "", n), at += n + 1;
    }
    return sig;
}

static size_t signature_len(const char *sig)
{
    size_t at = strlen(sig) + 1;
    for (int i = 0; i < 7; i++)
        at += strlen(sig + at) + 1;
    return at;
}

#define SHARED_BUCKETS 65536
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static kg_key_policy_t *shared[SHARED_BUCKETS];

static size_t bucket_of(const char *sig, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)sig[i]) * 1099511628211ULL;
    return (size_t)(h % SHARED_BUCKETS);
}

kg_key_policy_t *kg_key_policy_acquire(const kg_token_t *t)
{
    char *sig = signature_of(t);
    size_t len = signature_len(sig), b = bucket_of(sig, len);
    pthread_mutex_lock(&shared_lock);
    kg_key_policy_t *p = shared[b];
    while (p != NULL && (signature_len(p->signature) != len || memcmp(p->signature, sig, len) != 0))
        p = p->next_shared;
    if (p != NULL) {
        p->refs++;
        pthread_mutex_unlock(&shared_lock);
        free(sig);
        return p;
    }
    pthread_mutex_unlock(&shared_lock);
    p = kg_key_policy_new(t); /* outside the lock: compiling parses JSON */
    p->signature = sig;
    p->refs = 1;
    pthread_mutex_lock(&shared_lock);
    kg_key_policy_t *raced = shared[b];
    while (raced != NULL && (signature_len(raced->signature) != len || memcmp(raced->signature, sig, len) != 0))
        raced = raced->next_shared;
    if (raced != NULL) { /* another writer compiled the same meanwhile: use that one */
        raced->refs++;
        pthread_mutex_unlock(&shared_lock);
        kg_key_policy_free(p);
        return raced;
    }
    p->next_shared = shared[b];
    shared[b] = p;
    pthread_mutex_unlock(&shared_lock);
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
    size_t b = bucket_of(p->signature, signature_len(p->signature));
    kg_key_policy_t **link = &shared[b];
    while (*link != NULL && *link != p)
        link = &(*link)->next_shared;
    if (*link == p)
        *link = p->next_shared;
    pthread_mutex_unlock(&shared_lock);
    kg_key_policy_free(p);
}
