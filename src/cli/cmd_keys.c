/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements `keygate access-key|gateway-key|admin-key <verb>`: each verb builds the
 * admin API call of SPEC §6 and prints its answer as a table, a detail view or JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

typedef struct noun {
    const char *name;
    const char *type; /* token_type */
    const char *base; /* route */
    bool legacy;      /* /v1/gateway-keys */
} noun_t;

static const noun_t nouns[] = {
    {"access-key", "access", "/v1/tokens", false},
    {"gateway-key", "gateway", "/v1/gateway-keys", true},
    {"admin-key", "admin", "/v1/tokens", false},
};

/* Presets (SPEC §4) with the clients each suits; the API fills the scopes from the same names. */
static const char *const preset_rows[][3] = {
    {"openai-chat", "inference:chat", "OpenAI SDK, curl, LiteLLM, Open WebUI, LibreChat"},
    {"chat-embeddings", "inference:chat inference:embed", "LangChain, LlamaIndex, Dify, Semantic Kernel"},
    {"ide-agent", "inference:chat inference:embed", "Continue, Cursor, Cline, Aider"},
    {"voice", "inference:chat inference:transcribe inference:speech", "voice assistants"},
    {"image", "inference:image", "image generation apps"},
    {"dataset-upload", "datasets:write (purpose upload)", "ingestion jobs"},
    {"conversation-app", "conversations:write (purpose conversation)", "chat apps with server-side history"},
};

static const kg_cli_opt_spec_t create_specs[] = {
    {"name", true, false},    {"description", true, false}, {"preset", true, false}, {"purpose", true, false},
    {"scope", true, true},    {"model", true, true},        {"agent", true, true},   {"env", true, false},
    {"expires", true, false}, {"rpm", true, false},         {"tpm", true, false},    {"domain", true, true},
    {"team", true, false},    {"metadata", true, false},    {NULL, false, false},
};
static const kg_cli_opt_spec_t update_specs[] = {
    {"id", true, false},   {"name", true, false},  {"description", true, false}, {"scope", true, true},
    {"model", true, true}, {"agent", true, true},  {"expires", true, false},     {"rpm", true, false},
    {"tpm", true, false},  {"domain", true, true}, {"team", true, false},        {"metadata", true, false},
    {NULL, false, false},
};
static const kg_cli_opt_spec_t list_specs[] = {
    {"status", true, false}, {"env", true, false},   {"team", true, false},
    {"limit", true, false},  {"after", true, false}, {NULL, false, false},
};
static const kg_cli_opt_spec_t id_specs[] = {{"id", true, false}, {NULL, false, false}};
static const kg_cli_opt_spec_t rotate_specs[] = {{"id", true, false}, {"grace", true, false}, {NULL, false, false}};
static const kg_cli_opt_spec_t no_specs[] = {{NULL, false, false}};

static int usage(const noun_t *n)
{
    fprintf(stderr,
            "usage: keygate %s create --name NAME [options]\n"
            "       keygate %s list [--status S] [--env E] [--json]\n"
            "       keygate %s show|disable|enable|delete --id ID\n"
            "       keygate %s rotate --id ID [--grace 1h]\n"
            "       keygate %s update --id ID [--name N] [--scope S]... [--model M]... [--expires 30d] ...\n"
            "       keygate access-key presets\n",
            n->name, n->name, n->name, n->name, n->name);
    return KG_EXIT_USAGE;
}

/* Sets body[key] from a string option parsed as a positive integer. */
static bool put_int(json_t *obj, const char *key, const char *value, const char *opt)
{
    char *end;
    long long v = strtoll(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < 1) {
        fprintf(stderr, "keygate: --%s must be a positive integer\n", opt);
        return false;
    }
    json_object_set_new(obj, key, json_integer(v));
    return true;
}

