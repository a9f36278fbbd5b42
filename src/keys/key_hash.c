/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements SHA-256 of secrets. EVP_MD_fetch runs once (the one-shot EVP_Digest
 * fetches on every call and costs ~4x more); each thread keeps its own EVP_MD_CTX, freed by
 * a pthread key destructor when the thread exits.
 */
#include "keys/key_hash.h"

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static pthread_key_t ctx_key;

static void free_thread_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void fetch_digest(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    pthread_key_create(&ctx_key, free_thread_ctx);
}

bool kg_key_hash(const void *data, size_t len, uint8_t out[KG_KEY_HASH_BYTES])
{
    EVP_MD_CTX *ctx;
    unsigned int out_len = 0;

    pthread_once(&fetch_once, fetch_digest);
    if (sha256_md == NULL)
        return false;
    ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) { /* cold path: once per thread */
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL)
            return false;
        pthread_setspecific(ctx_key, ctx);
    }
    if (EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &out_len) != 1)
        return false;
    return out_len == KG_KEY_HASH_BYTES;
}

bool kg_key_hash_equal(const uint8_t a[KG_KEY_HASH_BYTES], const uint8_t b[KG_KEY_HASH_BYTES])
{
    return CRYPTO_memcmp(a, b, KG_KEY_HASH_BYTES) == 0;
}

void kg_key_hash_hex(const uint8_t hash[KG_KEY_HASH_BYTES], char out[2 * KG_KEY_HASH_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < KG_KEY_HASH_BYTES; i++) {
        out[2 * i] = hex[hash[i] >> 4];
        out[2 * i + 1] = hex[hash[i] & 15];
    }
    out[2 * KG_KEY_HASH_BYTES] = '\0';
}

void kg_secret_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}
