/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the CLI verbs around the keys: `init`, `org`, `environment` and
 * `audit`.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "keys/key_hash.h"

static const kg_cli_opt_spec_t no_specs[] = {{NULL, false, false}};

/* Runs a call; on success prints JSON (--json) or hands the reply to `human`. */
static int call_and_print(kg_cli_t *cli, const char *method, const char *path, const char *query, json_t *body,
                          void (*human)(const json_t *))
{
    int status;
    json_t *reply;
    kg_cli_call(cli, method, path, query, body, &status, &reply);
    json_decref(body);
    if (reply == NULL)
        return KG_EXIT_REFUSED;
    int rc = KG_EXIT_OK;
    if (status >= 400)
        rc = kg_cli_refused(reply, status);
    else if (cli->json || human == NULL)
        kg_cli_print_json(reply);
    else
        human(reply);
    json_decref(reply);
    return rc;
}

/* ==== init ==== */

int kg_cmd_init(int argc, char **argv)
{
    kg_cli_opts_t o;
    kg_config_t cfg;
    char err[512], secret[KG_KEY_SECRET_MAX];
    if (!kg_cli_opts_parse(&o, no_specs, argc, argv))
        return KG_EXIT_USAGE;
    if (!kg_config_load(&cfg, kg_cli_opt(&o, "config"), err, sizeof(err))) {
        fprintf(stderr, "keygate: %s\n", err);
        return KG_EXIT_USAGE;
    }
    if (kg_cli_opt(&o, "db") != NULL)
        kg_config_set(&cfg.db, kg_cli_opt(&o, "db"));
    const char *path = kg_config_sqlite_path(&cfg);
    kg_store_t *st = path != NULL ? kg_store_open(path, err, sizeof(err)) : NULL;
    if (st == NULL) {
        fprintf(stderr, "keygate: %s\n", path != NULL ? err : "only SQLite stores are supported so far");
        kg_config_dispose(&cfg);
        return KG_EXIT_REFUSED;
    }
    kg_admin_t admin = {.store = st, .cfg = &cfg};
    kg_err_t rv = kg_admin_bootstrap(&admin, (int64_t)time(NULL), secret);
    int rc = KG_EXIT_OK;
    if (rv != KG_OK) {
        fprintf(stderr, "keygate: cannot initialise %s: %s\n", path, kg_err_message(rv));
        rc = KG_EXIT_REFUSED;
    } else if (secret[0] == '\0') {
        printf("%s is already initialised: org '%s' and its root admin key exist.\n", path, KG_DEFAULT_ORG_NAME);
    } else {
        printf("Initialised %s (org '%s', environments from the config).\n", path, KG_DEFAULT_ORG_NAME);
        printf("root admin key: %s\n", secret);
        printf("This secret is shown only once: store it now (e.g. export KEYGATE_ADMIN_KEY=...).\n");
    }
    kg_secret_wipe(secret, sizeof(secret));
    kg_store_close(st);
    kg_config_dispose(&cfg);
    return rc;
}

/* ==== org ==== */

static void print_org_created(const json_t *o)
{
    const json_t *key = json_object_get(o, "admin_key");
    printf("Created organization %s (%s)\n", json_string_value(json_object_get(o, "name")),
           json_string_value(json_object_get(o, "id")));
    printf("admin key: %s\n", json_string_value(json_object_get(key, "id")));
    printf("secret: %s\n", json_string_value(json_object_get(key, "key")));
    printf("This secret is shown only once: store it now.\n");
}

static void print_orgs(const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *o;
    char created[32];
    kg_cli_table_init(&table, 3);
    kg_cli_table_add(&table, (const char *[]){"ID", "NAME", "CREATED"});
    json_array_foreach (json_object_get(reply, "data"), i, o) {
        const char *row[] = {json_string_value(json_object_get(o, "id")), json_string_value(json_object_get(o, "name")),
                             kg_cli_time(json_object_get(o, "created_at"), "-", created, sizeof(created))};
        kg_cli_table_add(&table, row);
    }
    kg_cli_table_print(&table);
}

