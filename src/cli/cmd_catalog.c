/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements `keygate provider|model|agent|prompt-module|team <verb>`: the catalog routes
 * of the admin API (/v1/admin/...), with one table per noun that maps flags to members.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef enum field_kind { F_STRING, F_NUMBER, F_INT, F_BOOL, F_LIST } field_kind_t;

#define MAX_FIELDS 10

typedef struct field {
    const char *flag;   /* --flag */
    const char *member; /* JSON member; "a.b" sets member b of object a */
    field_kind_t kind;
} field_t;

typedef struct noun {
    const char *name;
    const char *route;
    const field_t fields[MAX_FIELDS];
    const char *columns[3]; /* members shown by list, after the name */
} noun_t;

static const noun_t nouns[] = {
    {"provider",
     "/v1/admin/providers",
     {{"base-url", "base_url", F_STRING},
      {"credential", "credential", F_STRING},
      {"forward-identity", "forward_identity", F_BOOL}},
     {"base_url", "credential", NULL}},
    {"model",
     "/v1/admin/models",
     {{"provider", "provider", F_STRING},
      {"upstream-model", "upstream_model", F_STRING},
      {"input", "input", F_NUMBER},
      {"output", "output", F_NUMBER},
      {"prompt-module", "prompt_modules", F_LIST}},
     {"provider", "upstream_model", NULL}},
    {"agent",
     "/v1/admin/agents",
     {{"model", "model", F_STRING}, {"prompt-module", "prompt_modules", F_LIST}, {"env", "environments", F_LIST}},
     {"model", "environments", NULL}},
    {"prompt-module", "/v1/admin/prompt-modules", {{"text", "text", F_STRING}}, {"text", NULL, NULL}},
    {"team",
     "/v1/admin/teams",
     {{"tier", "tier", F_STRING},
      {"description", "description", F_STRING},
      {"model", "models", F_LIST},
      {"rpm", "rate_limits.rpm", F_INT},
      {"tpm", "rate_limits.tpm", F_INT},
      {"rpd", "rate_limits.rpd", F_INT},
      {"max-concurrency", "rate_limits.max_concurrency", F_INT},
      {"budget", "budget.limit_credits", F_NUMBER},
      {"period", "budget.period", F_STRING}},
     {"tier", "description", NULL}},
};

static int usage(const noun_t *n)
{
    fprintf(stderr, "usage: keygate %s create --name NAME", n->name);
    for (size_t i = 0; i < MAX_FIELDS && n->fields[i].flag != NULL; i++)
        fprintf(stderr, " [--%s%s]%s", n->fields[i].flag, n->fields[i].kind == F_BOOL ? "" : " V",
                n->fields[i].kind == F_LIST ? "..." : "");
    fprintf(stderr, "\n       keygate %s list | show --name NAME | update --name NAME ... | delete --name NAME\n",
            n->name);
    return KG_EXIT_USAGE;
}

/* Builds the body from the noun's flags; NULL after printing a usage error. */
static json_t *body_from(const noun_t *n, const kg_cli_opts_t *o, bool with_name)
{
    json_t *body = json_object();
    if (with_name)
        json_object_set_new(body, "name", json_string(kg_cli_opt(o, "name")));
    for (size_t i = 0; i < MAX_FIELDS && n->fields[i].flag != NULL; i++) {
        const field_t *f = &n->fields[i];
        const char *v = kg_cli_opt(o, f->flag), *many[KG_CLI_MAX_VALUES];
        if (v == NULL)
            continue;
        /* A dotted member goes into a nested object (rate_limits.rpm, budget.period). */
        json_t *into = body;
        const char *member = f->member, *dot = strchr(member, '.');
        if (dot != NULL) {
            char outer[32];
            snprintf(outer, sizeof(outer), "%.*s", (int)(dot - member), member);
            if ((into = json_object_get(body, outer)) == NULL)
                json_object_set_new(body, outer, into = json_object());
            member = dot + 1;
        }
        if (f->kind == F_STRING) {
            json_object_set_new(into, member, json_string(v));
        } else if (f->kind == F_BOOL) {
            json_object_set_new(into, member, json_true());
        } else if (f->kind == F_NUMBER || f->kind == F_INT) {
            char *end;
            double d = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || (f->kind == F_INT && (d != (double)(long long)d || d < 1))) {
                fprintf(stderr, "keygate: --%s takes a %s\n", f->flag,
                        f->kind == F_INT ? "positive integer" : "number");
                json_decref(body);
                return NULL;
            }
            json_object_set_new(into, member, f->kind == F_INT ? json_integer((json_int_t)d) : json_real(d));
        } else {
            size_t count = kg_cli_opt_all(o, f->flag, many, KG_CLI_MAX_VALUES);
            json_t *a = json_array();
            for (size_t k = 0; k < count; k++)
                json_array_append_new(a, json_string(many[k]));
            json_object_set_new(into, member, a);
        }
    }
    return body;
}

