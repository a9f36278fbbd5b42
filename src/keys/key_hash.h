/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns secret hashing: SHA-256 through OpenSSL's EVP interface with the digest
 * fetched once per process and one reusable EVP_MD_CTX per thread (no allocation per call).
 */
#ifndef KG_KEYS_KEY_HASH_H
#define KG_KEYS_KEY_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define KG_KEY_HASH_BYTES 32

/** Hashes data[0..len) into out. Returns false only if OpenSSL fails. Thread-safe. */
bool kg_key_hash(const void *data, size_t len, uint8_t out[KG_KEY_HASH_BYTES]) KG_MUST_CHECK;

/** Constant-time equality of two hashes. */
bool kg_key_hash_equal(const uint8_t a[KG_KEY_HASH_BYTES], const uint8_t b[KG_KEY_HASH_BYTES]);

/** Lower-case hex of a hash (65 bytes with NUL). */
void kg_key_hash_hex(const uint8_t hash[KG_KEY_HASH_BYTES], char out[2 * KG_KEY_HASH_BYTES + 1]);

/** Wipes a buffer that held secret material (OPENSSL_cleanse: not optimised away). */
void kg_secret_wipe(void *p, size_t len);

#endif
