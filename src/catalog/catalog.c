/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the catalog of catalog.h: rows are parsed once into a snapshot (base
 * URLs split, credentials resolved — an unset variable or unreadable file makes its provider
 * unavailable, which its models then answer with 503 provider_unavailable), and the current
 * snapshot is swapped under RCU.
 */
#include "catalog/catalog.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <urcu.h>

#include "core/alloc.h"
#include "core/log.h"
#include "keys/key_index.h"
#include "keys/key_policy.h"
#include "keys/token.h"

/* ==== Credentials ==== */

/* A credential goes into an HTTP header: printable ASCII only (no CR/LF injection). */
static char *checked(char *v)
{
    for (const char *p = v; p != NULL && *p != '\0'; p++)
        if (*p < 0x21 || *p > 0x7e) {
            OPENSSL_cleanse(v, strlen(v));
            free(v);
            return NULL;
        }
    return v;
}

/* Resolves "env:NAME" or "file:/path" into a heap copy, or NULL. */
static char *resolve_ref(const char *ref)
{
    if (strncmp(ref, "env:", 4) == 0) {
        const char *v = getenv(ref + 4);
        return v != NULL && v[0] != '\0' ? checked(kg_xstrdup(v)) : NULL;
    }
    if (strncmp(ref, "file:", 5) == 0) {
        char buf[4096];
        FILE *f = fopen(ref + 5, "r");
        if (f == NULL)
            return NULL;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            n--;
        char *out = n > 0 ? checked(kg_xstrndup(buf, n)) : NULL;
        OPENSSL_cleanse(buf, sizeof(buf));
        return out;
    }
    return NULL;
}

static char *resolve_credential(const kg_config_t *cfg, const char *name)
{
    for (size_t j = 0; j < cfg->n_credentials; j++)
        if (strcmp(cfg->credentials[j].name, name) == 0)
            return resolve_ref(cfg->credentials[j].ref);
    return NULL;
}

/* ==== Rows from the config ==== */

static void add_row(kg_catalog_row_t **rows, size_t *n, const char *kind, const char *name, json_t *spec, int64_t now)
{
    *rows = realloc(*rows, (*n + 1) * sizeof(**rows));
    if (*rows == NULL)
        abort();
    char *text = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(spec);
    (*rows)[(*n)++] = (kg_catalog_row_t){.org_id = kg_xstrdup(KG_DEFAULT_ORG_ID),
                                         .kind = kg_xstrdup(kind),
                                         .name = kg_xstrdup(name),
                                         .spec = text != NULL ? text : kg_xstrdup("{}"),
                                         .source = kg_xstrdup("config"),
                                         .created_at = now,
                                         .updated_at = now};
}

static json_t *strings_json(const kg_config_strings_t *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(a, json_string(s->items[i]));
    return a;
}

void kg_catalog_config_rows(const kg_config_t *cfg, kg_catalog_row_t **rows, size_t *n)
{
    int64_t now = (int64_t)time(NULL);
    *rows = NULL, *n = 0;
    for (size_t i = 0; i < cfg->n_prompt_modules; i++)
        add_row(rows, n, "prompt_module", cfg->prompt_modules[i].name,
                json_pack("{s:s}", "text", cfg->prompt_modules[i].text), now);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const kg_config_provider_t *p = &cfg->providers[i];
        add_row(rows, n, "provider", p->name,
                json_pack("{s:s, s:s?, s:s?, s:s?, s:b, s:b}", "type", p->type, "base_url", p->base_url, "credential",
                          p->credential, "ca_file", p->ca_file, "forward_identity", p->forward_identity, "stream_usage",
                          !p->no_stream_usage),
                now);
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const kg_config_model_t *m = &cfg->models[i];
        add_row(rows, n, "model", m->name,
                json_pack("{s:s, s:s, s:f, s:f, s:o}", "provider", m->provider, "upstream_model",
                          m->upstream_model != NULL ? m->upstream_model : m->name, "input", m->input_price, "output",
                          m->output_price, "prompt_modules", strings_json(&m->prompt_modules)),
                now);
    }
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const kg_config_agent_t *a = &cfg->agents[i];
        add_row(rows, n, "agent", a->name,
                json_pack("{s:s, s:o, s:o}", "model", a->model, "prompt_modules", strings_json(&a->prompt_modules),
                          "environments", strings_json(&a->environments)),
                now);
    }
}

