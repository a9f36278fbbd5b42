/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements `keygate serve`: configuration, bootstrap of a fresh store (the root
 * admin key goes to a mode-0600 file, never to the log), the key index and its change feed,
 * the HTTP front end, and an orderly shutdown on SIGTERM/SIGINT: stop accepting, finish
 * in-flight requests, flush pending writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "cli/cli.h"
#include "core/log.h"
#include "sync/feed.h"
#include "http/server.h"
#include "keys/ephemeral.h"
#include "keys/key_hash.h"
#include "proxy/upstream.h"
#include "limits/limits.h"
#include "usage/usage_writer.h"

/* Writes the root admin secret to `path` with mode 0600, refusing to follow a symlink. */
static bool write_root_key(const char *path, const char *secret)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    bool ok = fchmod(fd, 0600) == 0;
    size_t len = strlen(secret);
    ok = ok && write(fd, secret, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Before a catalog is published: make the TLS contexts of endpoints not seen before. */
static void prepare_catalog(void *ctx, const kg_catalog_t *cat)
{
    char err[256];
    if (!kg_upstreams_prepare(ctx, cat, err, sizeof(err)))
        kg_log_error("%s", err);
    for (size_t i = 0; i < cat->n_providers; i++)
        if (!cat->providers[i].available)
            kg_log_warn("provider %s of %s is unavailable: its credential does not resolve; its models answer 503",
                        cat->providers[i].name, cat->providers[i].org_id);
}

static int workers_auto(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int kg_serve_main(int argc, char **argv)
{
    static const kg_cli_opt_spec_t specs[] = {{"listen", true, false}, {"workers", true, false}, {NULL, false, false}};
    kg_cli_opts_t o;
    kg_config_t cfg;
    char err[512], secret[KG_KEY_SECRET_MAX], key_path[4096];
    sigset_t stop_signals;
    int sig = 0;

    if (!kg_cli_opts_parse(&o, specs, argc, argv))
        return KG_EXIT_USAGE;
    if (!kg_config_load(&cfg, kg_cli_opt(&o, "config"), err, sizeof(err))) {
        fprintf(stderr, "keygate: %s\n", err);
        return KG_EXIT_USAGE;
    }
    if (kg_cli_opt(&o, "db") != NULL)
        kg_config_set(&cfg.db, kg_cli_opt(&o, "db"));
    if (kg_cli_opt(&o, "listen") != NULL)
        kg_config_set(&cfg.listen, kg_cli_opt(&o, "listen"));
    if (kg_cli_opt(&o, "workers") != NULL) {
        cfg.workers = atoi(kg_cli_opt(&o, "workers")); /* validated just below */
        if (cfg.workers < 1 || cfg.workers > 256) {
            fprintf(stderr, "keygate: --workers takes 1..256\n");
            kg_config_dispose(&cfg);
            return KG_EXIT_USAGE;
        }
    }
#if defined(KG_BREAK_RULE_SCOPE) || defined(KG_BREAK_RULE_ALLOWLIST) || defined(KG_BREAK_RULE_ENVIRONMENT) ||          \
    defined(KG_BREAK_RULE_STATUS) || defined(KG_BREAK_RULE_ORG) || defined(KG_BREAK_RULE_TYPE)
    kg_log_error("TEST BUILD: an authorization rule is compiled out (meson -Dbreak_rule); never deploy this binary");
#endif
    const char *db_path = kg_config_sqlite_path(&cfg);
    if (db_path == NULL) {
        fprintf(stderr, "keygate: only SQLite stores are supported so far (db: %s)\n", cfg.db);
        kg_config_dispose(&cfg);
        return KG_EXIT_USAGE;
    }

    /* Every thread inherits this mask; the main thread alone waits for the signals. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    kg_key_index_thread_online();

    int rc = KG_EXIT_REFUSED;
    kg_key_index_t *index = NULL;
    kg_feed_t *feed = NULL;
    kg_server_t *server = NULL;
    kg_journal_t *journal = NULL;
    kg_usage_writer_t *usage_writer = NULL;
    kg_upstreams_t *upstreams = kg_upstreams_new();
    static uint8_t eph_key[KG_EPH_KEY_BYTES]; /* lives as long as the server */
    kg_feed_catalog_t catalog_feed = {.cfg = &cfg, .prepare = prepare_catalog, .prepare_ctx = upstreams};
    kg_store_t *store = kg_store_open(db_path, err, sizeof(err));
    if (store == NULL) {
        kg_log_error("%s", err);
        goto out;
    }
    kg_admin_t admin = {.store = store, .cfg = &cfg};
    if (kg_admin_bootstrap(&admin, (int64_t)time(NULL), secret) != KG_OK) {
        kg_log_error("cannot initialise the store %s", db_path);
        goto out;
    }
    if (secret[0] != '\0') {
        snprintf(key_path, sizeof(key_path), "%s.root-key", db_path);
        bool written = write_root_key(key_path, secret);
        kg_secret_wipe(secret, sizeof(secret));
        if (!written) {
            kg_log_error("cannot write the root admin key to %s: %s", key_path, strerror(errno));
            goto out;
        }
        kg_log_info("new store %s: the root admin key was written to %s (mode 0600)", db_path, key_path);
    }
    if (kg_store_meta_get(store, KG_EPH_META_KEY, eph_key, sizeof(eph_key)) != KG_OK) {
        kg_log_error("the store has no ephemeral-token signing key");
        goto out;
    }
    /* Usage an earlier process journaled (even if it was killed) reaches the store first, so
     * the budgets below start from every request ever answered. */
    snprintf(key_path, sizeof(key_path), "%s.journal", db_path);
    if ((journal = kg_journal_open(key_path, err, sizeof(err))) == NULL) {
        kg_log_error("%s", err);
        goto out;
    }
    size_t replayed = 0;
    if (kg_usage_drain(journal, store, &replayed) != KG_OK) {
        kg_log_error("cannot replay the usage journal %s into the store", key_path);
        goto out;
    }
    if (replayed > 0)
        kg_log_info("usage: replayed %zu journaled records into the store", replayed);
    index = kg_key_index_new();
    /* The feed loads the keys and publishes the first catalog before anything is served. */
    if ((feed = kg_feed_start(db_path, index, &catalog_feed, err, sizeof(err))) == NULL) {
        kg_log_error("%s", err);
        goto out;
    }
    if (kg_usage_seed_spend(store, index, kg_wall_ms() / 1000) != KG_OK) {
        kg_log_error("cannot read the stored usage to seed the budgets");
        goto out;
    }
    if ((usage_writer = kg_usage_writer_start(journal, db_path, err, sizeof(err))) == NULL) {
        kg_log_error("%s", err);
        goto out;
    }
    kg_server_options_t opts = {
        .listen = cfg.listen,
        .workers = cfg.workers > 0 ? cfg.workers : workers_auto(),
        .max_body_bytes = (size_t)cfg.max_body_bytes,
        .max_header_bytes = (size_t)cfg.max_header_bytes,
        .upstream_timeout_ms = (uint64_t)cfg.upstream_timeout_ms,
        .request_timeout_ms = (uint64_t)cfg.request_timeout_ms,
        .default_max_tokens = cfg.default_max_tokens,
        .upstreams = upstreams,
        .eph_key = eph_key,
        .catalog_feed = &catalog_feed,
        .index = index,
        .admin_store = store,
        .cfg = &cfg,
        .journal = journal,
        .metrics_listen = cfg.metrics_listen,
    };
    if ((server = kg_server_start(&opts, err, sizeof(err))) == NULL) {
        kg_log_error("%s", err);
        goto out;
    }
    store = NULL; /* the server's admin worker owns it now */
    if (kg_server_metrics_port(server) != 0) {
        const char *mcolon = strrchr(cfg.metrics_listen, ':');
        kg_log_info("metrics on http://%.*s:%d/metrics", (int)(mcolon - cfg.metrics_listen), cfg.metrics_listen,
                    kg_server_metrics_port(server));
    }
    const char *colon = strrchr(cfg.listen, ':');
    kg_log_info("keygate listening on http://%.*s:%d (%d workers, %zu key secrets, config %s, store %s)",
                (int)(colon - cfg.listen), cfg.listen, kg_server_port(server), opts.workers, kg_key_index_size(index),
                cfg.path != NULL ? cfg.path : "(defaults)", db_path);

    while (sigwait(&stop_signals, &sig) != 0)
        ;
    kg_log_info("received %s: finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    rc = KG_EXIT_OK;
out:
    if (server != NULL)
        kg_server_stop(server, (int)(cfg.drain_ms < 86400000 ? cfg.drain_ms : 86400000));
    kg_usage_writer_stop(usage_writer); /* after the workers: one last flush of their records */
    kg_journal_close(journal);
    kg_feed_stop(feed); /* flushes pending last-use times */
    kg_store_close(store);
    kg_key_index_free(index);
    kg_catalog_retire_all();
    kg_secret_wipe(eph_key, sizeof(eph_key));
    kg_upstreams_free(upstreams);
    kg_key_index_thread_offline();
    kg_config_dispose(&cfg);
    if (rc == KG_EXIT_OK)
        kg_log_info("stopped");
    return rc;
}
