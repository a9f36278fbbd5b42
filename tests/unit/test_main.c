/* SPDX-License-Identifier: Apache-2.0
 *
 * Runs every unit test (or those whose names contain argv[1]) and prints
 * "N passed, N failed" as its last line; exits non-zero on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

int kg_test_failures;

#define TESTS(X)                                                                                                       \
    X(test_err_render_shape)                                                                                           \
    X(test_err_render_escapes_and_truncates)                                                                           \
    X(test_err_table_statuses)                                                                                         \
    X(test_objpool_objects)                                                                                            \
    X(test_objpool_threads)                                                                                            \
    X(test_objpool_reserve)                                                                                            \
    X(test_key_format_vectors)                                                                                         \
    X(test_key_format_malformed)                                                                                       \
    X(test_key_format_generate)                                                                                        \
    X(test_key_id)                                                                                                     \
    X(test_key_hash_vectors)                                                                                           \
    X(test_credential_forms)                                                                                           \
    X(test_credential_refusals)                                                                                        \
    X(test_config_sample)                                                                                              \
    X(test_config_errors)                                                                                              \
    X(test_config_environment_overrides)                                                                               \
    X(test_digest_table_put_find_remove)                                                                               \
    X(test_digest_table_shared_home_and_tag)                                                                           \
    X(test_digest_table_growth_and_bulk)                                                                               \
    X(test_digest_table_concurrent_readers)                                                                            \
    X(test_index_statuses)                                                                                             \
    X(test_index_check_secret)                                                                                         \
    X(test_index_rotation_grace)                                                                                       \
    X(test_index_concurrent_update_and_lookup)                                                                         \
    X(test_index_last_used)                                                                                            \
    X(test_index_last_used_once_a_step)                                                                                \
    X(test_index_last_used_in_batches)                                                                                 \
    X(test_store_migrations_and_wal)                                                                                   \
    X(test_store_feed_rotation_grace)                                                                                  \
    X(test_store_feed_load_matches_feed_after_history)                                                                 \
    X(test_store_feed_sees_other_connection)                                                                           \
    X(test_store_last_used_flush)                                                                                      \
    X(test_token_stream_matches_scan)                                                                                  \
    X(test_usage_store_insert_is_exactly_once)                                                                         \
    X(test_usage_store_columns_round_trip)                                                                             \
    X(test_usage_store_totals_by_key_and_team)                                                                         \
    X(test_usage_store_rollup_splits_a_run_of_one_key)                                                                 \
    X(test_usage_store_key_totals_add_up_across_groups)                                                                \
    X(test_usage_store_series_buckets)                                                                                 \
    X(test_usage_store_chunks_are_exactly_once)                                                                        \
    X(test_usage_store_batches_keep_every_byte)                                                                        \
    X(test_usage_store_replay_after_commit_before_release)                                                             \
    X(test_usage_store_upgrades_schema_4)                                                                              \
    X(test_usage_store_upgrades_schema_5)                                                                              \
    X(test_admin_validation)                                                                                           \
    X(test_body_scan_reads)                                                                                            \
    X(test_body_scan_refusals)                                                                                         \
    X(test_body_scan_readers_agree)                                                                                    \
    X(test_policy_decisions)                                                                                           \
    X(test_policy_system_message)                                                                                      \
    X(test_policy_shared_between_keys_alike)                                                                           \
    X(test_origin_table)                                                                                               \
    X(test_origin_host)                                                                                                \
    X(test_origin_pattern_normalize)                                                                                   \
    X(test_origin_match)                                                                                               \
    X(test_gcra_burst_then_steady_rate)                                                                                \
    X(test_gcra_rounding_never_admits_more_than_the_limit)                                                             \
    X(test_gcra_all_or_nothing)                                                                                        \
    X(test_gcra_reconcile)                                                                                             \
    X(test_gcra_exact_under_threads)                                                                                   \
    X(test_admit_key_and_team_all_or_nothing)                                                                          \
    X(test_admit_tokens_reserved_and_reconciled)                                                                       \
    X(test_admit_concurrency_slots)                                                                                    \
    X(test_admit_budget_periods)                                                                                       \
    X(test_limits_parse_and_periods)                                                                                   \
    X(test_reset_format)                                                                                               \
    X(test_usage_scan_any_chunking)                                                                                    \
    X(test_usage_scan_stream_and_content)                                                                              \
    X(test_journal_append_read_release)                                                                                \
    X(test_journal_rollover)                                                                                           \
    X(test_journal_rewind)                                                                                             \
    X(test_journal_skips_foreign_and_torn)                                                                             \
    X(test_journal_survives_sigkill)                                                                                   \
    X(test_journal_prepare_keeps_rollovers_off_the_writer)                                                             \
    X(test_journal_unused_spares_leave_no_files)                                                                       \
    X(test_journal_replay_follows_claim_order)                                                                         \
    X(test_journal_reuses_released_segments)                                                                           \
    X(test_journal_concurrent_reader)

#define DECLARE(name) void name(void);
TESTS(DECLARE)
#undef DECLARE

typedef struct test_entry {
    const char *name;
    void (*fn)(void);
} test_entry_t;

static const test_entry_t all_tests[] = {
#define ENTRY(name) {#name, name},
    TESTS(ENTRY)
#undef ENTRY
};

const char *kg_test_source_path(const char *relative, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", KG_SOURCE_ROOT, relative);
    return buf;
}

const char *kg_test_tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/kg-unit-XXXXXX");
    if (mkdtemp(buf) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof(all_tests) / sizeof(all_tests[0]); i++) {
        if (argc > 1 && strstr(all_tests[i].name, argv[1]) == NULL)
            continue;
        kg_test_failures = 0;
        all_tests[i].fn();
        if (kg_test_failures == 0) {
            passed++;
            printf("ok   %s\n", all_tests[i].name);
        } else {
            failed++;
            printf("FAIL %s (%d checks)\n", all_tests[i].name, kg_test_failures);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