static json_t *string_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* Builds the create/update body from options; NULL after printing a usage error. */
static json_t *fields_from_opts(const kg_cli_opts_t *o, const noun_t *n, bool create)
{
    const char *v, *many[KG_CLI_MAX_VALUES];
    size_t count;
    json_t *body = json_object();
    json_t *limits = NULL;

    if (create && strcmp(n->type, "access") != 0 && !n->legacy)
        json_object_set_new(body, "token_type", json_string(n->type));
    if ((v = kg_cli_opt(o, "name")) != NULL)
        json_object_set_new(body, "name", json_string(v));
    if ((v = kg_cli_opt(o, "description")) != NULL)
        json_object_set_new(body, "description", json_string(v));
    if ((v = kg_cli_opt(o, "preset")) != NULL)
        json_object_set_new(body, "preset", json_string(v));
    if ((v = kg_cli_opt(o, "purpose")) != NULL)
        json_object_set_new(body, "purpose", json_string(v));
    if ((v = kg_cli_opt(o, "env")) != NULL)
        json_object_set_new(body, "environment", json_string(v));
    if ((v = kg_cli_opt(o, "team")) != NULL)
        json_object_set_new(body, "team_id", json_string(v));
    if ((count = kg_cli_opt_all(o, "scope", many, KG_CLI_MAX_VALUES)) > 0)
        json_object_set_new(body, "scopes", string_array(many, count));
    if ((count = kg_cli_opt_all(o, "domain", many, KG_CLI_MAX_VALUES)) > 0)
        json_object_set_new(body, "allowed_domains", string_array(many, count));
    size_t n_models = kg_cli_opt_all(o, "model", many, KG_CLI_MAX_VALUES);
    json_t *models = n_models > 0 ? string_array(many, n_models) : NULL;
    size_t n_agents = kg_cli_opt_all(o, "agent", many, KG_CLI_MAX_VALUES);
    json_t *agents = n_agents > 0 ? string_array(many, n_agents) : NULL;
    if (models != NULL || agents != NULL) {
        /* Naming models or agents narrows the key to exactly those (the rest: none). */
        json_object_set_new(body, "allow",
                            json_pack("{s:o, s:o}", "models", models != NULL ? models : json_array(), "agents",
                                      agents != NULL ? agents : json_array()));
    }
    if ((v = kg_cli_opt(o, "expires")) != NULL) {
        int64_t at;
        if (strcmp(v, "never") == 0) {
            json_object_set_new(body, "expires_at", json_null());
        } else if (!kg_cli_parse_expiry(v, (int64_t)time(NULL), &at)) {
            fprintf(stderr, "keygate: --expires takes a duration (30d, 12h), unix seconds or YYYY-MM-DDTHH:MM:SSZ\n");
            goto fail;
        } else {
            json_object_set_new(body, "expires_at", json_integer(at));
        }
    }
    if ((v = kg_cli_opt(o, "rpm")) != NULL) {
        limits = limits != NULL ? limits : json_object();
        if (!put_int(limits, "rpm", v, "rpm"))
            goto fail;
    }
    if ((v = kg_cli_opt(o, "tpm")) != NULL) {
        limits = limits != NULL ? limits : json_object();
        if (!put_int(limits, "tpm", v, "tpm"))
            goto fail;
    }
    if (limits != NULL)
        json_object_set_new(body, "rate_limits", limits), limits = NULL;
    if ((v = kg_cli_opt(o, "metadata")) != NULL) {
        json_t *m = json_loads(v, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(m)) {
            json_decref(m);
            fprintf(stderr, "keygate: --metadata takes a JSON object\n");
            goto fail;
        }
        json_object_set_new(body, "metadata", m);
    }
    return body;
fail:
    json_decref(limits);
    json_decref(body);
    return NULL;
}

static void print_secret(const json_t *t, const char *verb)
{
    const char *env = json_string_value(json_object_get(t, "environment"));
    printf("%s %s key %s (%s)%s%s\n", verb, json_string_value(json_object_get(t, "token_type")),
           json_string_value(json_object_get(t, "id")), json_string_value(json_object_get(t, "name")),
           env != NULL ? " in " : "", env != NULL ? env : "");
    printf("secret: %s\n", json_string_value(json_object_get(t, "key")));
    printf("This secret is shown only once: store it now.\n");
}

static void print_detail(const json_t *t)
{
    const char *k;
    json_t *v;
    char buf[32];
    json_object_foreach ((json_t *)t, k, v) {
        if (strcmp(k, "key") == 0)
            continue;
        if (json_is_string(v)) {
            printf("%-16s %s\n", k, json_string_value(v));
        } else if (json_is_integer(v) && strstr(k, "_at") != NULL) {
            printf("%-16s %s (%lld)\n", k, kg_cli_time(v, "-", buf, sizeof(buf)), (long long)json_integer_value(v));
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
            printf("%-16s %s\n", k, s != NULL ? s : "?");
            free(s);
        }
    }
}

