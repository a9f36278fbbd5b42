/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the catalog of catalog.h: base URLs are parsed once, credentials are
 * resolved once (an unset variable or unreadable file makes its provider unavailable, which
 * its models then answer with 503 provider_unavailable).
 */
#include "catalog/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/alloc.h"
#include "keys/key_policy.h"
#include "keys/token.h"

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
static char *resolve_credential(const char *ref)
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

/* Splits http(s)://host[:port][/path] into the provider's fields. */
static bool parse_base_url(kg_provider_t *p, const char *url, char *err, size_t err_cap)
{
    const char *rest;
    if (strncmp(url, "https://", 8) == 0)
        p->tls = true, rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        p->tls = false, rest = url + 7;
    else
        goto bad;
    const char *slash = strchr(rest, '/');
    size_t auth_len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    if (auth_len == 0)
        goto bad;
    p->authority = kg_xstrndup(rest, auth_len);
    const char *colon = NULL;
    if (p->authority[0] == '[') { /* [v6]:port */
        const char *close = strchr(p->authority, ']');
        if (close == NULL)
            goto bad;
        p->host = kg_xstrndup(p->authority + 1, (size_t)(close - p->authority - 1));
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(p->authority, ':');
        p->host = kg_xstrndup(p->authority, colon != NULL ? (size_t)(colon - p->authority) : auth_len);
    }
    p->port = p->tls ? 443 : 80;
    if (colon != NULL) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end != '\0' || port < 1 || port > 65535)
            goto bad;
        p->port = (uint16_t)port;
    }
    const char *path = slash != NULL ? slash : "";
    size_t path_len = strlen(path);
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    p->path_prefix = kg_xstrndup(path, path_len);
    return true;
bad:
    snprintf(err, err_cap, "providers.%s: base_url '%s' must be http(s)://host[:port][/path]", p->name, url);
    return false;
}

/* Joins the named modules' escaped texts with an escaped blank line; NULL when there are none. */
static char *join_modules(const kg_catalog_t *cat, const kg_config_strings_t *names)
{
    size_t len = 0;
    for (size_t i = 0; i < names->n; i++) {
        const kg_prompt_module_t *m = kg_catalog_prompt_module(cat, KG_DEFAULT_ORG_ID, names->items[i]);
        if (m != NULL)
            len += strlen(m->text_json) + 4;
    }
    if (len == 0)
        return NULL;
    char *out = kg_xcalloc(1, len + 1);
    size_t at = 0;
    for (size_t i = 0; i < names->n; i++) {
        const kg_prompt_module_t *m = kg_catalog_prompt_module(cat, KG_DEFAULT_ORG_ID, names->items[i]);
        if (m == NULL)
            continue;
        if (at > 0)
            memcpy(out + at, "\\n\\n", 4), at += 4; /* an escaped blank line between modules */
        memcpy(out + at, m->text_json, strlen(m->text_json)), at += strlen(m->text_json);
    }
    out[at] = '\0';
    return out;
}

