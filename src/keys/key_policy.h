/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns a key's compiled policy (SPEC §3, §4): the org, environment and team it lives in, its scopes
 * as a bit set, its model and agent allowlists, its limits and budget, and its prompt policy with the text
 * already JSON-escaped. It is built
 * from the token's stored JSON on the writer side (when the key index changes), so the request
 * path only tests bits and compares names. Immutable once built.
 */
#ifndef KG_KEYS_KEY_POLICY_H
#define KG_KEYS_KEY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keys/token.h"
#include "limits/limits.h"

typedef enum kg_scope {
    KG_SCOPE_CHAT = 1u << 0,
    KG_SCOPE_EMBED = 1u << 1,
    KG_SCOPE_TRANSCRIBE = 1u << 2,
    KG_SCOPE_SPEECH = 1u << 3,
    KG_SCOPE_IMAGE = 1u << 4,
    KG_SCOPE_DATASETS_WRITE = 1u << 5,
    KG_SCOPE_CONVERSATIONS_WRITE = 1u << 6,
} kg_scope_t;

/** The wire name of one scope bit ("inference:chat", ...). */
const char *kg_scope_name(kg_scope_t s);
/** Parses a scope name; 0 when unknown. */
uint32_t kg_scope_parse(const char *name);

typedef struct kg_allow_list {
    bool all; /* "*": everything, including what is created later */
    size_t n;
    char **patterns; /* names, or prefixes ending in '*' */
} kg_allow_list_t;

typedef struct kg_key_policy {
    /* Where the key lives (never NULL; "" for none): kept here so that keys alike share them. */
    char *org_id;
    char *environment;
    char *team_id;
    uint32_t scopes;
    kg_allow_list_t models;
    kg_allow_list_t agents;
    char **prompt_modules; /* names, in order */
    size_t n_prompt_modules;
    char *prompt_text_json; /* the key's prompt_text, JSON-escaped without quotes; NULL if none */
    char **domains;         /* allowed_domains, normalised; a key with any is publishable */
    size_t n_domains;
    kg_rate_limits_t limits; /* the key's own; its team's apply too */
    kg_budget_t budget;
    /* Sharing (kg_key_policy_acquire): the members it was compiled from, and its users. */
    char *signature;
    uint64_t signature_hash;
    size_t refs;
    struct kg_key_policy *next_shared;
} kg_key_policy_t;

/** Compiles t's policy members. Never fails (unparsable members compile to "nothing allowed"). */
kg_key_policy_t *kg_key_policy_new(const kg_token_t *t);
void kg_key_policy_free(kg_key_policy_t *p);

/**
 * The key index's way: t's compiled policy, shared with every other key whose policy members,
 * org, environment and team are the same (keys made from one preset share one), counted; kg_key_policy_release drops a
 * reference and frees the policy with the last. Thread-safe (a mutex, on the writer side only).
 */
kg_key_policy_t *kg_key_policy_acquire(const kg_token_t *t);
void kg_key_policy_release(kg_key_policy_t *p);

/** Compiles an allow list from "*" or a list of names/prefixes (anything else allows nothing). */
void kg_allow_list_compile(kg_allow_list_t *list, json_t *v);
void kg_allow_list_dispose(kg_allow_list_t *list);
/** Does `list` allow name[0..len)? Exact names, trailing-'*' prefixes, or "*". */
bool kg_allow_list_match(const kg_allow_list_t *list, const char *name, size_t len);
/** Whether the key carries any prompt policy of its own. */
bool kg_key_policy_has_prompt(const kg_key_policy_t *p);

/** Appends s as a JSON string body (no quotes) to a heap buffer; returns the new string. */
char *kg_json_escape_dup(const char *s);

#endif