/* ==== Building ==== */

bool kg_base_url_parse(const char *url, kg_base_url_t *out)
{
    const char *rest;
    memset(out, 0, sizeof(*out));
    /* Printable ASCII without spaces only: the path goes into an HTTP request line as it is. */
    for (const char *c = url; *c != '\0'; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return false;
    if (strlen(url) > 2048)
        return false;
    if (strncmp(url, "https://", 8) == 0)
        out->tls = true, rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        out->tls = false, rest = url + 7;
    else
        return false;
    size_t auth_len = strcspn(rest, "/?#");
    if (auth_len == 0 || memchr(rest, '@', auth_len) != NULL || rest[auth_len] == '?' || rest[auth_len] == '#')
        return false;
    const char *auth = rest, *colon = NULL;
    if (auth[0] == '[') { /* [v6]:port */
        const char *close = memchr(auth, ']', auth_len);
        if (close == NULL || close == auth + 1 || (size_t)(close - auth - 1) >= sizeof(out->host))
            return false;
        memcpy(out->host, auth + 1, (size_t)(close - auth - 1));
        if (close + 1 < auth + auth_len && close[1] != ':')
            return false;
        colon = close + 1 < auth + auth_len ? close + 1 : NULL;
    } else {
        colon = memchr(auth, ':', auth_len);
        size_t hl = (size_t)((colon != NULL ? colon : auth + auth_len) - auth);
        if (hl == 0 || hl >= sizeof(out->host))
            return false;
        memcpy(out->host, auth, hl);
    }
    out->port = out->tls ? 443 : 80;
    if (colon != NULL) {
        size_t pl = (size_t)(auth + auth_len - colon - 1);
        long port = 0;
        if (pl == 0 || pl > 5)
            return false;
        for (size_t i = 1; i <= pl; i++) {
            if (colon[i] < '0' || colon[i] > '9')
                return false;
            port = port * 10 + (colon[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
        out->port = (uint16_t)port;
    }
    out->authority_len = auth_len;
    out->path = rest + auth_len;
    return true;
}

/* Splits http(s)://host[:port][/path] into the provider's fields. */
static bool parse_base_url(kg_provider_t *p, const char *url)
{
    kg_base_url_t u;
    if (!kg_base_url_parse(url, &u))
        return false;
    const char *rest = url + (u.tls ? 8 : 7);
    p->tls = u.tls;
    p->authority = kg_xstrndup(rest, u.authority_len);
    p->host = kg_xstrdup(u.host);
    p->port = u.port;
    const char *path = u.path;
    size_t path_len = strlen(path);
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    p->path_prefix = kg_xstrndup(path, path_len);
    size_t cap = strlen(p->host) + (p->ca_file != NULL ? strlen(p->ca_file) : 0) + 32;
    p->endpoint = kg_xcalloc(1, cap);
    snprintf(p->endpoint, cap, "%d|%s|%u|%s", p->tls, p->host, (unsigned)p->port, p->ca_file != NULL ? p->ca_file : "");
    p->tls_key = kg_xcalloc(1, cap);
    snprintf(p->tls_key, cap, "%s|%s", p->host, p->ca_file != NULL ? p->ca_file : "");
    return true;
}

static void provider_dispose(kg_provider_t *p)
{
    if (p->credential != NULL)
        OPENSSL_cleanse(p->credential, strlen(p->credential));
    free(p->org_id), free(p->name), free(p->host), free(p->authority), free(p->path_prefix), free(p->ca_file);
    free(p->endpoint), free(p->tls_key), free(p->credential);
}

static const char *str(json_t *spec, const char *member)
{
    return json_string_value(json_object_get(spec, member));
}

/* Joins the named modules' escaped texts with an escaped blank line; NULL when there are none. */
static char *join_modules(const kg_catalog_t *cat, const char *org_id, json_t *names)
{
    size_t len = 0, i, at = 0;
    json_t *item;
    json_array_foreach (names, i, item) {
        const kg_prompt_module_t *m = kg_catalog_prompt_module(cat, org_id, json_string_value(item));
        if (m != NULL)
            len += strlen(m->text_json) + 4;
    }
    if (len == 0)
        return NULL;
    char *out = kg_xcalloc(1, len + 1);
    json_array_foreach (names, i, item) {
        const kg_prompt_module_t *m = kg_catalog_prompt_module(cat, org_id, json_string_value(item));
        if (m == NULL)
            continue;
        if (at > 0)
            memcpy(out + at, "\\n\\n", 4), at += 4; /* an escaped blank line between modules */
        memcpy(out + at, m->text_json, strlen(m->text_json)), at += strlen(m->text_json);
    }
    out[at] = '\0';
    return out;
}

kg_catalog_t *kg_catalog_build_rows(const kg_config_t *cfg, const kg_catalog_row_t *rows, size_t n)
{
    kg_catalog_t *cat = kg_xcalloc(1, sizeof(*cat));
    json_t **specs = kg_xcalloc(n, sizeof(json_t *));
    cat->created_at = (int64_t)time(NULL);
    cat->prompt_modules = kg_xcalloc(n, sizeof(*cat->prompt_modules));
    cat->providers = kg_xcalloc(n, sizeof(*cat->providers));
    cat->models = kg_xcalloc(n, sizeof(*cat->models));
    cat->agents = kg_xcalloc(n, sizeof(*cat->agents));
    cat->teams = kg_xcalloc(n, sizeof(*cat->teams));
    for (size_t i = 0; i < n; i++)
        specs[i] = json_loads(rows[i].spec, 0, NULL);

    /* In dependency order: modules, providers, models, agents. */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "prompt_module") != 0 || str(specs[i], "text") == NULL)
            continue;
        kg_prompt_module_t *m = &cat->prompt_modules[cat->n_prompt_modules++];
        m->org_id = kg_xstrdup(rows[i].org_id), m->name = kg_xstrdup(rows[i].name);
        m->text_json = kg_json_escape_dup(str(specs[i], "text"));
        if (m->text_json == NULL)
            m->text_json = kg_xstrdup("");
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "provider") != 0)
            continue;
        kg_provider_t *p = &cat->providers[cat->n_providers];
        memset(p, 0, sizeof(*p));
        p->org_id = kg_xstrdup(rows[i].org_id), p->name = kg_xstrdup(rows[i].name);
        p->forward_identity = json_is_true(json_object_get(specs[i], "forward_identity"));
        p->stream_usage = !json_is_false(json_object_get(specs[i], "stream_usage")); /* default on */
        /* Only the config file may name a CA file (API callers must not point us at server files). */
        if (strcmp(rows[i].source, "config") == 0 && str(specs[i], "ca_file") != NULL)
            p->ca_file = kg_xstrdup(str(specs[i], "ca_file"));
        const char *type = str(specs[i], "type");
        if (type != NULL && strcmp(type, "mock") == 0) {
            p->type = KG_PROVIDER_MOCK, p->available = true;
            cat->n_providers++;
            continue;
        }
        p->type = KG_PROVIDER_OPENAI;
        if (str(specs[i], "base_url") == NULL || !parse_base_url(p, str(specs[i], "base_url"))) {
            kg_log_warn("catalog: provider %s of %s has an unusable base_url; left out", rows[i].name, rows[i].org_id);
            provider_dispose(p);
            continue;
        }
        const char *cred = str(specs[i], "credential");
        /* An API-made provider holds a credential only while the config grants it to its org:
         * the grant was checked when the provider was saved, but the config may change since. */
        bool granted =
            cred != NULL && (strcmp(rows[i].source, "config") == 0 ||
                             (rows[i].org_name != NULL && kg_config_credential_granted(cfg, cred, rows[i].org_name)));
        if (cred != NULL && !granted) {
            kg_log_warn("catalog: provider %s of %s names credential %s, which the configuration does not grant "
                        "to its organization; it answers provider_unavailable",
                        rows[i].name, rows[i].org_id, cred);
            p->available = false;
        } else if (cred != NULL) {
            p->credential = resolve_credential(cfg, cred);
            p->available = p->credential != NULL;
        } else {
            p->available = true; /* a self-hosted upstream without authentication */
        }
        cat->n_providers++;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "model") != 0)
            continue;
        const kg_provider_t *p = NULL;
        for (size_t j = 0; j < cat->n_providers && p == NULL; j++)
            if (kg_catalog_same_org(cat->providers[j].org_id, rows[i].org_id) &&
                strcmp(cat->providers[j].name, str(specs[i], "provider") != NULL ? str(specs[i], "provider") : "") == 0)
                p = &cat->providers[j];
        if (p == NULL) {
            kg_log_warn("catalog: model %s of %s has no usable provider; left out", rows[i].name, rows[i].org_id);
            continue;
        }
        kg_model_t *m = &cat->models[cat->n_models++];
        m->org_id = kg_xstrdup(rows[i].org_id), m->name = kg_xstrdup(rows[i].name);
        m->upstream_model =
            kg_xstrdup(str(specs[i], "upstream_model") != NULL ? str(specs[i], "upstream_model") : rows[i].name);
        m->provider = p;
        m->input_price = json_number_value(json_object_get(specs[i], "input"));
        m->output_price = json_number_value(json_object_get(specs[i], "output"));
        m->input_micro = llround(m->input_price * 1e6), m->output_micro = llround(m->output_price * 1e6);
        m->prompt_json = join_modules(cat, rows[i].org_id, json_object_get(specs[i], "prompt_modules"));
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "agent") != 0)
            continue;
        const char *model = str(specs[i], "model");
        const kg_model_t *m = model != NULL ? kg_catalog_model(cat, rows[i].org_id, model, strlen(model)) : NULL;
        if (m == NULL) {
            kg_log_warn("catalog: agent %s of %s has no usable model; left out", rows[i].name, rows[i].org_id);
            continue;
        }
        kg_agent_t *a = &cat->agents[cat->n_agents++];
        a->org_id = kg_xstrdup(rows[i].org_id), a->name = kg_xstrdup(rows[i].name);
        a->model = m;
        json_t *envs = json_object_get(specs[i], "environments"), *item;
        size_t k;
        a->environments.items = kg_xcalloc(json_array_size(envs) + 1, sizeof(char *));
        json_array_foreach (envs, k, item) {
            if (json_is_string(item))
                a->environments.items[a->environments.n++] = kg_xstrdup(json_string_value(item));
        }
        /* Through an agent the raw model's guardrails still apply: its modules first, then the
         * agent's, each once (docs/decisions.md). */
        json_t *names = json_array(), *item2;
        for (size_t j = 0; j < n; j++)
            if (strcmp(rows[j].kind, "model") == 0 && strcmp(rows[j].name, model) == 0 &&
                kg_catalog_same_org(rows[j].org_id, rows[i].org_id))
                json_array_extend(names, json_object_get(specs[j], "prompt_modules"));
        json_array_foreach (json_object_get(specs[i], "prompt_modules"), k, item2) {
            bool seen = false;
            size_t q;
            json_t *have;
            json_array_foreach (names, q, have) {
                seen |= json_equal(have, item2);
            }
            if (!seen)
                json_array_append(names, item2);
        }
        a->prompt_json = join_modules(cat, rows[i].org_id, names);
        json_decref(names);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "team") != 0)
            continue;
        kg_team_t *t = &cat->teams[cat->n_teams++];
        t->org_id = kg_xstrdup(rows[i].org_id), t->name = kg_xstrdup(rows[i].name);
        t->tier = kg_xstrdup(str(specs[i], "tier") != NULL ? str(specs[i], "tier") : "custom");
        if (!kg_tier_preset(t->tier, &t->limits)) {
            char *limits = json_dumps(json_object_get(specs[i], "rate_limits"), JSON_ENCODE_ANY);
            t->limits = kg_rate_limits_parse(limits);
            free(limits);
        }
        json_t *all = json_string("*"), *models = json_object_get(specs[i], "models");
        kg_allow_list_compile(&t->models, models != NULL ? models : all);
        json_decref(all);
        char *budget = json_dumps(json_object_get(specs[i], "budget"), JSON_ENCODE_ANY);
        t->budget = kg_budget_parse(budget);
        free(budget);
        t->state = kg_team_state(t->org_id, t->name);
    }
    for (size_t i = 0; i < n; i++)
        json_decref(specs[i]);
    free(specs);
    return cat;
}

