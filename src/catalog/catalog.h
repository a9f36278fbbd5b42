/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the model catalog the data plane routes by (SPEC §1, §7a): per org,
 * providers with their parsed base URL and resolved credential, raw models, agents and prompt
 * modules. A catalog is an immutable snapshot built from the store's catalog rows (the config
 * file's objects are synced there as org `default`'s, source "config"); a running gateway
 * publishes a new snapshot under RCU whenever the change feed reports a catalog change, so the
 * request path reads it without locks. Credentials are resolved here (env:NAME, file:/path)
 * and never leave the process.
 */
#ifndef KG_CATALOG_CATALOG_H
#define KG_CATALOG_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "keys/key_policy.h"
#include "limits/limits.h"
#include "store/store.h"

typedef enum kg_provider_type { KG_PROVIDER_OPENAI, KG_PROVIDER_MOCK } kg_provider_type_t;

typedef struct kg_provider {
    char *org_id;
    char *name;
    kg_provider_type_t type;
    /* the base URL, split: scheme://host:port/path_prefix */
    bool tls;
    char *host;
    uint16_t port;
    char *authority;   /* the Host header value */
    char *path_prefix; /* e.g. "/v1"; no trailing slash */
    char *ca_file;     /* NULL: the system store (API-made providers never name one) */
    char *endpoint;    /* "tls|host|port|ca_file": the key of upstream socket pools */
    char *tls_key;     /* "host|ca_file": the key of TLS contexts (https only) */
    bool forward_identity;
    bool stream_usage; /* streamed calls ask for usage (stream_options.include_usage); SPEC §4 */
    /* Bearer credential; NULL when it does not resolve (the provider is then unavailable). */
    char *credential;
    bool available;
} kg_provider_t;

typedef struct kg_prompt_module {
    char *org_id;
    char *name;
    char *text_json; /* the text, JSON-escaped without quotes */
} kg_prompt_module_t;

typedef struct kg_model {
    char *org_id;
    char *name;
    char *upstream_model;
    const kg_provider_t *provider;
    double input_price, output_price;  /* credits per 1M tokens */
    int64_t input_micro, output_micro; /* the same in micro-credits per 1M tokens (exact integer cost) */
    char *prompt_json;                 /* its modules' texts joined, JSON-escaped; NULL if none */
} kg_model_t;

typedef struct kg_agent {
    char *org_id;
    char *name;
    const kg_model_t *model;
    kg_config_strings_t environments; /* where it is published */
    char *prompt_json;                /* its modules' texts joined, JSON-escaped; NULL if none */
} kg_agent_t;

/* A team (SPEC §1): its tier's limits, the models its keys may reach, its credit pool. */
typedef struct kg_team {
    char *org_id;
    char *name;
    char *tier;
    kg_rate_limits_t limits; /* the tier's preset, or a custom tier's own */
    kg_allow_list_t models;  /* `models`: absent is all */
    kg_budget_t budget;
    kg_limit_state_t *state; /* shared by all its keys; outlives catalog rebuilds */
} kg_team_t;

typedef struct kg_catalog {
    kg_provider_t *providers;
    size_t n_providers;
    kg_model_t *models;
    size_t n_models;
    kg_agent_t *agents;
    size_t n_agents;
    kg_prompt_module_t *prompt_modules;
    size_t n_prompt_modules;
    kg_team_t *teams;
    size_t n_teams;
    int64_t created_at; /* reported as the models' `created` */
} kg_catalog_t;

/** A provider base URL, split (http(s)://host[:port][/path]; no userinfo, query or control chars). */
typedef struct kg_base_url {
    bool tls;
    char host[256];
    uint16_t port;
    size_t authority_len;
    const char *path; /* borrowed: into the parsed string */
} kg_base_url_t;

/** The one parser of provider base URLs (the admin API and the catalog agree on what is valid). */
bool kg_base_url_parse(const char *url, kg_base_url_t *out);

/** The config file's catalog as store rows of org `default`, source "config" (caller frees). */
void kg_catalog_config_rows(const kg_config_t *cfg, kg_catalog_row_t **rows, size_t *n);

/**
 * Builds a catalog from store rows; `cfg` resolves credentials. Rows that do not hold together
 * (a model whose provider is gone, an unparsable URL) are left out and logged. Never NULL.
 */
kg_catalog_t *kg_catalog_build_rows(const kg_config_t *cfg, const kg_catalog_row_t *rows, size_t n);
/** Builds from the config file alone (tests, tools). */
kg_catalog_t *kg_catalog_build(const kg_config_t *cfg, char *err, size_t err_cap);
/** Builds from every catalog row in the store. NULL if the store cannot be read. */
kg_catalog_t *kg_catalog_load(kg_store_t *st, const kg_config_t *cfg);
void kg_catalog_free(kg_catalog_t *cat);

/* ==== The published snapshot (RCU) ==== */

/** Publishes `cat` as the current catalog; the previous one is freed after a grace period. */
void kg_catalog_publish(kg_catalog_t *cat);
/** The current catalog: call inside kg_key_index_read_lock(); valid until the unlock. */
const kg_catalog_t *kg_catalog_current(void);
/** Frees the current catalog at exit (no reader may be running). */
void kg_catalog_retire_all(void);

/** The raw model named name[0..len) of org_id, or NULL. */
const kg_model_t *kg_catalog_model(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len);
/** The agent named name[0..len) of org_id, or NULL. */
const kg_agent_t *kg_catalog_agent(const kg_catalog_t *cat, const char *org_id, const char *name, size_t len);
/** The prompt module named `name` of org_id, or NULL. */
const kg_prompt_module_t *kg_catalog_prompt_module(const kg_catalog_t *cat, const char *org_id, const char *name);
/** The team named `name` of org_id, or NULL. */
const kg_team_t *kg_catalog_team(const kg_catalog_t *cat, const char *org_id, const char *name);
/**
 * The counters of team (org_id, name), made on first use; they live until kg_catalog_retire_all,
 * so a team keeps its counters across catalog rebuilds (writer side: takes a lock).
 */
kg_limit_state_t *kg_team_state(const char *org_id, const char *name);
/** Whether `agent` is published to environment `env`. */
bool kg_agent_published_to(const kg_agent_t *agent, const char *env);
/** Whether an object of org `owner` is visible to org `org_id`. */
bool kg_catalog_same_org(const char *owner, const char *org_id);

#endif