static int print_list(const json_t *reply)
{
    kg_cli_table_t table;
    size_t i;
    json_t *t;
    char created[32], used[32];
    kg_cli_table_init(&table, 7);
    kg_cli_table_add(&table, (const char *[]){"ID", "NAME", "TYPE", "PREFIX", "STATUS", "CREATED", "LAST USED"});
    json_array_foreach (json_object_get(reply, "data"), i, t) {
        const char *row[7] = {
            json_string_value(json_object_get(t, "id")),
            json_string_value(json_object_get(t, "name")),
            json_string_value(json_object_get(t, "token_type")),
            json_string_value(json_object_get(t, "prefix")),
            json_string_value(json_object_get(t, "status")),
            kg_cli_time(json_object_get(t, "created_at"), "-", created, sizeof(created)),
            kg_cli_time(json_object_get(t, "last_used_at"), "never", used, sizeof(used)),
        };
        kg_cli_table_add(&table, row);
    }
    kg_cli_table_print(&table);
    return KG_EXIT_OK;
}

/* Runs `call` and renders the reply: `kind` picks the human format. */
enum render { R_SECRET_CREATED, R_SECRET_ROTATED, R_DETAIL, R_LIST, R_STATE };

static int run(kg_cli_t *cli, const char *method, const char *path, const char *query, json_t *body, enum render kind,
               const char *state_word)
{
    int status;
    json_t *reply;
    kg_cli_call(cli, method, path, query, body, &status, &reply);
    json_decref(body);
    if (reply == NULL)
        return KG_EXIT_REFUSED;
    int rc = KG_EXIT_OK;
    if (status >= 400) {
        rc = kg_cli_refused(reply, status);
    } else if (cli->json) {
        kg_cli_print_json(reply);
    } else if (kind == R_SECRET_CREATED || kind == R_SECRET_ROTATED) {
        print_secret(reply, kind == R_SECRET_CREATED ? "Created" : "Rotated");
        json_t *grace = json_object_get(reply, "grace_until");
        char buf[32];
        if (json_is_integer(grace))
            printf("The previous secret keeps working until %s UTC.\n", kg_cli_time(grace, "-", buf, sizeof(buf)));
    } else if (kind == R_DETAIL) {
        print_detail(reply);
    } else if (kind == R_LIST) {
        rc = print_list(reply);
    } else {
        printf("%s %s\n", json_string_value(json_object_get(reply, "id")), state_word);
    }
    json_decref(reply);
    return rc;
}

static int cmd_presets(int argc, char **argv)
{
    kg_cli_opts_t o;
    kg_cli_table_t table;
    if (!kg_cli_opts_parse(&o, no_specs, argc, argv))
        return KG_EXIT_USAGE;
    if (kg_cli_opt(&o, "json") != NULL) {
        json_t *a = json_array();
        for (size_t i = 0; i < sizeof(preset_rows) / sizeof(preset_rows[0]); i++)
            json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "preset", preset_rows[i][0], "scopes",
                                               preset_rows[i][1], "clients", preset_rows[i][2]));
        kg_cli_print_json(a);
        json_decref(a);
        return KG_EXIT_OK;
    }
    kg_cli_table_init(&table, 3);
    kg_cli_table_add(&table, (const char *[]){"PRESET", "SCOPES", "SUITS"});
    for (size_t i = 0; i < sizeof(preset_rows) / sizeof(preset_rows[0]); i++)
        kg_cli_table_add(&table, preset_rows[i]);
    kg_cli_table_print(&table);
    return KG_EXIT_OK;
}