kg_catalog_t *kg_catalog_build(const kg_config_t *cfg, char *err, size_t err_cap)
{
    kg_catalog_row_t *rows;
    size_t n;
    kg_catalog_config_rows(cfg, &rows, &n);
    kg_catalog_t *cat = kg_catalog_build_rows(cfg, rows, n);
    kg_catalog_rows_free(rows, n);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        bool built = false;
        for (size_t j = 0; j < cat->n_providers; j++)
            built |= strcmp(cat->providers[j].name, cfg->providers[i].name) == 0;
        if (!built) {
            snprintf(err, err_cap, "providers.%s: base_url must be http(s)://host[:port][/path]",
                     cfg->providers[i].name);
            kg_catalog_free(cat);
            return NULL;
        }
    }
    return cat;
}

kg_catalog_t *kg_catalog_load(kg_store_t *st, const kg_config_t *cfg)
{
    kg_catalog_row_t *rows = NULL;
    size_t n = 0;
    if (kg_store_catalog_list(st, NULL, NULL, &rows, &n) != KG_OK)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        kg_org_t o = {0};
        if (strcmp(rows[i].kind, "provider") == 0 && kg_store_org_get(st, rows[i].org_id, &o) == KG_OK)
            rows[i].org_name = kg_xstrdup(o.name);
        kg_org_dispose(&o);
    }
    kg_catalog_t *cat = kg_catalog_build_rows(cfg, rows, n);
    kg_catalog_rows_free(rows, n);
    return cat;
}

