/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the configuration loader: libyaml builds a document tree, which is
 * walked into kg_config_t with strict checking (an unknown or mistyped field is an error
 * naming its line, so a typo never silently drops a setting).
 */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "core/alloc.h"
#include "keys/key_format.h"

typedef struct walk {
    yaml_document_t *doc;
    const char *origin;
    char *err;
    size_t err_cap;
} walk_t;

static bool fail(walk_t *w, const yaml_node_t *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(walk_t *w, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node != NULL)
        snprintf(w->err, w->err_cap, "%s:%zu: %s", w->origin, (size_t)node->start_mark.line + 1, msg);
    else
        snprintf(w->err, w->err_cap, "%s: %s", w->origin, msg);
    return false;
}

void kg_config_set(char **member, const char *value)
{
    free(*member);
    *member = value != NULL ? kg_xstrdup(value) : NULL;
}

void kg_config_init(kg_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    kg_config_set(&cfg->listen, "127.0.0.1:8080");
    kg_config_set(&cfg->metrics_listen, "127.0.0.1:9464");
    kg_config_set(&cfg->db, "sqlite://./keygate.db");
    kg_config_set(&cfg->brand, KG_KEY_DEFAULT_BRAND);
    cfg->max_body_bytes = 10485760;
    cfg->max_header_bytes = 16384;
    cfg->upstream_timeout_ms = 600000;
    cfg->request_timeout_ms = 10000;
    cfg->default_max_tokens = 1024;
    cfg->drain_ms = 30000;
    cfg->environments = kg_xcalloc(1, sizeof(*cfg->environments));
    cfg->environments[0].name = kg_xstrdup("production");
    cfg->environments[0].live = true;
    cfg->n_environments = 1;
}

static void strings_dispose(kg_config_strings_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    s->items = NULL, s->n = 0;
}

static void environments_dispose(kg_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_environments; i++)
        free(cfg->environments[i].name);
    KG_FREE(cfg->environments);
    cfg->n_environments = 0;
}

void kg_config_dispose(kg_config_t *cfg)
{
    free(cfg->path), free(cfg->listen), free(cfg->metrics_listen), free(cfg->db), free(cfg->redis), free(cfg->brand);
    environments_dispose(cfg);
    for (size_t i = 0; i < cfg->n_credentials; i++) {
        free(cfg->credentials[i].name), free(cfg->credentials[i].ref);
        strings_dispose(&cfg->credentials[i].orgs);
    }
    free(cfg->credentials);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        kg_config_provider_t *p = &cfg->providers[i];
        free(p->name), free(p->type), free(p->base_url), free(p->credential), free(p->ca_file);
    }
    free(cfg->providers);
    for (size_t i = 0; i < cfg->n_models; i++) {
        free(cfg->models[i].name), free(cfg->models[i].provider), free(cfg->models[i].upstream_model);
        strings_dispose(&cfg->models[i].prompt_modules);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->n_prompt_modules; i++)
        free(cfg->prompt_modules[i].name), free(cfg->prompt_modules[i].text);
    free(cfg->prompt_modules);
    for (size_t i = 0; i < cfg->n_agents; i++) {
        free(cfg->agents[i].name), free(cfg->agents[i].model);
        strings_dispose(&cfg->agents[i].prompt_modules);
        strings_dispose(&cfg->agents[i].environments);
    }
    free(cfg->agents);
    memset(cfg, 0, sizeof(*cfg));
}

/* ==== Typed readers of YAML nodes ==== */

static const char *scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_null(const yaml_node_t *n)
{
    const char *s = scalar(n);
    return s != NULL && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || s[0] == '\0');
}

static bool read_string(walk_t *w, const yaml_node_t *n, const char *field, char **out)
{
    if (is_null(n)) {
        kg_config_set(out, NULL);
        return true;
    }
    const char *s = scalar(n);
    if (s == NULL)
        return fail(w, n, "%s: expected a string", field);
    kg_config_set(out, s);
    return true;
}

static bool read_bool(walk_t *w, const yaml_node_t *n, const char *field, bool *out)
{
    const char *s = scalar(n);
    if (s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0))
        return *out = true, true;
    if (s != NULL && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0))
        return *out = false, true;
    return fail(w, n, "%s: expected true or false", field);
}

