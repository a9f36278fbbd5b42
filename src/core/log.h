/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns keygate's logging: one line per event on stderr, with a UTC timestamp and a
 * level. Callers pass ids and prefixes only, never secrets (SPEC §2).
 */
#ifndef KG_CORE_LOG_H
#define KG_CORE_LOG_H

typedef enum kg_log_level { KG_LOG_DEBUG, KG_LOG_INFO, KG_LOG_WARN, KG_LOG_ERROR } kg_log_level_t;

void kg_log_set_level(kg_log_level_t level);
void kg_log(kg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kg_log_info(...) kg_log(KG_LOG_INFO, __VA_ARGS__)
#define kg_log_warn(...) kg_log(KG_LOG_WARN, __VA_ARGS__)
#define kg_log_error(...) kg_log(KG_LOG_ERROR, __VA_ARGS__)
#define kg_log_debug(...) kg_log(KG_LOG_DEBUG, __VA_ARGS__)

#endif