int kg_cmd_org(int argc, char **argv)
{
    static const kg_cli_opt_spec_t create_specs[] = {{"name", true, false}, {NULL, false, false}};
    static const kg_cli_opt_spec_t show_specs[] = {{"id", true, false}, {NULL, false, false}};
    kg_cli_opts_t o;
    kg_cli_t cli;
    char path[128];
    int rc;
    const char *verb = argc > 0 ? argv[0] : "";
    bool create = strcmp(verb, "create") == 0, list = strcmp(verb, "list") == 0, show = strcmp(verb, "show") == 0;

    if (!create && !list && !show) {
        fprintf(stderr, "usage: keygate org create --name NAME | list | show --id ID\n");
        return KG_EXIT_USAGE;
    }
    if (!kg_cli_opts_parse(&o, create ? create_specs : show ? show_specs : no_specs, argc - 1, argv + 1))
        return KG_EXIT_USAGE;
    if ((create && kg_cli_opt(&o, "name") == NULL) || (show && kg_cli_opt(&o, "id") == NULL)) {
        fprintf(stderr, "keygate: org %s needs --%s\n", verb, create ? "name" : "id");
        return KG_EXIT_USAGE;
    }
    if (!kg_cli_open(&cli, &o)) {
        return kg_cli_open_failed(&cli);
    }
    if (create) {
        rc = call_and_print(&cli, "POST", "/v1/admin/orgs", NULL, json_pack("{s:s}", "name", kg_cli_opt(&o, "name")),
                            print_org_created);
    } else if (list) {
        rc = call_and_print(&cli, "GET", "/v1/admin/orgs", "limit=100", NULL, print_orgs);
    } else {
        snprintf(path, sizeof(path), "/v1/admin/orgs/%s", kg_cli_opt(&o, "id"));
        rc = call_and_print(&cli, "GET", path, NULL, NULL, NULL);
    }
    kg_cli_close(&cli);
    return rc;
}

/* ==== environment ==== */

static void print_envs(const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *e;
    kg_cli_table_init(&table, 3);
    kg_cli_table_add(&table, (const char *[]){"NAME", "LIVE", "SOURCE"});
    json_array_foreach (json_object_get(reply, "data"), i, e) {
        const char *row[] = {json_string_value(json_object_get(e, "name")),
                             json_is_true(json_object_get(e, "live")) ? "yes" : "no",
                             json_string_value(json_object_get(e, "source"))};
        kg_cli_table_add(&table, row);
    }
    kg_cli_table_print(&table);
}

int kg_cmd_environment(int argc, char **argv)
{
    static const kg_cli_opt_spec_t create_specs[] = {
        {"name", true, false}, {"live", false, false}, {NULL, false, false}};
    static const kg_cli_opt_spec_t name_specs[] = {{"name", true, false}, {NULL, false, false}};
    kg_cli_opts_t o;
    kg_cli_t cli;
    char path[128];
    int rc;
    const char *verb = argc > 0 ? argv[0] : "";
    bool create = strcmp(verb, "create") == 0, list = strcmp(verb, "list") == 0, del = strcmp(verb, "delete") == 0;

    if (!create && !list && !del) {
        fprintf(stderr, "usage: keygate environment create --name NAME [--live] | list | delete --name NAME\n");
        return KG_EXIT_USAGE;
    }
    if (!kg_cli_opts_parse(&o, create ? create_specs : del ? name_specs : no_specs, argc - 1, argv + 1))
        return KG_EXIT_USAGE;
    if (!list && kg_cli_opt(&o, "name") == NULL) {
        fprintf(stderr, "keygate: environment %s needs --name\n", verb);
        return KG_EXIT_USAGE;
    }
    if (!kg_cli_open(&cli, &o)) {
        return kg_cli_open_failed(&cli);
    }
    if (create) {
        rc = call_and_print(
            &cli, "POST", "/v1/admin/environments", NULL,
            json_pack("{s:s, s:b}", "name", kg_cli_opt(&o, "name"), "live", kg_cli_opt(&o, "live") != NULL), NULL);
    } else if (list) {
        rc = call_and_print(&cli, "GET", "/v1/admin/environments", NULL, NULL, print_envs);
    } else {
        snprintf(path, sizeof(path), "/v1/admin/environments/%s", kg_cli_opt(&o, "name"));
        rc = call_and_print(&cli, "DELETE", path, NULL, NULL, NULL);
    }
    kg_cli_close(&cli);
    return rc;
}

/* ==== audit ==== */