int kg_cmd_keys(const char *noun_name, int argc, char **argv)
{
    const noun_t *n = NULL;
    const kg_cli_opt_spec_t *specs;
    kg_cli_opts_t o;
    kg_cli_t cli;
    char path[128], query[512];
    int rc;

    for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++)
        if (strcmp(nouns[i].name, noun_name) == 0)
            n = &nouns[i];
    if (n == NULL || argc < 1)
        return usage(n != NULL ? n : &nouns[0]);
    const char *verb = argv[0];
    argc--, argv++;
    if (strcmp(verb, "presets") == 0 && strcmp(n->type, "access") == 0)
        return cmd_presets(argc, argv);

    if (strcmp(verb, "create") == 0)
        specs = create_specs;
    else if (strcmp(verb, "update") == 0 && !n->legacy)
        specs = update_specs;
    else if (strcmp(verb, "list") == 0)
        specs = list_specs;
    else if (strcmp(verb, "rotate") == 0)
        specs = rotate_specs;
    else if (strcmp(verb, "show") == 0 || strcmp(verb, "delete") == 0 ||
             (!n->legacy && (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0)))
        specs = id_specs;
    else
        return usage(n);
    if (!kg_cli_opts_parse(&o, specs, argc, argv))
        return KG_EXIT_USAGE;
    const char *id = kg_cli_opt(&o, "id");
    if (specs != create_specs && specs != list_specs && (id == NULL || *id == '\0')) {
        fprintf(stderr, "keygate: %s %s needs --id\n", n->name, verb);
        return KG_EXIT_USAGE;
    }
    if (specs == create_specs && kg_cli_opt(&o, "name") == NULL) {
        fprintf(stderr, "keygate: %s create needs --name\n", n->name);
        return KG_EXIT_USAGE;
    }
    json_t *body = NULL;
    if (specs == create_specs || specs == update_specs) {
        if ((body = fields_from_opts(&o, n, specs == create_specs)) == NULL)
            return KG_EXIT_USAGE;
    } else if (specs == rotate_specs) {
        const char *grace = kg_cli_opt(&o, "grace");
        int64_t seconds = 0;
        if (grace != NULL && !kg_cli_parse_duration(grace, &seconds)) {
            fprintf(stderr, "keygate: --grace takes a duration such as 30m, 1h or 2d\n");
            return KG_EXIT_USAGE;
        }
        body = json_pack("{s:I}", "grace_seconds", (json_int_t)seconds);
    }
    if (!kg_cli_open(&cli, &o)) {
        json_decref(body);
        return kg_cli_open_failed(&cli);
    }
    if (specs == create_specs) {
        rc = run(&cli, "POST", n->base, NULL, body, R_SECRET_CREATED, NULL);
    } else if (specs == list_specs) {
        const char *status = kg_cli_opt(&o, "status"), *env = kg_cli_opt(&o, "env"), *team = kg_cli_opt(&o, "team");
        const char *limit = kg_cli_opt(&o, "limit"), *after = kg_cli_opt(&o, "after");
        size_t at = 0;
        query[0] = '\0';
#define ADD_PARAM(k, v)                                                                                                \
    if ((v) != NULL)                                                                                                   \
        at += (size_t)snprintf(query + at, at < sizeof(query) ? sizeof(query) - at : 0, "%s%s=%s", at ? "&" : "", k, v);
        if (!n->legacy)
            ADD_PARAM("type", n->type);
        ADD_PARAM("status", status);
        ADD_PARAM("environment", env);
        ADD_PARAM("team", team);
        ADD_PARAM("limit", limit != NULL ? limit : "100");
        ADD_PARAM("after", after);
#undef ADD_PARAM
        rc = run(&cli, "GET", n->base, query[0] != '\0' ? query : NULL, NULL, R_LIST, NULL);
    } else {
        snprintf(path, sizeof(path), "%s/%s", n->base, id);
        if (strcmp(verb, "show") == 0) {
            rc = run(&cli, "GET", path, NULL, NULL, R_DETAIL, NULL);
        } else if (strcmp(verb, "update") == 0) {
            rc = run(&cli, "PATCH", path, NULL, body, R_DETAIL, NULL);
        } else if (strcmp(verb, "delete") == 0) {
            rc = run(&cli, "DELETE", path, NULL, NULL, R_STATE, "revoked");
        } else if (strcmp(verb, "rotate") == 0) {
            snprintf(path, sizeof(path), "%s/%s/rotate", n->base, id);
            rc = run(&cli, "POST", path, NULL, body, R_SECRET_ROTATED, NULL);
        } else {
            snprintf(path, sizeof(path), "%s/%s/%s", n->base, id, verb);
            rc = run(&cli, "POST", path, NULL, NULL, R_STATE, strcmp(verb, "enable") == 0 ? "enabled" : "disabled");
        }
    }
    kg_cli_close(&cli);
    return rc;
}
