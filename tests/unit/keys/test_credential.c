/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/keys/credential.c: every accepted credential form of SPEC §2 and the refusals.
 */
#include <stdbool.h>

#include "../test.h"
#include "keys/credential.h"

#define S(lit) ((kg_slice_t){lit, sizeof(lit) - 1})

static kg_err_t parse_auth(kg_slice_t auth, kg_credential_t *c)
{
    return kg_credential_parse(&auth, 1, NULL, 0, c);
}

static bool slice_is(kg_slice_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.base, lit, s.len) == 0;
}

void test_credential_forms(void)
{
    kg_credential_t c;
    CHECK_INT(parse_auth(S("Bearer kg_live_abc"), &c), KG_OK);
    CHECK(slice_is(c.secret, "kg_live_abc") && c.pk.len == 0);
    CHECK_INT(parse_auth(S("bearer   kg_live_abc"), &c), KG_OK); /* case-insensitive, several spaces */
    CHECK(slice_is(c.secret, "kg_live_abc"));
    CHECK_INT(parse_auth(S("BEARER kg_live_abc"), &c), KG_OK);
    CHECK_INT(parse_auth(S("Bearer pk_abc:kg_live_abc"), &c), KG_OK);
    CHECK(slice_is(c.pk, "pk_abc") && slice_is(c.secret, "kg_live_abc"));
    CHECK_INT(parse_auth(S("Bearer pk_abc"), &c), KG_OK); /* publishable mode */
    CHECK(slice_is(c.pk, "pk_abc") && c.secret.len == 0);

    kg_slice_t key = S("kg_live_abc");
    CHECK_INT(kg_credential_parse(NULL, 0, &key, 1, &c), KG_OK);
    CHECK(slice_is(c.secret, "kg_live_abc"));
    kg_slice_t auth = S("Bearer kg_live_abc");
    CHECK_INT(kg_credential_parse(&auth, 1, &key, 1, &c), KG_OK); /* the same key twice agrees */
}

void test_credential_refusals(void)
{
    kg_credential_t c;
    CHECK_INT(kg_credential_parse(NULL, 0, NULL, 0, &c), KG_EMISSING_API_KEY);
    CHECK_INT(parse_auth(S("Basic dXNlcjpwYXNz"), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearer"), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearer    "), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearer\tkg_live_abc"), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearerkg_live_abc"), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearer :kg_live_abc"), &c), KG_EINVALID_API_KEY);
    CHECK_INT(parse_auth(S("Bearer pk_abc:"), &c), KG_EINVALID_API_KEY);

    kg_slice_t two[2] = {S("Bearer a"), S("Bearer a")};
    CHECK_INT(kg_credential_parse(two, 2, NULL, 0, &c), KG_ECONFLICTING_CREDENTIALS);
    kg_slice_t auth = S("Bearer kg_live_abc"), other = S("kg_live_xyz"), empty = S("");
    CHECK_INT(kg_credential_parse(&auth, 1, &other, 1, &c), KG_ECONFLICTING_CREDENTIALS);
    CHECK_INT(kg_credential_parse(&auth, 1, &empty, 1, &c), KG_ECONFLICTING_CREDENTIALS);
    CHECK_INT(kg_credential_parse(NULL, 0, two, 2, &c), KG_ECONFLICTING_CREDENTIALS);
}