static bool read_int(walk_t *w, const yaml_node_t *n, const char *field, int64_t min, int64_t *out)
{
    const char *s = scalar(n);
    char *end;
    if (s == NULL || *s == '\0')
        return fail(w, n, "%s: expected an integer", field);
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min)
        return fail(w, n, "%s: expected an integer >= %lld", field, (long long)min);
    *out = v;
    return true;
}

static bool read_number(walk_t *w, const yaml_node_t *n, const char *field, double *out)
{
    const char *s = scalar(n);
    char *end;
    if (s == NULL || *s == '\0')
        return fail(w, n, "%s: expected a number", field);
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= 0 && v <= 1e6)) /* also refuses nan and inf */
        return fail(w, n, "%s: expected a price from 0 to 1000000 (credits per 1M tokens)", field);
    *out = v;
    return true;
}

static bool read_strings(walk_t *w, const yaml_node_t *n, const char *field, kg_config_strings_t *out)
{
    strings_dispose(out);
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(w, n, "%s: expected a list", field);
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    out->items = kg_xcalloc(count, sizeof(char *));
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(w->doc, *it);
        if (scalar(item) == NULL)
            return fail(w, item, "%s: expected a list of strings", field);
        out->items[out->n++] = kg_xstrdup(scalar(item));
    }
    return true;
}

/* Calls on_pair for each key of a mapping node. */
typedef bool (*pair_cb)(walk_t *w, void *obj, const char *key, const yaml_node_t *value);

static bool each_pair(walk_t *w, const yaml_node_t *n, const char *what, void *obj, pair_cb cb)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(w, n, "%s: expected a mapping", what);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if (scalar(k) == NULL)
            return fail(w, k, "%s: keys must be strings", what);
        if (!cb(w, obj, scalar(k), v))
            return false;
    }
    return true;
}

/* Allocates one zeroed element per item of a sequence and calls cb on each mapping. */
static bool each_item(walk_t *w, const yaml_node_t *n, const char *what, void **arr, size_t *count, size_t elem_size,
                      pair_cb cb, bool (*check)(walk_t *, const yaml_node_t *, void *))
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(w, n, "%s: expected a list", what);
    size_t cap = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *arr = kg_xcalloc(cap, elem_size);
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(w->doc, *it);
        void *elem = (char *)*arr + *count * elem_size;
        (*count)++;
        if (!each_pair(w, item, what, elem, cb) || !check(w, item, elem))
            return false;
    }
    return true;
}

/* ==== Sections ==== */

static bool env_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_environment_t *e = obj;
    if (strcmp(key, "name") == 0)
        return read_string(w, v, "environments.name", &e->name);
    if (strcmp(key, "live") == 0)
        return read_bool(w, v, "environments.live", &e->live);
    return fail(w, v, "environments: unknown field '%s'", key);
}

static bool valid_name(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > 31)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool env_check(walk_t *w, const yaml_node_t *n, void *obj)
{
    kg_config_environment_t *e = obj;
    if (!valid_name(e->name))
        return fail(w, n, "environments: name must be 1-31 chars of [a-z0-9_-]");
    return true;
}

static bool credential_grant_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_credential_t *c = obj;
    if (strcmp(key, "ref") == 0)
        return read_string(w, v, "credentials.ref", &c->ref);
    if (strcmp(key, "orgs") == 0)
        return read_strings(w, v, "credentials.orgs", &c->orgs);
    return fail(w, v, "credentials.%s: unknown field '%s'", c->name, key);
}

/* `name: env:X`, or `name: {ref: env:X, orgs: [acme, ...]}` to grant it to other orgs' providers. */
static bool credential_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_t *cfg = obj;
    kg_config_credential_t c = {.name = kg_xstrdup(key)};
    cfg->credentials = realloc(cfg->credentials, (cfg->n_credentials + 1) * sizeof(*cfg->credentials));
    if (cfg->credentials == NULL)
        return fail(w, v, "out of memory");
    cfg->credentials[cfg->n_credentials++] = c;
    kg_config_credential_t *slot = &cfg->credentials[cfg->n_credentials - 1];
    if (v->type == YAML_MAPPING_NODE) {
        if (!each_pair(w, v, "credentials", slot, credential_grant_pair))
            return false;
    } else if (scalar(v) != NULL) {
        slot->ref = kg_xstrdup(scalar(v));
    }
    if (slot->ref == NULL || (strncmp(slot->ref, "env:", 4) != 0 && strncmp(slot->ref, "file:", 5) != 0))
        return fail(w, v, "credentials.%s: expected env:NAME or file:/path", key);
    return true;
}

