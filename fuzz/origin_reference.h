/* SPDX-License-Identifier: Apache-2.0
 *
 * A second, deliberately plain implementation of the origin rules of SPEC §2 (publishable keys),
 * written from the spec and src/policy/origin.h without looking at how origin.c does it, so that
 * fuzz_origin can check the two agree. ASCII only: callers skip the comparison when an input holds
 * a byte >= 0x80 (punycode conversion is libidn2's job, not something to reimplement here).
 */
#ifndef KG_FUZZ_ORIGIN_REFERENCE_H
#define KG_FUZZ_ORIGIN_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#define REF_HOST_MAX 256 /* 253 characters of host name, "*." and a NUL fit */

/** An allowed_domains entry -> "example.com" or "*.example.com" (lower case, no trailing dot). */
bool ref_pattern(const char *in, char out[REF_HOST_MAX]);

/** The host of an Origin value (exactly scheme://host[:port]) or, with is_referer, of a Referer URL. */
bool ref_host(const unsigned char *v, size_t n, bool is_referer, char out[REF_HOST_MAX]);

/** A normalised host against a normalised pattern. */
bool ref_match(const char *host, const char *pattern);

/** Origin if present (not NULL, even empty), else Referer if present, against the patterns. */
bool ref_allowed(const unsigned char *origin, size_t on, const unsigned char *referer, size_t rn,
                 const char *const *patterns, size_t n_patterns);

#endif
