/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/config/config.c: the shipped sample config, strict errors with line numbers,
 * and the KEYGATE_* overrides.
 */
#include <stdlib.h>

#include "../test.h"
#include "config/config.h"

void test_config_sample(void)
{
    kg_config_t cfg;
    char err[256] = "", path[512];
    CHECK(kg_config_load(&cfg, kg_test_source_path("keygate.yaml", path, sizeof(path)), err, sizeof(err)));
    CHECK_STR(err, "");
    CHECK_STR(cfg.listen, "127.0.0.1:8080");
    CHECK_STR(cfg.metrics_listen, "127.0.0.1:9464");
    CHECK_STR(kg_config_sqlite_path(&cfg), "./keygate.db");
    CHECK(cfg.redis == NULL);
    CHECK_INT(cfg.workers, 0);
    CHECK_STR(cfg.brand, "kg");
    CHECK_INT(cfg.n_environments, 3);
    CHECK_STR(cfg.environments[0].name, "production");
    CHECK(cfg.environments[0].live);
    CHECK(!cfg.environments[1].live);
    CHECK_INT(cfg.max_body_bytes, 10485760);
    CHECK_INT(cfg.default_max_tokens, 1024);
    CHECK_INT(cfg.max_header_bytes, 16384);
    CHECK_INT(cfg.upstream_timeout_ms, 600000);
    CHECK_INT(cfg.n_credentials, 1);
    CHECK_STR(cfg.credentials[0].ref, "env:OPENAI_API_KEY");
    CHECK_INT(cfg.n_providers, 2);
    CHECK_STR(cfg.providers[1].type, "mock");
    CHECK_INT(cfg.n_models, 4);
    CHECK(cfg.models[2].input_price == 0.15 && cfg.models[2].output_price == 0.60);
    CHECK_INT(cfg.n_prompt_modules, 1);
    CHECK_INT(cfg.n_agents, 1);
    CHECK_STR(cfg.agents[0].prompt_modules.items[0], "no-pii");
    CHECK_STR(cfg.agents[0].environments.items[0], "production");
    kg_config_dispose(&cfg);
}

static void expect_error(const char *yaml, const char *fragment)
{
    kg_config_t cfg;
    char err[256] = "";
    kg_config_init(&cfg);
    bool ok = kg_config_parse(&cfg, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    CHECK(!ok);
    if (strstr(err, fragment) == NULL)
        fprintf(stderr, "    error \"%s\" lacks \"%s\"\n", err, fragment);
    CHECK(strstr(err, fragment) != NULL);
    kg_config_dispose(&cfg);
}

void test_config_errors(void)
{
    expect_error("listen: 1\nlisen: x\n", "t.yaml:2: unknown top-level field 'lisen'");
    expect_error("brand: KG\n", "brand: must match");
    expect_error("brand: pk\n", "not be \"pk\""); /* "pk_" starts a public id, never a secret */
    expect_error("workers: 0\n", "workers");
    expect_error("limits: {max_body_bytes: -1}\n", "limits.max_body_bytes");
    expect_error("limits: {default_max_tokens: 0}\n", "limits.default_max_tokens");
    expect_error("models: [{name: m, provider: demo, input: .inf}]\n", "models.input");
    expect_error("models: [{name: m, provider: demo, output: nan}]\n", "models.output");
    expect_error("models: [{name: m, provider: demo, output: 2000000}]\n", "models.output");
    expect_error("environments: [{name: prod}, {name: prod}]\n", "declared twice");
    expect_error("environments: [{name: Prod}]\n", "environments: name");
    expect_error("providers: [{name: p, type: grpc}]\n", "type must be openai or mock");
    expect_error("providers: [{name: p, base_url: 'http://x', credential: nope}]\n",
                 "credential 'nope' is not declared");
    expect_error("providers: [{name: p, type: mock}]\nmodels: [{name: m, provider: q}]\n",
                 "provider 'q' is not declared");
    expect_error("credentials: {openai: OPENAI_API_KEY}\n", "expected env:NAME or file:/path");
    expect_error("listen: [unclosed\n", "t.yaml:");
    expect_error("models: [{name: m, provider: p, input: cheap}]\n", "models.input");
    expect_error("providers: [{name: p, type: mock}]\nmodels: [{name: 'a\"b', provider: p}]\n", "names are 1-128");

    kg_config_t cfg;
    char err[256];
    kg_config_init(&cfg);
    CHECK(kg_config_parse(&cfg, "", 0, "empty.yaml", err, sizeof(err))); /* empty means defaults */
    CHECK_STR(cfg.listen, "127.0.0.1:8080");
    CHECK_INT(cfg.n_environments, 1);
    kg_config_dispose(&cfg);
}

void test_config_environment_overrides(void)
{
    kg_config_t cfg;
    char err[256], path[512];
    setenv("KEYGATE_LISTEN", "127.0.0.1:9999", 1);
    setenv("KEYGATE_DB", "sqlite:///tmp/x.db", 1);
    setenv("KEYGATE_WORKERS", "3", 1);
    setenv("KEYGATE_BRAND", "acme", 1);
    CHECK(kg_config_load(&cfg, kg_test_source_path("keygate.yaml", path, sizeof(path)), err, sizeof(err)));
    CHECK_STR(cfg.listen, "127.0.0.1:9999");
    CHECK_STR(kg_config_sqlite_path(&cfg), "/tmp/x.db");
    CHECK_INT(cfg.workers, 3);
    CHECK_STR(cfg.brand, "acme");
    kg_config_dispose(&cfg);
    setenv("KEYGATE_BRAND", "Not A Brand", 1);
    CHECK(!kg_config_load(&cfg, kg_test_source_path("keygate.yaml", path, sizeof(path)), err, sizeof(err)));
    CHECK(strstr(err, "KEYGATE_BRAND") != NULL);
    kg_config_dispose(&cfg);
    unsetenv("KEYGATE_LISTEN"), unsetenv("KEYGATE_DB"), unsetenv("KEYGATE_WORKERS"), unsetenv("KEYGATE_BRAND");
}