bool kg_config_credential_granted(const kg_config_t *cfg, const char *name, const char *org_name)
{
    for (size_t i = 0; i < cfg->n_credentials; i++) {
        const kg_config_credential_t *c = &cfg->credentials[i];
        if (strcmp(c->name, name) != 0)
            continue;
        if (c->orgs.n == 0)
            return strcmp(org_name, "default") == 0;
        for (size_t k = 0; k < c->orgs.n; k++)
            if (strcmp(c->orgs.items[k], org_name) == 0)
                return true;
        return false;
    }
    return false;
}

static bool provider_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_provider_t *p = obj;
    if (strcmp(key, "name") == 0)
        return read_string(w, v, "providers.name", &p->name);
    if (strcmp(key, "type") == 0)
        return read_string(w, v, "providers.type", &p->type);
    if (strcmp(key, "base_url") == 0)
        return read_string(w, v, "providers.base_url", &p->base_url);
    if (strcmp(key, "credential") == 0)
        return read_string(w, v, "providers.credential", &p->credential);
    if (strcmp(key, "ca_file") == 0)
        return read_string(w, v, "providers.ca_file", &p->ca_file);
    if (strcmp(key, "forward_identity") == 0)
        return read_bool(w, v, "providers.forward_identity", &p->forward_identity);
    if (strcmp(key, "stream_usage") == 0) {
        bool on = true;
        if (!read_bool(w, v, "providers.stream_usage", &on))
            return false;
        p->no_stream_usage = !on;
        return true;
    }
    return fail(w, v, "providers: unknown field '%s'", key);
}

static bool provider_check(walk_t *w, const yaml_node_t *n, void *obj)
{
    kg_config_provider_t *p = obj;
    if (p->name == NULL)
        return fail(w, n, "providers: every provider needs a name");
    if (!valid_name(p->name))
        return fail(w, n, "providers.%s: names are 1-31 characters of [a-z0-9_-]", p->name);
    if (p->type == NULL)
        kg_config_set(&p->type, "openai");
    if (strcmp(p->type, "openai") != 0 && strcmp(p->type, "mock") != 0)
        return fail(w, n, "providers.%s: type must be openai or mock", p->name);
    if (strcmp(p->type, "openai") == 0 && p->base_url == NULL)
        return fail(w, n, "providers.%s: base_url is required", p->name);
    return true;
}

static bool model_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_model_t *m = obj;
    if (strcmp(key, "name") == 0)
        return read_string(w, v, "models.name", &m->name);
    if (strcmp(key, "provider") == 0)
        return read_string(w, v, "models.provider", &m->provider);
    if (strcmp(key, "upstream_model") == 0)
        return read_string(w, v, "models.upstream_model", &m->upstream_model);
    if (strcmp(key, "input") == 0)
        return read_number(w, v, "models.input", &m->input_price);
    if (strcmp(key, "output") == 0)
        return read_number(w, v, "models.output", &m->output_price);
    if (strcmp(key, "prompt_modules") == 0)
        return read_strings(w, v, "models.prompt_modules", &m->prompt_modules);
    return fail(w, v, "models: unknown field '%s'", key);
}

/* Model and agent names travel in JSON and URLs unescaped: the characters model ids use. */
static bool valid_model_name(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._:/@+-", c)))
            return false;
    }
    return true;
}

static bool model_check(walk_t *w, const yaml_node_t *n, void *obj)
{
    kg_config_model_t *m = obj;
    if (m->name == NULL || m->provider == NULL)
        return fail(w, n, "models: every model needs a name and a provider");
    if (!valid_model_name(m->name) || (m->upstream_model != NULL && !valid_model_name(m->upstream_model)))
        return fail(w, n, "models.%s: names are 1-128 characters of [A-Za-z0-9._:/@+-]", m->name);
    return true;
}

static bool module_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_prompt_module_t *m = obj;
    if (strcmp(key, "name") == 0)
        return read_string(w, v, "prompt_modules.name", &m->name);
    if (strcmp(key, "text") == 0)
        return read_string(w, v, "prompt_modules.text", &m->text);
    return fail(w, v, "prompt_modules: unknown field '%s'", key);
}

