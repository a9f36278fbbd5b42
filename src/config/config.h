/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the configuration of SPEC §7a: the YAML file (libyaml), the KEYGATE_*
 * environment variables and the defaults, merged in that order of precedence (flags, applied
 * by the caller afterwards, win over all).
 */
#ifndef KG_CONFIG_CONFIG_H
#define KG_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kg_config_environment {
    char *name;
    bool live;
} kg_config_environment_t;

typedef struct kg_config_strings {
    char **items;
    size_t n;
} kg_config_strings_t;

typedef struct kg_config_credential {
    char *name;
    char *ref;                /* "env:NAME" or "file:/path": resolved server-side, never printed */
    kg_config_strings_t orgs; /* org names whose API-made providers may use it; empty: `default` */
} kg_config_credential_t;

typedef struct kg_config_provider {
    char *name;
    char *type; /* "openai" (default) or "mock" */
    char *base_url;
    char *credential;
    char *ca_file;
    bool forward_identity;
    bool no_stream_usage; /* stream_usage: false (the upstream refuses stream_options) */
} kg_config_provider_t;

typedef struct kg_config_model {
    char *name;
    char *provider;
    char *upstream_model; /* the provider's name for it; defaults to name */
    double input_price;   /* credits per 1M tokens */
    double output_price;
    kg_config_strings_t prompt_modules;
} kg_config_model_t;

typedef struct kg_config_prompt_module {
    char *name;
    char *text;
} kg_config_prompt_module_t;

typedef struct kg_config_agent {
    char *name;
    char *model;
    kg_config_strings_t prompt_modules;
    kg_config_strings_t environments;
} kg_config_agent_t;

typedef struct kg_config {
    char *path; /* the file read, or NULL */
    char *listen;
    char *metrics_listen;
    char *db; /* as given: "sqlite://./keygate.db", a plain path, or (later) "postgres://..." */
    char *redis;
    int workers;                  /* 0: one per core */
    bool allow_private_upstreams; /* API-made providers may target loopback/private addresses */
    char *brand;
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int64_t upstream_timeout_ms;
    int64_t request_timeout_ms; /* a client must send a whole request within this (else 408) */
    int64_t default_max_tokens; /* completion tokens reserved when a request names no max_tokens */
    int64_t drain_ms;           /* on SIGTERM, how long requests in flight may still run */
    kg_config_environment_t *environments;
    size_t n_environments;
    kg_config_credential_t *credentials;
    size_t n_credentials;
    kg_config_provider_t *providers;
    size_t n_providers;
    kg_config_model_t *models;
    size_t n_models;
    kg_config_prompt_module_t *prompt_modules;
    size_t n_prompt_modules;
    kg_config_agent_t *agents;
    size_t n_agents;
} kg_config_t;

/**
 * Loads `path` (NULL: KEYGATE_CONFIG, else ./keygate.yaml if it exists, else defaults only),
 * then applies KEYGATE_* variables. On failure returns false and writes a message naming the
 * file, line and field into err.
 */
bool kg_config_load(kg_config_t *cfg, const char *path, char *err, size_t err_cap);

/** Parses YAML text (no environment applied); used by kg_config_load and the tests. */
bool kg_config_parse(kg_config_t *cfg, const char *text, size_t len, const char *origin, char *err, size_t err_cap);

/** Fills defaults: listen 127.0.0.1:8080, db ./keygate.db, brand kg, production live, ... */
void kg_config_init(kg_config_t *cfg);
void kg_config_dispose(kg_config_t *cfg);

/** Replaces a string member (copying value). */
void kg_config_set(char **member, const char *value);

/** The SQLite path named by cfg->db, or NULL if it names another backend. */
const char *kg_config_sqlite_path(const kg_config_t *cfg);

/** Whether the config grants credential `name` to org `org_name` (API-made providers, SPEC §6). */
bool kg_config_credential_granted(const kg_config_t *cfg, const char *name, const char *org_name);

/** The environment named `name`, or NULL. */
const kg_config_environment_t *kg_config_environment(const kg_config_t *cfg, const char *name);

#endif