static char *cell(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (v == NULL || json_is_null(v))
        return strdup("-");
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s != NULL ? s : strdup("?");
}

static void print_list(const noun_t *n, const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *o;
    kg_cli_table_init(&table, 4);
    char upper[3][32];
    const char *head[4] = {"NAME", "", "", "SOURCE"};
    for (int c = 0; c < 2; c++) {
        snprintf(upper[c], sizeof(upper[c]), "%s", n->columns[c] != NULL ? n->columns[c] : "");
        for (char *p = upper[c]; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        head[1 + c] = upper[c];
    }
    kg_cli_table_add(&table, head);
    json_array_foreach (json_object_get(reply, "data"), i, o) {
        char *a = cell(n->columns[0] != NULL ? json_object_get(o, n->columns[0]) : NULL);
        char *b = cell(n->columns[1] != NULL ? json_object_get(o, n->columns[1]) : NULL);
        if (strlen(a) > 60)
            memcpy(a + 57, "...", 4);
        const char *row[4] = {json_string_value(json_object_get(o, "name")), a, b,
                              json_string_value(json_object_get(o, "source"))};
        kg_cli_table_add(&table, row);
        free(a), free(b);
    }
    kg_cli_table_print(&table);
}

int kg_cmd_catalog(const char *noun_name, int argc, char **argv)
{
    const noun_t *n = NULL;
    kg_cli_opt_spec_t specs[MAX_FIELDS + 2];
    size_t n_specs = 0;
    kg_cli_opts_t o;
    kg_cli_t cli;
    char path[1024];

    for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++)
        if (strcmp(nouns[i].name, noun_name) == 0)
            n = &nouns[i];
    if (n == NULL || argc < 1)
        return usage(n != NULL ? n : &nouns[0]);
    const char *verb = argv[0];
    bool create = strcmp(verb, "create") == 0, update = strcmp(verb, "update") == 0;
    bool list = strcmp(verb, "list") == 0, show = strcmp(verb, "show") == 0, del = strcmp(verb, "delete") == 0;
    if (!create && !update && !list && !show && !del)
        return usage(n);
    if (!list)
        specs[n_specs++] = (kg_cli_opt_spec_t){"name", true, false};
    for (size_t i = 0; (create || update) && i < MAX_FIELDS && n->fields[i].flag != NULL; i++)
        specs[n_specs++] =
            (kg_cli_opt_spec_t){n->fields[i].flag, n->fields[i].kind != F_BOOL, n->fields[i].kind == F_LIST};
    specs[n_specs] = (kg_cli_opt_spec_t){NULL, false, false};
    if (!kg_cli_opts_parse(&o, specs, argc - 1, argv + 1))
        return KG_EXIT_USAGE;
    const char *name = kg_cli_opt(&o, "name");
    if (!list && (name == NULL || name[0] == '\0')) {
        fprintf(stderr, "keygate: %s %s needs --name\n", n->name, verb);
        return KG_EXIT_USAGE;
    }
    json_t *body = create || update ? body_from(n, &o, create) : NULL;
    if ((create || update) && body == NULL)
        return KG_EXIT_USAGE;
    if (!kg_cli_open(&cli, &o)) {
        json_decref(body);
        return kg_cli_open_failed(&cli);
    }
    /* A name is one path segment: encode what would split or confuse it ('/' in "org/model"). */
    char enc[512];
    size_t at = 0;
    for (const char *p = list || create ? "" : name; *p != '\0' && at + 4 < sizeof(enc); p++) {
        if (*p == '/' || *p == '%' || *p == '?' || *p == '#' || *p == ' ')
            at += (size_t)snprintf(enc + at, sizeof(enc) - at, "%%%02X", (unsigned char)*p);
        else
            enc[at++] = *p;
    }
    enc[at] = '\0';
    snprintf(path, sizeof(path), "%s%s%s", n->route, list || create ? "" : "/", enc);
    int status;
    json_t *reply;
    kg_cli_call(&cli, create ? "POST" : update ? "PATCH" : del ? "DELETE" : "GET", path, NULL, body, &status, &reply);
    json_decref(body);
    int rc = KG_EXIT_OK;
    if (reply == NULL)
        rc = KG_EXIT_REFUSED;
    else if (status >= 400)
        rc = kg_cli_refused(reply, status);
    else if (cli.json || show || create || update)
        kg_cli_print_json(reply);
    else if (list)
        print_list(n, reply);
    else
        printf("%s %s deleted\n", n->name, name);
    json_decref(reply);
    kg_cli_close(&cli);
    return rc;
}
