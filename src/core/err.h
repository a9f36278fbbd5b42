/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns keygate's error vocabulary: one table (KG_ERR_MAP) gives every error its
 * HTTP status, OpenAI error `type`, wire `code` and default message (SPEC §5), and
 * kg_err_render() is the only place that writes the {"error":{...}} JSON shape.
 */
#ifndef KG_CORE_ERR_H
#define KG_CORE_ERR_H

#include <stddef.h>

#define KG_MUST_CHECK __attribute__((warn_unused_result))

/* name, value, http status, openai type, wire code, default message */
#define KG_ERR_MAP(X)                                                                                                  \
    X(INVALID_JSON, -1, 400, "invalid_request_error", "invalid_json", "The request body is not valid JSON.")           \
    X(MISSING_MODEL, -2, 400, "invalid_request_error", "missing_model", "The request names no model.")                 \
    X(INVALID_VALUE, -3, 400, "invalid_request_error", "invalid_value", "A parameter has an invalid value.")           \
    X(IMMUTABLE_FIELD, -4, 400, "invalid_request_error", "immutable_field", "This field cannot be changed.")           \
    X(UNKNOWN_PARAMETER, -5, 400, "invalid_request_error", "unknown_parameter", "Unknown parameter.")                  \
    X(CONFLICTING_CREDENTIALS, -6, 400, "invalid_request_error", "conflicting_credentials",                            \
      "The request carries more than one credential.")                                                                 \
    X(MISSING_API_KEY, -7, 401, "invalid_request_error", "missing_api_key",                                            \
      "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")                                   \
    X(INVALID_API_KEY, -8, 401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")             \
    X(KEY_DISABLED, -9, 401, "invalid_request_error", "key_disabled", "This API key is disabled.")                     \
    X(KEY_EXPIRED, -10, 401, "invalid_request_error", "key_expired", "This API key has expired.")                      \
    X(KEY_REVOKED, -11, 401, "invalid_request_error", "key_revoked", "This API key has been revoked.")                 \
    X(INSUFFICIENT_SCOPE, -12, 403, "permission_error", "insufficient_scope", "This key may not call this route.")     \
    X(MODEL_NOT_ALLOWED, -13, 403, "permission_error", "model_not_allowed", "This key may not use this model.")        \
    X(DATASET_NOT_ALLOWED, -14, 403, "permission_error", "dataset_not_allowed", "This key may not use this dataset.")  \
    X(ORIGIN_NOT_ALLOWED, -15, 403, "permission_error", "origin_not_allowed", "This origin is not allowed.")           \
    X(ENVIRONMENT_MISMATCH, -16, 403, "permission_error", "environment_mismatch",                                      \
      "This key's environment does not match.")                                                                        \
    X(ADMIN_REQUIRED, -17, 403, "permission_error", "admin_required", "This route needs an admin key.")                \
    X(POLICY_UNSUPPORTED_ROUTE, -18, 403, "permission_error", "policy_unsupported_route",                              \
      "Prompt policy cannot be applied on this route.")                                                                \
    X(MODEL_NOT_FOUND, -19, 404, "invalid_request_error", "model_not_found", "The model does not exist.")              \
    X(NOT_FOUND, -20, 404, "invalid_request_error", "not_found", "Not found.")                                         \
    X(REQUEST_TIMEOUT, -21, 408, "invalid_request_error", "request_timeout", "The request took too long to arrive.")   \
    X(PAYLOAD_TOO_LARGE, -22, 413, "invalid_request_error", "payload_too_large", "The request body is too large.")     \
    X(HEADERS_TOO_LARGE, -23, 431, "invalid_request_error", "headers_too_large", "The request headers are too large.") \
    X(RATE_LIMIT_EXCEEDED, -24, 429, "rate_limit_exceeded", "rate_limit_exceeded", "Rate limit exceeded.")             \
    X(INSUFFICIENT_QUOTA, -25, 429, "insufficient_quota", "insufficient_quota", "The credit budget is exhausted.")     \
    X(UPSTREAM_ERROR, -26, 502, "api_error", "upstream_error", "The upstream provider failed.")                        \
    X(PROVIDER_UNAVAILABLE, -27, 503, "api_error", "provider_unavailable", "The provider is unavailable.")             \
    X(UPSTREAM_TIMEOUT, -28, 504, "api_error", "upstream_timeout", "The upstream provider timed out.")                 \
    X(CONFLICT, -29, 409, "invalid_request_error", "conflict", "The object already exists.")                           \
    X(METHOD_NOT_ALLOWED, -30, 405, "invalid_request_error", "method_not_allowed",                                     \
      "Method not allowed on this route.")                                                                             \
    X(INTERNAL, -31, 500, "api_error", "internal_error", "Internal error.")                                            \
    X(STORE, -32, 503, "api_error", "store_unavailable", "The key store is unavailable.")                              \
    X(NOMEM, -33, 503, "api_error", "out_of_memory", "Temporarily out of memory.")

typedef enum kg_err {
    KG_OK = 0,
#define KG_ERR_ENUM(name, val, http, type, code, msg) KG_E##name = val,
    KG_ERR_MAP(KG_ERR_ENUM)
#undef KG_ERR_ENUM
} kg_err_t;

/** A failure with the details a client sees: message and the parameter at fault (may be empty). */
typedef struct kg_error {
    kg_err_t code;
    char message[256];
    char param[64];
} kg_error_t;

int kg_err_http_status(kg_err_t e);
const char *kg_err_oai_type(kg_err_t e);
const char *kg_err_code(kg_err_t e);
const char *kg_err_message(kg_err_t e);

/** Fills `err` (printf-style message; NULL fmt keeps the table's message) and returns `code`. */
kg_err_t kg_error_set(kg_error_t *err, kg_err_t code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** A buffer this large always holds a rendered error: every byte of message and param may
 *  escape to 6 (\u00XX), plus the fixed members. */
#define KG_ERR_RENDER_MAX (6 * (256 + 64) + 256)

/**
 * Writes {"error":{"message","type","param","code"}} into buf (NUL-terminated, truncated
 * safely). All four members are always present; `param` is null when empty.
 * Returns the length written (excluding the NUL).
 */
size_t kg_err_render(const kg_error_t *err, char *buf, size_t cap);

#endif
