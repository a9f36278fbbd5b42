/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns the reading of a request's credential (SPEC §2, "Accepted credentials"):
 * `Authorization: Bearer <secret | pk:secret | pk>` and `x-api-key: <secret>`. It is zero-copy
 * (slices of the header values) and knows nothing of HTTP libraries or the store.
 */
#ifndef KG_KEYS_CREDENTIAL_H
#define KG_KEYS_CREDENTIAL_H

#include <stddef.h>

#include "core/err.h"

typedef struct kg_slice {
    const char *base;
    size_t len;
} kg_slice_t;

typedef struct kg_credential {
    kg_slice_t pk;     /* the public id of a pair or of publishable mode; len 0 if absent */
    kg_slice_t secret; /* len 0 in publishable mode */
} kg_credential_t;

/**
 * Reads the credential from every `Authorization` value and every `x-api-key` value.
 * Returns KG_OK, KG_EMISSING_API_KEY (none), KG_ECONFLICTING_CREDENTIALS (repeated or
 * disagreeing), or KG_EINVALID_API_KEY (not a Bearer credential). Allocates nothing.
 */
kg_err_t kg_credential_parse(const kg_slice_t *authorization, size_t n_authorization, const kg_slice_t *api_key,
                             size_t n_api_key, kg_credential_t *out) KG_MUST_CHECK;

#endif