static bool module_check(walk_t *w, const yaml_node_t *n, void *obj)
{
    kg_config_prompt_module_t *m = obj;
    if (m->name == NULL || m->text == NULL)
        return fail(w, n, "prompt_modules: every module needs a name and a text");
    return true;
}

static bool agent_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_agent_t *a = obj;
    if (strcmp(key, "name") == 0)
        return read_string(w, v, "agents.name", &a->name);
    if (strcmp(key, "model") == 0)
        return read_string(w, v, "agents.model", &a->model);
    if (strcmp(key, "prompt_modules") == 0)
        return read_strings(w, v, "agents.prompt_modules", &a->prompt_modules);
    if (strcmp(key, "environments") == 0)
        return read_strings(w, v, "agents.environments", &a->environments);
    return fail(w, v, "agents: unknown field '%s'", key);
}

static bool agent_check(walk_t *w, const yaml_node_t *n, void *obj)
{
    kg_config_agent_t *a = obj;
    if (a->name == NULL || a->model == NULL)
        return fail(w, n, "agents: every agent needs a name and a model");
    if (!valid_model_name(a->name))
        return fail(w, n, "agents.%s: names are 1-128 characters of [A-Za-z0-9._:/@+-]", a->name);
    return true;
}

static bool limits_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_t *cfg = obj;
    if (strcmp(key, "max_body_bytes") == 0)
        return read_int(w, v, "limits.max_body_bytes", 1, &cfg->max_body_bytes);
    if (strcmp(key, "max_header_bytes") == 0)
        return read_int(w, v, "limits.max_header_bytes", 1024, &cfg->max_header_bytes);
    if (strcmp(key, "upstream_timeout_ms") == 0)
        return read_int(w, v, "limits.upstream_timeout_ms", 1, &cfg->upstream_timeout_ms);
    if (strcmp(key, "request_timeout_ms") == 0)
        return read_int(w, v, "limits.request_timeout_ms", 100, &cfg->request_timeout_ms);
    if (strcmp(key, "default_max_tokens") == 0)
        return read_int(w, v, "limits.default_max_tokens", 1, &cfg->default_max_tokens);
    if (strcmp(key, "drain_ms") == 0)
        return read_int(w, v, "limits.drain_ms", 0, &cfg->drain_ms);
    return fail(w, v, "limits: unknown field '%s'", key);
}

static bool top_pair(walk_t *w, void *obj, const char *key, const yaml_node_t *v)
{
    kg_config_t *cfg = obj;
    if (strcmp(key, "listen") == 0)
        return read_string(w, v, "listen", &cfg->listen);
    if (strcmp(key, "metrics_listen") == 0)
        return read_string(w, v, "metrics_listen", &cfg->metrics_listen);
    if (strcmp(key, "db") == 0)
        return read_string(w, v, "db", &cfg->db);
    if (strcmp(key, "redis") == 0)
        return read_string(w, v, "redis", &cfg->redis);
    if (strcmp(key, "brand") == 0) {
        if (!read_string(w, v, "brand", &cfg->brand))
            return false;
        if (cfg->brand == NULL || !kg_key_brand_is_valid(cfg->brand, strlen(cfg->brand)))
            return fail(w, v, "brand: must match [a-z][a-z0-9]{1,15} and not be \"pk\"");
        return true;
    }
    if (strcmp(key, "allow_private_upstreams") == 0)
        return read_bool(w, v, "allow_private_upstreams", &cfg->allow_private_upstreams);
    if (strcmp(key, "workers") == 0) {
        int64_t n;
        if (scalar(v) != NULL && strcmp(scalar(v), "auto") == 0)
            return cfg->workers = 0, true;
        if (!read_int(w, v, "workers", 1, &n) || n > 256)
            return fail(w, v, "workers: expected auto or 1..256");
        cfg->workers = (int)n;
        return true;
    }
    if (strcmp(key, "environments") == 0) {
        environments_dispose(cfg);
        return each_item(w, v, "environments", (void **)&cfg->environments, &cfg->n_environments,
                         sizeof(*cfg->environments), env_pair, env_check);
    }
    if (strcmp(key, "limits") == 0)
        return each_pair(w, v, "limits", cfg, limits_pair);
    if (strcmp(key, "credentials") == 0)
        return is_null(v) || each_pair(w, v, "credentials", cfg, credential_pair);
    if (strcmp(key, "providers") == 0)
        return each_item(w, v, "providers", (void **)&cfg->providers, &cfg->n_providers, sizeof(*cfg->providers),
                         provider_pair, provider_check);
    if (strcmp(key, "models") == 0)
        return each_item(w, v, "models", (void **)&cfg->models, &cfg->n_models, sizeof(*cfg->models), model_pair,
                         model_check);
    if (strcmp(key, "prompt_modules") == 0)
        return each_item(w, v, "prompt_modules", (void **)&cfg->prompt_modules, &cfg->n_prompt_modules,
                         sizeof(*cfg->prompt_modules), module_pair, module_check);
    if (strcmp(key, "agents") == 0)
        return each_item(w, v, "agents", (void **)&cfg->agents, &cfg->n_agents, sizeof(*cfg->agents), agent_pair,
                         agent_check);
    return fail(w, v, "unknown top-level field '%s'", key);
}

