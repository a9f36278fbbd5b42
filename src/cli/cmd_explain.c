/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements `keygate explain`: for a key (by id, or its secret on stdin), a route,
 * a model and an origin, it prints the decision the gateway would make and the rule that made
 * it — through the same policy code the data plane runs, on the local store and config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "cli/cli.h"
#include "keys/key_format.h"
#include "keys/key_hash.h"
#include "keys/key_policy.h"
#include "policy/policy.h"

static const char *status_code(kg_token_status_t s)
{
    switch (s) {
    case KG_STATUS_DISABLED: return "key_disabled";
    case KG_STATUS_EXPIRED: return "key_expired";
    case KG_STATUS_REVOKED: return "key_revoked";
    default: return NULL;
    }
}

/* Reads one secret from stdin (never from argv, where it would land in shell history). */
static bool read_secret(char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, stdin) == NULL)
        return false;
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    return len > 0;
}

typedef struct verdict {
    const char *decision; /* "allowed" or "refused" */
    int status;
    const char *code;
    char rule[256];
    char upstream[160];
} verdict_t;

static void print_verdict(const kg_cli_t *cli, const kg_token_t *t, const char *route, const char *model,
                          const char *origin, const verdict_t *v)
{
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:i, s:s?, s:s, s:s?}", "key", t->id, "token_type",
                              kg_token_type_name(t->type), "route", route, "model", model, "origin", origin, "decision",
                              v->decision, "status", v->status, "code", v->code, "rule", v->rule, "upstream",
                              v->upstream[0] != '\0' ? v->upstream : NULL);
        kg_cli_print_json(o);
        json_decref(o);
        return;
    }
    printf("key       %s (%s) %s key, environment %s\n", t->id, t->name, kg_token_type_name(t->type),
           t->environment != NULL ? t->environment : "-");
    printf("route     POST %s\n", route);
    if (model != NULL)
        printf("model     %s\n", model);
    if (origin != NULL)
        printf("origin    %s (checked only for publishable keys: Bearer pk_ alone)\n", origin);
    if (v->code != NULL)
        printf("decision  %s: %d %s\n", v->decision, v->status, v->code);
    else
        printf("decision  %s\n", v->decision);
    printf("rule      %s\n", v->rule);
    if (v->upstream[0] != '\0')
        printf("upstream  %s\n", v->upstream);
}

int kg_cmd_explain(int argc, char **argv)
{
    static const kg_cli_opt_spec_t specs[] = {{"route", true, false},
                                              {"model", true, false},
                                              {"origin", true, false},
                                              {"id", true, false},
                                              {NULL, false, false}};
    kg_cli_opts_t o;
    kg_cli_t cli;
    char id[KG_KEY_ID_LEN + 1], secret[256];
    kg_route_kind_t route;
    int rc = KG_EXIT_OK;

    if (!kg_cli_opts_parse(&o, specs, argc, argv))
        return KG_EXIT_USAGE;
    const char *route_path = kg_cli_opt(&o, "route"), *model = kg_cli_opt(&o, "model");
    if (route_path == NULL || !kg_route_parse(route_path, strlen(route_path), &route)) {
        fprintf(stderr, "usage: keygate explain --route /v1/chat/completions --model M [--origin O] (--id PK | secret "
                        "on stdin)\n");
        return KG_EXIT_USAGE;
    }
    if (route != KG_ROUTE_MODELS && model == NULL) {
        fprintf(stderr, "keygate: explain needs --model for %s\n", route_path);
        return KG_EXIT_USAGE;
    }
    if (kg_cli_opt(&o, "url") != NULL || (getenv("KEYGATE_URL") != NULL && kg_cli_opt(&o, "db") == NULL &&
                                          kg_cli_opt(&o, "config") == NULL && getenv("KEYGATE_URL")[0] != '\0')) {
        fprintf(stderr, "keygate: explain works on the local store and config (--db, --config), not --url\n");
        return KG_EXIT_USAGE;
    }
    if (!kg_cli_open(&cli, &o))
        return kg_cli_open_failed(&cli);
    int64_t now = (int64_t)time(NULL);
    if (kg_cli_opt(&o, "id") != NULL) {
        snprintf(id, sizeof(id), "%s", kg_cli_opt(&o, "id"));
    } else {
        kg_key_secret_ref_t ref;
        uint8_t hash[KG_KEY_HASH_BYTES];
        bool ok = read_secret(secret, sizeof(secret)) && kg_key_secret_parse(secret, strlen(secret), &ref) == KG_OK &&
                  kg_key_hash(secret, strlen(secret), hash) &&
                  kg_store_token_id_by_hash(cli.store, hash, now, id) == KG_OK;
        kg_secret_wipe(secret, sizeof(secret));
        if (!ok) {
            printf("decision  refused: 401 invalid_api_key\nrule      the secret is malformed, fails its checksum, or "
                   "belongs to no live key\n");
            kg_cli_close(&cli);
            return KG_EXIT_OK;
        }
    }
    kg_token_t t = {0};
    if (kg_store_token_get(cli.store, id, cli.actor.org_id, &t) != KG_OK) {
        fprintf(stderr, "keygate: no key with id '%s'\n", kg_key_id_is_valid(id, strlen(id)) ? id : "?");
        kg_cli_close(&cli);
        return KG_EXIT_REFUSED;
    }
    kg_catalog_t *cat = kg_catalog_load(cli.store, &cli.cfg);
    if (cat == NULL) {
        fprintf(stderr, "keygate: cannot read the catalog from the store\n");
        kg_token_dispose(&t);
        kg_cli_close(&cli);
        return KG_EXIT_USAGE;
    }
    verdict_t v = {.decision = "allowed", .status = 200};
    kg_token_status_t st = kg_token_status(&t, now);
    if (status_code(st) != NULL) {
        v.decision = "refused", v.status = 401, v.code = status_code(st);
        snprintf(v.rule, sizeof(v.rule), "the key is %s", kg_token_status_name(st));
    } else if (t.type != KG_TOKEN_ACCESS) {
        v.decision = "refused", v.status = 403, v.code = "insufficient_scope";
        snprintf(v.rule, sizeof(v.rule), "%s keys cannot call data-plane routes", kg_token_type_name(t.type));
    } else {
        kg_key_policy_t *policy = kg_key_policy_new(&t);
        kg_key_view_t view = {.type = t.type,
                              .policy = policy,
                              .org_id = policy->org_id,
                              .environment = policy->environment,
                              .team_id = policy->team_id};
        snprintf(view.id, sizeof(view.id), "%s", t.id);
        kg_decision_t d;
        if (model == NULL) {
            snprintf(v.rule, sizeof(v.rule), "any active access key may list the models it can reach");
        } else if (kg_policy_decide(cat, &view, policy, route, model, strlen(model), &d) != KG_OK) {
            v.decision = "refused", v.status = kg_err_http_status(d.code), v.code = kg_err_code(d.code);
            snprintf(v.rule, sizeof(v.rule), "%s%s", d.rule,
                     d.code == KG_EPROVIDER_UNAVAILABLE ? " (credentials resolve in this shell's environment)" : "");
        } else {
            kg_policy_allowed_rule(&d, route, model, strlen(model), v.rule, sizeof(v.rule));
            snprintf(v.upstream, sizeof(v.upstream), "model %s via provider %s", d.model->upstream_model,
                     d.model->provider->name);
        }
        kg_key_policy_free(policy);
    }
    print_verdict(&cli, &t, route_path, model, kg_cli_opt(&o, "origin"), &v);
    kg_catalog_free(cat);
    kg_token_dispose(&t);
    kg_cli_close(&cli);
    return rc;
}
