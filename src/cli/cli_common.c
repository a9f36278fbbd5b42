/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the CLI plumbing of cli.h: options, local/remote calls and output.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "keys/key_hash.h"

static const kg_cli_opt_spec_t global_specs[] = {
    {"config", true, false}, {"db", true, false},    {"url", true, false},
    {"org", true, false},    {"json", false, false}, {NULL, false, false},
};

/* ==== Options ==== */

static const kg_cli_opt_spec_t *spec_find(const kg_cli_opt_spec_t *specs, const char *name, size_t len)
{
    for (const kg_cli_opt_spec_t *s = specs; s != NULL && s->name != NULL; s++)
        if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

bool kg_cli_opts_parse(kg_cli_opts_t *o, const kg_cli_opt_spec_t *specs, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->specs = specs;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "keygate: unexpected argument '%s'\n", arg);
            return false;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const kg_cli_opt_spec_t *s = spec_find(specs, name, len);
        if (s == NULL)
            s = spec_find(global_specs, name, len);
        if (s == NULL) {
            fprintf(stderr, "keygate: unknown option '--%.*s'\n", (int)len, name);
            return false;
        }
        const char *value = "";
        if (s->has_arg) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "keygate: option '--%s' needs a value\n", s->name);
                return false;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "keygate: option '--%s' takes no value\n", s->name);
            return false;
        }
        if (!s->repeatable && kg_cli_opt(o, s->name) != NULL) {
            fprintf(stderr, "keygate: option '--%s' given twice\n", s->name);
            return false;
        }
        if (o->n == KG_CLI_MAX_VALUES) {
            fprintf(stderr, "keygate: too many options\n");
            return false;
        }
        o->names[o->n] = s->name;
        o->values[o->n++] = value;
    }
    return true;
}

const char *kg_cli_opt(const kg_cli_opts_t *o, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->names[i], name) == 0)
            found = o->values[i];
    return found;
}

size_t kg_cli_opt_all(const kg_cli_opts_t *o, const char *name, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n && n < cap; i++)
        if (strcmp(o->names[i], name) == 0)
            out[n++] = o->values[i];
    return n;
}

bool kg_cli_parse_duration(const char *s, int64_t *seconds)
{
    int64_t total = 0;
    if (s == NULL || *s == '\0')
        return false;
    while (*s != '\0') {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (end == s || errno != 0 || n < 0 || n > 100000000LL)
            return false;
        int64_t unit;
        switch (*end) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return false;
        }
        total += n * unit;
        s = end + 1;
    }
    *seconds = total;
    return true;
}

bool kg_cli_parse_expiry(const char *s, int64_t now, int64_t *at)
{
    int64_t d;
    struct tm tm = {0};
    char *end;
    if (kg_cli_parse_duration(s, &d)) {
        *at = now + d;
        return d > 0;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s != '\0' && *end == '\0' && errno == 0) {
        *at = v;
        return true;
    }
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0')
        end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL || *end != '\0')
        return false;
    *at = (int64_t)timegm(&tm);
    return true;
}

/* ==== Calls ==== */

bool kg_cli_open(kg_cli_t *cli, kg_cli_opts_t *opts)
{
    char err[512];
    memset(cli, 0, sizeof(*cli));
    cli->opts = opts;
    cli->json = kg_cli_opt(opts, "json") != NULL;
    cli->url = kg_cli_opt(opts, "url");
    /* An explicit --db or --config names a local store and wins over KEYGATE_URL from the environment. */
    bool local_flags = kg_cli_opt(opts, "db") != NULL || kg_cli_opt(opts, "config") != NULL;
    if (cli->url == NULL && !local_flags && getenv("KEYGATE_URL") != NULL && getenv("KEYGATE_URL")[0] != '\0')
        cli->url = getenv("KEYGATE_URL");
    if (cli->url != NULL && local_flags) {
        fprintf(stderr, "keygate: give either --url or --db/--config, not both\n");
        return false;
    }
    if (cli->url != NULL) {
        if (kg_cli_opt(opts, "org") != NULL) {
            fprintf(stderr, "keygate: --org applies to the local store; a gateway's admin key decides the org\n");
            return false;
        }
        cli->admin_key = getenv("KEYGATE_ADMIN_KEY");
        if (cli->admin_key == NULL || cli->admin_key[0] == '\0') {
            fprintf(stderr, "keygate: set KEYGATE_ADMIN_KEY to an admin key to use --url\n");
            return false;
        }
        return true;
    }
    if (!kg_config_load(&cli->cfg, kg_cli_opt(opts, "config"), err, sizeof(err))) {
        fprintf(stderr, "keygate: %s\n", err);
        return false;
    }
    cli->cfg_loaded = true;
    if (kg_cli_opt(opts, "db") != NULL)
        kg_config_set(&cli->cfg.db, kg_cli_opt(opts, "db"));
    const char *path = kg_config_sqlite_path(&cli->cfg);
    if (path == NULL) {
        fprintf(stderr, "keygate: only SQLite stores are supported so far (db: %s)\n", cli->cfg.db);
        return false;
    }
    kg_err_t code;
    if ((cli->store = kg_store_open_existing(path, &code, err, sizeof(err))) == NULL) {
        if (code == KG_ENOT_FOUND)
            fprintf(stderr, "keygate: %s does not exist yet: run 'keygate init' (or 'keygate serve') first\n", path);
        else
            fprintf(stderr, "keygate: %s\n", err);
        cli->refused = true;
        return false;
    }
    const char *org_name = kg_cli_opt(opts, "org") != NULL ? kg_cli_opt(opts, "org") : KG_DEFAULT_ORG_NAME;
    kg_org_t org = {0};
    kg_err_t rv = kg_store_org_get_by_name(cli->store, org_name, &org);
    if (rv != KG_OK) {
        if (strcmp(org_name, KG_DEFAULT_ORG_NAME) == 0)
            fprintf(stderr, "keygate: %s is not initialised yet: run 'keygate init' (or 'keygate serve') first\n",
                    path);
        else
            fprintf(stderr, "keygate: no organization named '%s'\n", org_name);
        return false;
    }
    snprintf(cli->actor.id, sizeof(cli->actor.id), "%s", KG_ACTOR_CLI_LOCAL);
    snprintf(cli->actor.org_id, sizeof(cli->actor.org_id), "%s", org.id);
    cli->actor.is_root = true; /* whoever can write the store file is its operator */
    kg_org_dispose(&org);
    return true;
}

