/* SPDX-License-Identifier: Apache-2.0
 *
 * This file is keygate's entry point: it routes `keygate <noun> <verb>` to the verb's
 * implementation (SPEC §7).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/cli.h"
#include "keys/key_hash.h"

/* A test build with an authorization rule compiled out says so wherever it can be seen. */
#if defined(KG_BREAK_RULE_SCOPE) || defined(KG_BREAK_RULE_ALLOWLIST) || defined(KG_BREAK_RULE_ENVIRONMENT) ||          \
    defined(KG_BREAK_RULE_STATUS) || defined(KG_BREAK_RULE_ORG) || defined(KG_BREAK_RULE_TYPE)
#define KG_BUILD_FLAVOUR " (TEST BUILD: an authorization rule is OFF, never deploy)"
#else
#define KG_BUILD_FLAVOUR ""
#endif

static int usage(FILE *to)
{
    fprintf(to, "usage: keygate <command> [options]\n\n"
                "  serve [--config FILE] [--listen ADDR] [--db URL] [--workers N]\n"
                "  init  [--config FILE] [--db URL]\n"
                "  access-key  create|list|show|update|rotate|disable|enable|delete|presets ...\n"
                "  gateway-key create|list|show|rotate|delete ...\n"
                "  admin-key   create|list|show|update|rotate|disable|enable|delete ...\n"
                "  org         create|list|show ...\n"
                "  environment create|list|delete ...\n"
                "  provider|model|agent|prompt-module|team create|list|show|update|delete ...\n"
                "  audit [--key ID] [--since 24h]\n"
                "  usage [--key ID] [--team T] [--since 24h] [--bucket minute|hour|day]\n"
                "  explain --route /v1/chat/completions --model M [--origin O] (--id PK | secret on stdin)\n\n"
                "Verbs work on the local store (--db, --config, ./keygate.db) or, with --url or KEYGATE_URL,\n"
                "on a running gateway with the admin key in KEYGATE_ADMIN_KEY. --json prints JSON.\n");
    return to == stdout ? 0 : 2;
}

/* Admin JSON may hold a secret: every block jansson frees is wiped first. */
static void wiping_free(void *p)
{
    if (p != NULL) {
        kg_secret_wipe(p, malloc_usable_size(p));
        free(p);
    }
}

int main(int argc, char **argv)
{
    int rc;
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
        return usage(stdout);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("keygate %s%s\n", KEYGATE_VERSION, KG_BUILD_FLAVOUR);
        return 0;
    }
    umask(077); /* the store, its WAL and the root key file are the operator's alone */
    json_set_alloc_funcs(malloc, wiping_free);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "serve") == 0)
        rc = kg_serve_main(argc - 2, argv + 2);
    else if (strcmp(cmd, "init") == 0)
        rc = kg_cmd_init(argc - 2, argv + 2);
    else if (strcmp(cmd, "access-key") == 0 || strcmp(cmd, "gateway-key") == 0 || strcmp(cmd, "admin-key") == 0)
        rc = kg_cmd_keys(cmd, argc - 2, argv + 2);
    else if (strcmp(cmd, "org") == 0)
        rc = kg_cmd_org(argc - 2, argv + 2);
    else if (strcmp(cmd, "environment") == 0)
        rc = kg_cmd_environment(argc - 2, argv + 2);
    else if (strcmp(cmd, "audit") == 0)
        rc = kg_cmd_audit(argc - 2, argv + 2);
    else if (strcmp(cmd, "usage") == 0)
        rc = kg_cmd_usage(argc - 2, argv + 2);
    else if (strcmp(cmd, "explain") == 0)
        rc = kg_cmd_explain(argc - 2, argv + 2);
    else if (strcmp(cmd, "provider") == 0 || strcmp(cmd, "model") == 0 || strcmp(cmd, "agent") == 0 ||
             strcmp(cmd, "prompt-module") == 0 || strcmp(cmd, "team") == 0)
        rc = kg_cmd_catalog(cmd, argc - 2, argv + 2);
    else
        rc = usage(stderr);
    curl_global_cleanup();
    return rc;
}