void kg_catalog_free(kg_catalog_t *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->n_providers; i++)
        provider_dispose(&cat->providers[i]);
    for (size_t i = 0; i < cat->n_models; i++) {
        kg_model_t *m = &cat->models[i];
        free(m->org_id), free(m->name), free(m->upstream_model), free(m->prompt_json);
    }
    for (size_t i = 0; i < cat->n_prompt_modules; i++) {
        kg_prompt_module_t *m = &cat->prompt_modules[i];
        free(m->org_id), free(m->name), free(m->text_json);
    }
    for (size_t i = 0; i < cat->n_agents; i++) {
        kg_agent_t *a = &cat->agents[i];
        free(a->org_id), free(a->name), free(a->prompt_json);
        for (size_t k = 0; k < a->environments.n; k++)
            free(a->environments.items[k]);
        free(a->environments.items);
    }
    for (size_t i = 0; i < cat->n_teams; i++) {
        kg_team_t *t = &cat->teams[i];
        free(t->org_id), free(t->name), free(t->tier);
        kg_allow_list_dispose(&t->models);
    }
    free(cat->teams);
    free(cat->prompt_modules), free(cat->providers), free(cat->models), free(cat->agents), free(cat);
}

/* ==== The published snapshot ==== */

static kg_catalog_t *current;