int kg_cli_open_failed(kg_cli_t *cli)
{
    int rc = cli->refused ? KG_EXIT_REFUSED : KG_EXIT_USAGE;
    kg_cli_close(cli);
    return rc;
}

void kg_cli_close(kg_cli_t *cli)
{
    kg_store_close(cli->store);
    if (cli->cfg_loaded)
        kg_config_dispose(&cli->cfg);
    memset(cli, 0, sizeof(*cli));
}

void kg_cli_call(kg_cli_t *cli, const char *method, const char *path, const char *query, json_t *body, int *status,
                 json_t **out)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *reply = NULL;
    *out = NULL;
    *status = 0;
    if (cli->url != NULL) {
        char err[256];
        if (!kg_cli_http(cli->url, cli->admin_key, method, path, query, text, status, &reply, err, sizeof(err)))
            fprintf(stderr, "keygate: %s\n", err);
    } else {
        kg_admin_t admin = {.store = cli->store, .cfg = &cli->cfg};
        kg_admin_request_t req = {.method = method,
                                  .path = path,
                                  .query = query,
                                  .body = text != NULL ? text : "",
                                  .body_len = text != NULL ? strlen(text) : 0,
                                  .actor = &cli->actor,
                                  .now = (int64_t)time(NULL)};
        kg_admin_response_t res = {0};
        kg_admin_handle(&admin, &req, &res);
        *status = res.status;
        reply = res.body;
    }
    if (reply != NULL) {
        *out = json_loads(reply, 0, NULL);
        if (*out == NULL)
            fprintf(stderr, "keygate: the gateway answered %d with a body that is not JSON\n", *status);
        kg_secret_wipe(reply, strlen(reply));
        free(reply);
    }
    free(text);
}

int kg_cli_refused(const json_t *reply, int status)
{
    const char *msg = json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
    const char *code = json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
    fprintf(stderr, "keygate: %s (%d%s%s)\n", msg != NULL ? msg : "request refused", status, code ? " " : "",
            code ? code : "");
    return KG_EXIT_REFUSED;
}

/* ==== Output ==== */

const char *kg_cli_time(json_t *v, const char *none, char *buf, size_t cap)
{
    if (!json_is_integer(v) || json_integer_value(v) == 0)
        return none;
    time_t t = (time_t)json_integer_value(v);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

void kg_cli_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        puts(s);
        kg_secret_wipe(s, strlen(s));
        free(s);
    }
}

void kg_cli_table_init(kg_cli_table_t *t, size_t cols)
{
    memset(t, 0, sizeof(*t));
    t->cols = cols;
}

void kg_cli_table_add(kg_cli_table_t *t, const char *const *row)
{
    if (t->rows == t->cap) {
        t->cap = t->cap != 0 ? t->cap * 2 : 16;
        t->cells = realloc(t->cells, t->cap * t->cols * sizeof(*t->cells));
        if (t->cells == NULL)
            abort();
    }
    for (size_t c = 0; c < t->cols; c++)
        t->cells[t->rows * t->cols + c] = kg_xstrdup(row[c] != NULL ? row[c] : "");
    t->rows++;
}

void kg_cli_table_print(kg_cli_table_t *t)
{
    size_t width[16] = {0};
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols && c < 16; c++) {
            size_t w = strlen(t->cells[r * t->cols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->cols; c++) {
            const char *cell = t->cells[r * t->cols + c];
            if (c + 1 < t->cols)
                printf("%-*s  ", (int)width[c], cell);
            else
                printf("%s\n", cell);
            free((void *)cell);
        }
    }
    free(t->cells);
    memset(t, 0, sizeof(*t));
}
