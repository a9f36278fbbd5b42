/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns what every CLI verb shares: option parsing, the choice between a running
 * gateway (--url / KEYGATE_URL, through its admin API) and the local store (the same admin
 * code, run in-process as actor "cli:local"), and table/JSON output. Exit codes follow SPEC §7:
 * 0 success, 1 refused by the API, 2 usage error.
 */
#ifndef KG_CLI_CLI_H
#define KG_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/admin.h"
#include "config/config.h"

#define KG_EXIT_OK 0
#define KG_EXIT_REFUSED 1
#define KG_EXIT_USAGE 2

/* ==== Options ==== */

typedef struct kg_cli_opt_spec {
    const char *name; /* without the leading "--" */
    bool has_arg;
    bool repeatable;
} kg_cli_opt_spec_t;

#define KG_CLI_MAX_VALUES 64

typedef struct kg_cli_opts {
    const kg_cli_opt_spec_t *specs; /* NULL-name terminated */
    const char *values[KG_CLI_MAX_VALUES];
    const char *names[KG_CLI_MAX_VALUES];
    size_t n;
} kg_cli_opts_t;

/**
 * Parses argv (after the verb) against `specs` plus the global options (--config, --db, --url,
 * --org, --json, --help). Prints a usage error and returns false on an unknown option, a
 * missing value or a repeated non-repeatable option.
 */
bool kg_cli_opts_parse(kg_cli_opts_t *o, const kg_cli_opt_spec_t *specs, int argc, char **argv);
/** Last value of an option (or "" for a flag), NULL when absent. */
const char *kg_cli_opt(const kg_cli_opts_t *o, const char *name);
/** Every value of a repeatable option, in order; returns the count. */
size_t kg_cli_opt_all(const kg_cli_opts_t *o, const char *name, const char **out, size_t cap);

/** Parses "90s", "15m", "1h", "30d", "1h30m" into seconds; false on anything else. */
bool kg_cli_parse_duration(const char *s, int64_t *seconds);
/** Parses --expires: a duration from now, unix seconds, or "YYYY-MM-DDTHH:MM:SSZ". */
bool kg_cli_parse_expiry(const char *s, int64_t now, int64_t *at);

/* ==== Calls ==== */

typedef struct kg_cli {
    kg_cli_opts_t *opts;
    bool json;
    /* remote */
    const char *url;
    const char *admin_key;
    /* local */
    kg_config_t cfg;
    bool cfg_loaded;
    kg_store_t *store;
    kg_actor_t actor;
    bool refused; /* kg_cli_open failed for a reason other than usage (exit 1, not 2) */
} kg_cli_t;

/** Prepares the context from the options and environment; false (after printing why) on failure.
 *  Then call kg_cli_open_failed(). */
bool kg_cli_open(kg_cli_t *cli, kg_cli_opts_t *opts);
/** Closes a context whose kg_cli_open failed and returns the exit status: 1 refused, 2 usage. */
int kg_cli_open_failed(kg_cli_t *cli);
void kg_cli_close(kg_cli_t *cli);

/**
 * Runs one admin call locally or remotely. `body` is borrowed (NULL: no body). On return
 * *status is the HTTP status and *out the parsed JSON reply (caller decrefs), or NULL when the
 * gateway could not be reached (a message has been printed).
 */
void kg_cli_call(kg_cli_t *cli, const char *method, const char *path, const char *query, json_t *body, int *status,
                 json_t **out);

/** Prints an API error reply to stderr as "keygate: message" and returns KG_EXIT_REFUSED. */
int kg_cli_refused(const json_t *reply, int status);

/** Remote transport (cli_remote.c): performs one HTTP request. */
bool kg_cli_http(const char *url, const char *admin_key, const char *method, const char *path, const char *query,
                 const char *body, int *status, char **reply, char *err, size_t err_cap);

/* ==== Output ==== */

/** Formats unix seconds as "YYYY-MM-DD HH:MM" UTC (or `none` for 0/null). */
const char *kg_cli_time(json_t *v, const char *none, char *buf, size_t cap);
/** Prints a JSON value indented, followed by a newline. */
void kg_cli_print_json(const json_t *v);

typedef struct kg_cli_table {
    const char **cells; /* rows * cols, owned */
    size_t cols, rows, cap;
} kg_cli_table_t;

void kg_cli_table_init(kg_cli_table_t *t, size_t cols);
void kg_cli_table_add(kg_cli_table_t *t, const char *const *row); /* copies */
void kg_cli_table_print(kg_cli_table_t *t);                       /* and disposes */

/* ==== Verbs ==== */

int kg_cmd_keys(const char *noun, int argc, char **argv);
int kg_cmd_org(int argc, char **argv);
int kg_cmd_environment(int argc, char **argv);
int kg_cmd_audit(int argc, char **argv);
int kg_cmd_usage(int argc, char **argv);
int kg_cmd_init(int argc, char **argv);
int kg_cmd_explain(int argc, char **argv);
int kg_cmd_catalog(const char *noun, int argc, char **argv);
int kg_serve_main(int argc, char **argv);

#endif