static void destroy_catalog(void *cat)
{
    kg_catalog_free(cat);
}

void kg_catalog_publish(kg_catalog_t *cat)
{
    kg_rcu_retire(rcu_xchg_pointer(&current, cat), destroy_catalog);
}

const kg_catalog_t *kg_catalog_current(void)
{
    return rcu_dereference(current);
}

/* Team counters by (org, name): appended under the lock, never moved or freed before exit. */
typedef struct team_state {
    struct team_state *next;
    char *org_id, *name;
    kg_limit_state_t state;
} team_state_t;

static pthread_mutex_t team_states_lock = PTHREAD_MUTEX_INITIALIZER;
static team_state_t *team_states;

kg_limit_state_t *kg_team_state(const char *org_id, const char *name)
{
    pthread_mutex_lock(&team_states_lock);
    team_state_t *ts = team_states;
    while (ts != NULL && (strcmp(ts->org_id, org_id) != 0 || strcmp(ts->name, name) != 0))
        ts = ts->next;
    if (ts == NULL) {
        ts = kg_xcalloc(1, sizeof(*ts));
        ts->org_id = kg_xstrdup(org_id), ts->name = kg_xstrdup(name);
        ts->next = team_states;
        team_states = ts;
    }
    pthread_mutex_unlock(&team_states_lock);
    return &ts->state;
}