static void print_audit(const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *e;
    char when[32];
    kg_cli_table_init(&table, 6);
    kg_cli_table_add(&table, (const char *[]){"TIME", "ACTOR", "ACTION", "OBJECT", "FROM", "CHANGES"});
    json_array_foreach (json_object_get(reply, "data"), i, e) {
        char *changes = json_dumps(json_object_get(e, "changes"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        const char *addr = json_string_value(json_object_get(e, "remote_addr"));
        const char *row[] = {kg_cli_time(json_object_get(e, "created_at"), "-", when, sizeof(when)),
                             json_string_value(json_object_get(e, "actor")),
                             json_string_value(json_object_get(e, "action")),
                             json_string_value(json_object_get(e, "object_id")),
                             addr != NULL ? addr : "-",
                             changes != NULL ? changes : "{}"};
        kg_cli_table_add(&table, row);
        free(changes);
    }
    kg_cli_table_print(&table);
}

int kg_cmd_audit(int argc, char **argv)
{
    static const kg_cli_opt_spec_t specs[] = {
        {"key", true, false}, {"since", true, false}, {"limit", true, false}, {NULL, false, false}};
    kg_cli_opts_t o;
    kg_cli_t cli;
    char query[256];
    size_t at = 0;
    int64_t since = 0;

    if (!kg_cli_opts_parse(&o, specs, argc, argv))
        return KG_EXIT_USAGE;
    if (kg_cli_opt(&o, "since") != NULL && !kg_cli_parse_duration(kg_cli_opt(&o, "since"), &since)) {
        fprintf(stderr, "keygate: --since takes a duration such as 24h or 7d\n");
        return KG_EXIT_USAGE;
    }
    at += (size_t)snprintf(query, sizeof(query), "limit=%s",
                           kg_cli_opt(&o, "limit") != NULL ? kg_cli_opt(&o, "limit") : "100");
    if (kg_cli_opt(&o, "key") != NULL)
        at += (size_t)snprintf(query + at, sizeof(query) - at, "&key=%s", kg_cli_opt(&o, "key"));
    if (since > 0 && at < sizeof(query))
        snprintf(query + at, sizeof(query) - at, "&from=%lld", (long long)((int64_t)time(NULL) - since));
    if (!kg_cli_open(&cli, &o)) {
        return kg_cli_open_failed(&cli);
    }
    int rc = call_and_print(&cli, "GET", "/v1/audit-events", query, NULL, print_audit);
    kg_cli_close(&cli);
    return rc;
}

/* ==== usage ==== */

static void print_usage_series(const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *b;
    char when[32], cells[6][32];
    kg_cli_table_init(&table, 7);
    kg_cli_table_add(&table, (const char *[]){"BUCKET", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "COST", ""});
    json_t *rows = json_array();
    json_array_extend(rows, json_object_get(reply, "data"));
    json_array_append(rows, json_object_get(reply, "totals"));
    json_array_foreach (rows, i, b) {
        bool total = i + 1 == json_array_size(rows);
        snprintf(cells[0], sizeof(cells[0]), "%lld", (long long)json_integer_value(json_object_get(b, "requests")));
        snprintf(cells[1], sizeof(cells[1]), "%lld", (long long)json_integer_value(json_object_get(b, "errors")));
        snprintf(cells[2], sizeof(cells[2]), "%lld", (long long)json_integer_value(json_object_get(b, "input_tokens")));
        snprintf(cells[3], sizeof(cells[3]), "%lld",
                 (long long)json_integer_value(json_object_get(b, "output_tokens")));
        snprintf(cells[4], sizeof(cells[4]), "%.6f", json_real_value(json_object_get(b, "cost")));
        const char *row[] = {total ? "TOTAL" : kg_cli_time(json_object_get(b, "start_time"), "-", when, sizeof(when)),
                             cells[0],
                             cells[1],
                             cells[2],
                             cells[3],
                             cells[4],
                             ""};
        kg_cli_table_add(&table, row);
    }
    json_decref(rows);
    kg_cli_table_print(&table);
}

int kg_cmd_usage(int argc, char **argv)
{
    static const kg_cli_opt_spec_t specs[] = {{"key", true, false},
                                              {"team", true, false},
                                              {"since", true, false},
                                              {"bucket", true, false},
                                              {NULL, false, false}};
    kg_cli_opts_t o;
    kg_cli_t cli;
    char query[256];
    int64_t since = 86400;

    if (!kg_cli_opts_parse(&o, specs, argc, argv))
        return KG_EXIT_USAGE;
    if (kg_cli_opt(&o, "since") != NULL && !kg_cli_parse_duration(kg_cli_opt(&o, "since"), &since)) {
        fprintf(stderr, "keygate: --since takes a duration such as 24h or 7d\n");
        return KG_EXIT_USAGE;
    }
    size_t at = (size_t)snprintf(query, sizeof(query), "from=%lld&bucket=%s", (long long)((int64_t)time(NULL) - since),
                                 kg_cli_opt(&o, "bucket") != NULL ? kg_cli_opt(&o, "bucket") : "hour");
    if (kg_cli_opt(&o, "key") != NULL && at < sizeof(query))
        at += (size_t)snprintf(query + at, sizeof(query) - at, "&key=%s", kg_cli_opt(&o, "key"));
    if (kg_cli_opt(&o, "team") != NULL && at < sizeof(query))
        snprintf(query + at, sizeof(query) - at, "&team=%s", kg_cli_opt(&o, "team"));
    if (!kg_cli_open(&cli, &o))
        return kg_cli_open_failed(&cli);
    int rc = call_and_print(&cli, "GET", "/v1/usage", query, NULL, print_usage_series);
    kg_cli_close(&cli);
    return rc;
}