static bool module_declared(const kg_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_prompt_modules; i++)
        if (strcmp(cfg->prompt_modules[i].name, name) == 0)
            return true;
    return false;
}

/* Cross-references that the per-field readers cannot see. */
static bool check_references(walk_t *w, kg_config_t *cfg)
{
    bool live = false;
    for (size_t i = 0; i < cfg->n_environments; i++) {
        live |= cfg->environments[i].live;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->environments[i].name, cfg->environments[j].name) == 0)
                return fail(w, NULL, "environments: '%s' is declared twice", cfg->environments[i].name);
    }
    if (cfg->n_environments == 0)
        return fail(w, NULL, "environments: at least one is required");
    (void)live; /* no live environment is allowed: every key is then a _test_ key */
    for (size_t i = 0; i < cfg->n_providers; i++) {
        kg_config_provider_t *p = &cfg->providers[i];
        if (p->credential == NULL)
            continue;
        bool found = false;
        for (size_t j = 0; j < cfg->n_credentials; j++)
            found |= strcmp(cfg->credentials[j].name, p->credential) == 0;
        if (!found)
            return fail(w, NULL, "providers.%s: credential '%s' is not declared under credentials", p->name,
                        p->credential);
    }
    /* Names are unique within their kind, and an agent may not shadow a model (or the other
     * way round): the name a client sends must mean one thing. */
    for (size_t i = 0; i < cfg->n_providers; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->providers[i].name, cfg->providers[j].name) == 0)
                return fail(w, NULL, "providers: '%s' is declared twice", cfg->providers[i].name);
    for (size_t i = 0; i < cfg->n_prompt_modules; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->prompt_modules[i].name, cfg->prompt_modules[j].name) == 0)
                return fail(w, NULL, "prompt_modules: '%s' is declared twice", cfg->prompt_modules[i].name);
    for (size_t i = 0; i < cfg->n_models; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->models[i].name, cfg->models[j].name) == 0)
                return fail(w, NULL, "models: '%s' is declared twice", cfg->models[i].name);
        for (size_t k = 0; k < cfg->models[i].prompt_modules.n; k++)
            if (!module_declared(cfg, cfg->models[i].prompt_modules.items[k]))
                return fail(w, NULL, "models.%s: prompt module '%s' is not declared", cfg->models[i].name,
                            cfg->models[i].prompt_modules.items[k]);
    }
    for (size_t i = 0; i < cfg->n_agents; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->agents[i].name, cfg->agents[j].name) == 0)
                return fail(w, NULL, "agents: '%s' is declared twice", cfg->agents[i].name);
        for (size_t j = 0; j < cfg->n_models; j++)
            if (strcmp(cfg->agents[i].name, cfg->models[j].name) == 0)
                return fail(w, NULL, "agents.%s: a model has the same name", cfg->agents[i].name);
        for (size_t k = 0; k < cfg->agents[i].prompt_modules.n; k++)
            if (!module_declared(cfg, cfg->agents[i].prompt_modules.items[k]))
                return fail(w, NULL, "agents.%s: prompt module '%s' is not declared", cfg->agents[i].name,
                            cfg->agents[i].prompt_modules.items[k]);
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        bool found = false;
        for (size_t j = 0; j < cfg->n_providers; j++)
            found |= strcmp(cfg->providers[j].name, cfg->models[i].provider) == 0;
        if (!found)
            return fail(w, NULL, "models.%s: provider '%s' is not declared", cfg->models[i].name,
                        cfg->models[i].provider);
    }
    for (size_t i = 0; i < cfg->n_agents; i++) {
        bool found = false;
        for (size_t j = 0; j < cfg->n_models; j++)
            found |= strcmp(cfg->models[j].name, cfg->agents[i].model) == 0;
        if (!found)
            return fail(w, NULL, "agents.%s: model '%s' is not declared", cfg->agents[i].name, cfg->agents[i].model);
        for (size_t k = 0; k < cfg->agents[i].environments.n; k++)
            if (kg_config_environment(cfg, cfg->agents[i].environments.items[k]) == NULL)
                return fail(w, NULL, "agents.%s: environment '%s' is not declared", cfg->agents[i].name,
                            cfg->agents[i].environments.items[k]);
    }
    return true;
}

