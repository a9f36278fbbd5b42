/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the model catalog the data plane routes by (SPEC §1, §7a): providers with
 * their parsed base URL and resolved credential, raw models, and agents. It is built once from
 * the config at start and is read-only afterwards, so the request path reads it without locks.
 * Credentials are resolved here (env:NAME, file:/path) and never leave the process.
 */
#ifndef KG_CATALOG_CATALOG_H
#define KG_CATALOG_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum kg_provider_type { KG_PROVIDER_OPENAI, KG_PROVIDER_MOCK } kg_provider_type_t;

typedef struct kg_provider {
    size_t index; /* position in the catalog: per-worker state (pools) is kept by this index */
    char *name;
    kg_provider_type_t type;
    /* the base URL, split: scheme://host:port/path_prefix */
    bool tls;
    char *host;
    uint16_t port;
    char *authority;   /* the Host header value */
    char *path_prefix; /* e.g. "/v1"; no trailing slash */
    char *ca_file;     /* NULL: the system store */
    bool forward_identity;
    /* Bearer credential; NULL when it does not resolve (the provider is then unavailable). */
    char *credential;
    bool available;
} kg_provider_t;

typedef struct kg_prompt_module {
    char *name;
    char *text_json; /* the text, JSON-escaped without quotes */
} kg_prompt_module_t;

typedef struct kg_model {
    char *name;
    char *upstream_model;
    const kg_provider_t *provider;
    double input_price, output_price; /* credits per 1M tokens */
    char *prompt_json;                /* its modules' texts joined, JSON-escaped; NULL if none */
} kg_model_t;

typedef struct kg_agent {
    char *name;
    const kg_model_t *model;
    kg_config_strings_t environments; /* where it is published */
    char *prompt_json;                /* its modules' texts joined, JSON-escaped; NULL if none */
} kg_agent_t;

typedef struct kg_catalog {
    kg_provider_t *providers;
    size_t n_providers;
    kg_model_t *models;
    size_t n_models;
    kg_agent_t *agents;
    size_t n_agents;
    kg_prompt_module_t *prompt_modules;
    size_t n_prompt_modules;
    int64_t created_at; /* reported as the models' `created` */
} kg_catalog_t;

/** Builds the catalog of org `default` from the config. NULL with err filled on a bad base URL. */
kg_catalog_t *kg_catalog_build(const kg_config_t *cfg, char *err, size_t err_cap);
void kg_catalog_free(kg_catalog_t *cat);

/** The raw model named name[0..len) visible to org_id, or NULL. */
const kg_model_t *kg_catalog_model(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len);
/** The agent named name[0..len) visible to org_id, or NULL. */
const kg_agent_t *kg_catalog_agent(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len);
/** The prompt module named `name` visible to org_id, or NULL. */
const kg_prompt_module_t *kg_catalog_prompt_module(const kg_catalog_t *cat, const char *org_id, const char *name);
/** Whether `agent` is published to environment `env`. */
bool kg_agent_published_to(const kg_agent_t *agent, const char *env);

/** Whether org_id sees the config's catalog at all (config objects belong to org `default`). */
bool kg_catalog_org_visible(const char *org_id);

#endif