void kg_catalog_retire_all(void)
{
    kg_catalog_publish(NULL);
    rcu_barrier();
    pthread_mutex_lock(&team_states_lock);
    while (team_states != NULL) {
        team_state_t *ts = team_states;
        team_states = ts->next;
        free(ts->org_id), free(ts->name), free(ts);
    }
    pthread_mutex_unlock(&team_states_lock);
}

/* ==== Lookups ==== */

bool kg_catalog_same_org(const char *owner, const char *org_id)
{
#ifdef KG_BREAK_RULE_ORG
    (void)owner, (void)org_id;
    return true;
#else
    return strcmp(owner, org_id) == 0;
#endif
}

static bool name_is(const char *name, const char *s, size_t len)
{
    return strlen(name) == len && memcmp(name, s, len) == 0;
}

const kg_model_t *kg_catalog_model(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len)
{
    for (size_t i = 0; i < cat->n_models; i++)
        if (name_is(cat->models[i].name, name, len) && kg_catalog_same_org(cat->models[i].org_id, org_id))
            return &cat->models[i];
    return NULL;
}

const kg_team_t *kg_catalog_team(const kg_catalog_t *cat, const char *org_id, const char *name)
{
    for (size_t i = 0; i < cat->n_teams; i++)
        if (strcmp(cat->teams[i].name, name) == 0 && kg_catalog_same_org(cat->teams[i].org_id, org_id))
            return &cat->teams[i];
    return NULL;
}

const kg_agent_t *kg_catalog_agent(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len)
{
    for (size_t i = 0; i < cat->n_agents; i++)
        if (name_is(cat->agents[i].name, name, len) && kg_catalog_same_org(cat->agents[i].org_id, org_id))
            return &cat->agents[i];
    return NULL;
}

const kg_prompt_module_t *kg_catalog_prompt_module(const kg_catalog_t *cat, const char *org_id, const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < cat->n_prompt_modules; i++)
        if (strcmp(cat->prompt_modules[i].name, name) == 0 &&
            kg_catalog_same_org(cat->prompt_modules[i].org_id, org_id))
            return &cat->prompt_modules[i];
    return NULL;
}

bool kg_agent_published_to(const kg_agent_t *agent, const char *env)
{
    for (size_t i = 0; i < agent->environments.n; i++)
        if (strcmp(agent->environments.items[i], env) == 0)
            return true;
    return false;
}