bool kg_config_parse(kg_config_t *cfg, const char *text, size_t len, const char *origin, char *err, size_t err_cap)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    walk_t w = {.doc = &doc, .origin = origin, .err = err, .err_cap = err_cap};
    bool ok = false;

    if (!yaml_parser_initialize(&parser))
        return fail(&w, NULL, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_cap, "%s:%zu: %s", origin, (size_t)parser.problem_mark.line + 1,
                 parser.problem != NULL ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return false;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_null(root))
        ok = true; /* an empty file means defaults */
    else
        ok = each_pair(&w, root, "configuration", cfg, top_pair) && check_references(&w, cfg);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return ok;
}

static bool read_file(const char *path, char **out, size_t *len, char *err, size_t err_cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return false;
    }
    size_t cap = 4096, n = 0;
    char *buf = kg_xmalloc(cap);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        if (cap >= (size_t)16 << 20) {
            fclose(f), free(buf);
            snprintf(err, err_cap, "%s: larger than 16 MiB", path);
            return false;
        }
        cap *= 2;
        char *grown = realloc(buf, cap);
        if (grown == NULL) {
            fclose(f), free(buf);
            snprintf(err, err_cap, "%s: out of memory", path);
            return false;
        }
        buf = grown;
    }
    fclose(f);
    *out = buf, *len = n;
    return true;
}

bool kg_config_load(kg_config_t *cfg, const char *path, char *err, size_t err_cap)
{
    struct stat st;
    kg_config_init(cfg);
    if (path == NULL)
        path = getenv("KEYGATE_CONFIG");
    if (path == NULL && stat("keygate.yaml", &st) == 0)
        path = "keygate.yaml";
    if (path != NULL) {
        char *text;
        size_t len;
        if (!read_file(path, &text, &len, err, err_cap))
            return false;
        bool ok = kg_config_parse(cfg, text, len, path, err, err_cap);
        free(text);
        if (!ok)
            return false;
        kg_config_set(&cfg->path, path);
    }

    const char *v;
    if ((v = getenv("KEYGATE_LISTEN")) != NULL && *v != '\0')
        kg_config_set(&cfg->listen, v);
    if ((v = getenv("KEYGATE_DB")) != NULL && *v != '\0')
        kg_config_set(&cfg->db, v);
    if ((v = getenv("KEYGATE_REDIS")) != NULL && *v != '\0')
        kg_config_set(&cfg->redis, v);
    if ((v = getenv("KEYGATE_WORKERS")) != NULL && *v != '\0') {
        if (strcmp(v, "auto") == 0) {
            cfg->workers = 0;
        } else {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 1 || n > 256) {
                snprintf(err, err_cap, "KEYGATE_WORKERS: expected auto or 1..256");
                return false;
            }
            cfg->workers = (int)n;
        }
    }
    if ((v = getenv("KEYGATE_BRAND")) != NULL && *v != '\0') {
        if (!kg_key_brand_is_valid(v, strlen(v))) {
            snprintf(err, err_cap, "KEYGATE_BRAND: must match [a-z][a-z0-9]{1,15} and not be \"pk\"");
            return false;
        }
        kg_config_set(&cfg->brand, v);
    }
    return true;
}

const char *kg_config_sqlite_path(const kg_config_t *cfg)
{
    const char *db = cfg->db;
    if (strncmp(db, "sqlite://", 9) == 0)
        return db + 9;
    if (strstr(db, "://") != NULL)
        return NULL;
    return db;
}

const kg_config_environment_t *kg_config_environment(const kg_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_environments; i++)
        if (strcmp(cfg->environments[i].name, name) == 0)
            return &cfg->environments[i];
    return NULL;
}