kg_catalog_t *kg_catalog_build(const kg_config_t *cfg, char *err, size_t err_cap)
{
    kg_catalog_t *cat = kg_xcalloc(1, sizeof(*cat));
    cat->created_at = (int64_t)time(NULL);
    cat->prompt_modules = kg_xcalloc(cfg->n_prompt_modules, sizeof(*cat->prompt_modules));
    for (size_t i = 0; i < cfg->n_prompt_modules; i++) {
        kg_prompt_module_t *m = &cat->prompt_modules[cat->n_prompt_modules++];
        m->name = kg_xstrdup(cfg->prompt_modules[i].name);
        m->text_json = kg_json_escape_dup(cfg->prompt_modules[i].text);
        if (m->text_json == NULL)
            m->text_json = kg_xstrdup("");
    }
    cat->providers = kg_xcalloc(cfg->n_providers, sizeof(*cat->providers));
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const kg_config_provider_t *src = &cfg->providers[i];
        kg_provider_t *p = &cat->providers[cat->n_providers++];
        p->index = i;
        p->name = kg_xstrdup(src->name);
        p->forward_identity = src->forward_identity;
        p->ca_file = src->ca_file != NULL ? kg_xstrdup(src->ca_file) : NULL;
        if (strcmp(src->type, "mock") == 0) {
            p->type = KG_PROVIDER_MOCK;
            p->available = true;
            continue;
        }
        p->type = KG_PROVIDER_OPENAI;
        if (!parse_base_url(p, src->base_url, err, err_cap)) {
            kg_catalog_free(cat);
            return NULL;
        }
        if (src->credential != NULL) {
            for (size_t j = 0; j < cfg->n_credentials; j++)
                if (strcmp(cfg->credentials[j].name, src->credential) == 0)
                    p->credential = resolve_credential(cfg->credentials[j].ref);
            p->available = p->credential != NULL;
        } else {
            p->available = true; /* a self-hosted upstream without authentication */
        }
    }
    cat->models = kg_xcalloc(cfg->n_models, sizeof(*cat->models));
    for (size_t i = 0; i < cfg->n_models; i++) {
        const kg_config_model_t *src = &cfg->models[i];
        kg_model_t *m = &cat->models[cat->n_models++];
        m->name = kg_xstrdup(src->name);
        m->upstream_model = kg_xstrdup(src->upstream_model != NULL ? src->upstream_model : src->name);
        m->input_price = src->input_price;
        m->output_price = src->output_price;
        for (size_t j = 0; j < cat->n_providers; j++)
            if (strcmp(cat->providers[j].name, src->provider) == 0)
                m->provider = &cat->providers[j];
        m->prompt_json = join_modules(cat, &src->prompt_modules);
    }
    cat->agents = kg_xcalloc(cfg->n_agents, sizeof(*cat->agents));
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const kg_config_agent_t *src = &cfg->agents[i];
        kg_agent_t *a = &cat->agents[cat->n_agents++];
        a->name = kg_xstrdup(src->name);
        a->model = kg_catalog_model(cat, KG_DEFAULT_ORG_ID, src->model, strlen(src->model));
        a->environments.items = kg_xcalloc(src->environments.n, sizeof(char *));
        for (size_t k = 0; k < src->environments.n; k++)
            a->environments.items[a->environments.n++] = kg_xstrdup(src->environments.items[k]);
        a->prompt_json = join_modules(cat, &src->prompt_modules);
    }
    return cat;
}

void kg_catalog_free(kg_catalog_t *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->n_providers; i++) {
        kg_provider_t *p = &cat->providers[i];
        if (p->credential != NULL)
            OPENSSL_cleanse(p->credential, strlen(p->credential));
        free(p->name), free(p->host), free(p->authority), free(p->path_prefix), free(p->ca_file), free(p->credential);
    }
    for (size_t i = 0; i < cat->n_models; i++)
        free(cat->models[i].name), free(cat->models[i].upstream_model), free(cat->models[i].prompt_json);
    for (size_t i = 0; i < cat->n_prompt_modules; i++)
        free(cat->prompt_modules[i].name), free(cat->prompt_modules[i].text_json);
    free(cat->prompt_modules);
    for (size_t i = 0; i < cat->n_agents; i++) {
        free(cat->agents[i].name), free(cat->agents[i].prompt_json);
        for (size_t k = 0; k < cat->agents[i].environments.n; k++)
            free(cat->agents[i].environments.items[k]);
        free(cat->agents[i].environments.items);
    }
    free(cat->providers), free(cat->models), free(cat->agents), free(cat);
}

bool kg_catalog_org_visible(const char *org_id)
{
#ifdef KG_BREAK_RULE_ORG
    (void)org_id;
    return true;
#else
    return strcmp(org_id, KG_DEFAULT_ORG_ID) == 0;
#endif
}

static bool name_is(const char *name, const char *s, size_t len)
{
    return strlen(name) == len && memcmp(name, s, len) == 0;
}

const kg_model_t *kg_catalog_model(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len)
{
    if (!kg_catalog_org_visible(org_id))
        return NULL;
    for (size_t i = 0; i < cat->n_models; i++)
        if (name_is(cat->models[i].name, name, len))
            return &cat->models[i];
    return NULL;
}

const kg_agent_t *kg_catalog_agent(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len)
{
    if (!kg_catalog_org_visible(org_id))
        return NULL;
    for (size_t i = 0; i < cat->n_agents; i++)
        if (name_is(cat->agents[i].name, name, len))
            return &cat->agents[i];
    return NULL;
}

const kg_prompt_module_t *kg_catalog_prompt_module(const kg_catalog_t *cat, const char *org_id, const char *name)
{
    if (!kg_catalog_org_visible(org_id))
        return NULL;
    for (size_t i = 0; i < cat->n_prompt_modules; i++)
        if (strcmp(cat->prompt_modules[i].name, name) == 0)
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
