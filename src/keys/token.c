/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the token model's names and derived status.
 */
#include "keys/token.h"

#include <stdlib.h>
#include <string.h>

static const char *const type_names[KG_TOKEN__COUNT] = {"access", "gateway", "admin"};
static const char *const status_names[] = {"active", "disabled", "expired", "revoked"};

const char *kg_token_type_name(kg_token_type_t t)
{
    return (unsigned)t < KG_TOKEN__COUNT ? type_names[t] : "?";
}

bool kg_token_type_parse(const char *s, kg_token_type_t *out)
{
    for (int i = 0; i < KG_TOKEN__COUNT; i++)
        if (strcmp(s, type_names[i]) == 0) {
            *out = (kg_token_type_t)i;
            return true;
        }
    return false;
}

const char *kg_token_status_name(kg_token_status_t s)
{
    return status_names[s];
}

bool kg_token_status_parse(const char *s, kg_token_status_t *out)
{
    for (int i = 0; i <= KG_STATUS_REVOKED; i++)
        if (strcmp(s, status_names[i]) == 0) {
            *out = (kg_token_status_t)i;
            return true;
        }
    return false;
}

kg_token_status_t kg_token_status(const kg_token_t *t, int64_t now)
{
    if (t->revoked_at != 0)
        return KG_STATUS_REVOKED;
    if (!t->enabled)
        return KG_STATUS_DISABLED;
    if (t->expires_at != 0 && now >= t->expires_at)
        return KG_STATUS_EXPIRED;
    return KG_STATUS_ACTIVE;
}

void kg_token_dispose(kg_token_t *t)
{
    char **owned[] = {&t->org_id,          &t->team_id,        &t->name,        &t->description,
                      &t->environment,     &t->purpose,        &t->scopes,      &t->allow,
                      &t->allowed_domains, &t->prompt_modules, &t->prompt_text, &t->rate_limits,
                      &t->budget,          &t->metadata,       &t->created_by,  &t->revoked_by};
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        free(*owned[i]);
    memset(t, 0, sizeof(*t));
}
