/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/json/body_scan.c: what the gateway reads from a body, what it refuses, and the
 * offsets the permitted rewrites are spliced at.
 */
#include <stdlib.h>

#include "../test.h"
#include "json/body_scan.h"

/* Blocks handed out during one scan, freed after it (the request pool does this in the server). */
#define MAX_BLOCKS 4096
static void *blocks[MAX_BLOCKS];
static size_t n_blocks;

static void *tracked_alloc(void *ctx, size_t size)
{
    void *p = malloc(size);
    (void)ctx;
    if (n_blocks < MAX_BLOCKS)
        blocks[n_blocks++] = p;
    return p;
}

static kg_err_t scan(const char *body, size_t len, kg_body_info_t *info, kg_error_t *err)
{
    kg_body_alloc_t alloc = {tracked_alloc, NULL};
    /* An exact-size heap copy, so ASan sees any read past the end. */
    char *copy = malloc(len > 0 ? len : 1);
    memcpy(copy, body, len);
    kg_err_t rv = kg_body_scan(copy, len, &alloc, info, err);
    free(copy);
    for (size_t i = 0; i < n_blocks; i++)
        free(blocks[i]);
    n_blocks = 0;
    return rv;
}

static kg_err_t scan_str(const char *body, kg_body_info_t *info, kg_error_t *err)
{
    return scan(body, strlen(body), info, err);
}

void test_body_scan_reads(void)
{
    kg_body_info_t info;
    kg_error_t err;
    const char *body =
        "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"model\"} ], \"model\" :  \"gpt-4o\","
        " \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"n\": 123456789012345678901234567890 }";
    CHECK_INT(scan_str(body, &info, &err), KG_OK);
    CHECK(info.has_model && info.model_is_string);
    CHECK_STR(info.model, "gpt-4o");
    CHECK(info.stream && info.include_usage);
    CHECK(info.has_messages && !info.messages_empty);
    CHECK(memcmp(body + info.model_start, "\"gpt-4o\"", 8) == 0);
    CHECK_INT(info.model_end - info.model_start, 8);
    CHECK(body[info.messages_open - 1] == '[');

    CHECK_INT(scan_str("{\"model\":\"m\",\"messages\":[ ]}", &info, &err), KG_OK);
    CHECK(info.messages_empty);
    CHECK_INT(scan_str("{\"model\":\"a\\u0062\"}", &info, &err), KG_OK); /* escapes decoded in the name */
    CHECK_STR(info.model, "ab");
    CHECK_INT(info.model_end - info.model_start, 9); /* "a\u0062" as sent */
    CHECK_INT(scan_str("{\"model\":5}", &info, &err), KG_OK);
    CHECK(info.has_model && !info.model_is_string);
    CHECK_INT(scan_str("{\"messages\":[]}", &info, &err), KG_OK);
    CHECK(!info.has_model);

    /* Embeddings inputs. */
    CHECK_INT(scan_str("{\"input\":\"one\"}", &info, &err), KG_OK);
    CHECK_INT(info.n_inputs, 1);
    CHECK_INT(scan_str("{\"input\":[\"a\",\"b\",\"c\"],\"encoding_format\":\"base64\",\"dimensions\":8}", &info, &err),
              KG_OK);
    CHECK_INT(info.n_inputs, 3);
    CHECK(info.encoding_base64);
    CHECK_INT(info.dimensions, 8);
    CHECK_INT(scan_str("{\"input\":[1,2,3]}", &info, &err), KG_OK);
    CHECK_INT(info.n_inputs, 1); /* one input given as token ids */
    CHECK_INT(scan_str("{\"input\":[[1,2],[3]]}", &info, &err), KG_OK);
    CHECK_INT(info.n_inputs, 2);

    /* What bounds the answer, read generously: the larger of both token limits, any number
     * spelling an upstream may accept, and every choice. */
    CHECK_INT(scan_str("{\"max_completion_tokens\":50000,\"max_tokens\":1,\"n\":3}", &info, &err), KG_OK);
    CHECK_INT(info.max_tokens, 50000);
    CHECK_INT(info.choices, 3);
    CHECK_INT(scan_str("{\"max_tokens\":4096.5,\"best_of\":1000}", &info, &err), KG_OK);
    CHECK_INT(info.max_tokens, 4097);
    CHECK_INT(info.choices, 128);
    CHECK_INT(scan_str("{\"max_tokens\":5e4}", &info, &err), KG_OK);
    CHECK_INT(info.max_tokens, 50000);
    CHECK_INT(scan_str("{\"max_tokens\":1e300}", &info, &err), KG_OK);
    CHECK_INT(info.max_tokens, 1000000000);
    CHECK_INT(scan_str("{\"max_tokens\":-5,\"extra\":{\"max_tokens\":99}}", &info, &err), KG_OK);
    CHECK_INT(info.max_tokens, 0); /* negative: the default applies; nested members are not ours */
}

static void refused(const char *body, size_t len, const char *fragment)
{
    kg_body_info_t info;
    kg_error_t err = {0};
    kg_err_t rv = scan(body, len, &info, &err);
    CHECK_INT(rv, KG_EINVALID_JSON);
    if (strstr(err.message, fragment) == NULL)
        fprintf(stderr, "    \"%s\" lacks \"%s\"\n", err.message, fragment);
    CHECK(strstr(err.message, fragment) != NULL);
}

void test_body_scan_refusals(void)
{
#define R(lit, frag) refused(lit, sizeof(lit) - 1, frag)
    R("{\"model\":\"a\",\"model\":\"b\"}", "repeats the member \"model\"");
    R("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", "repeats the member \"model\"");
    R("{\"x\":1,\"y\":2,\"x\":3}", "repeats the member \"x\"");
    R("{\"model\":\"a\",\"Model\":\"b\"}", "repeats the member"); /* Go matches names case-blind */
    R("{\"messages\":[],\"MESSAGES\":[]}", "repeats the member");
    R("{\"messages\":[],\"me\xc5\xbf\xc5\xbf"
      "ages\":[]}",
      "repeats the member"); /* long s folds to s */
    R("[1,2]", "must be a JSON object");
    R("\"model\"", "must be a JSON object");
    R("", "must be a JSON object");
    R("{\"model\":\"a\"", "not valid JSON");
    R("{\"model\":\"a\"} {}", "not valid JSON");
    R("{\"model\":\"\xff\xfe\"}", "not valid JSON");
    R("{\"model\":\"a\",}", "not valid JSON");
    R("{\"user\":\"\xc0\xaf\"}", "not valid UTF-8");     /* overlong '/' */
    R("{\"user\":\"\xe0\x81\x81\"}", "not valid UTF-8"); /* overlong 3-byte */
    R("{\"u\xc1\xa5"
      "er\":1}",
      "not valid UTF-8");                                    /* overlong in a member name */
    R("{\"user\":\"\xed\xa0\x80\"}", "not valid UTF-8");     /* encoded surrogate */
    R("{\"user\":\"\xf4\x90\x80\x80\"}", "not valid UTF-8"); /* above U+10FFFF */
    /* After a long ASCII run (read eight bytes at a time), at every alignment. */
    for (int pad = 0; pad < 9; pad++) {
        char bad[64], good[64];
        int n = snprintf(bad, sizeof(bad), "{\"user\":\"%.*sabcdefghijklmnop\xed\xa0\x80\"}", pad, "12345678");
        refused(bad, (size_t)n, "not valid UTF-8");
        n = snprintf(good, sizeof(good), "{\"user\":\"%.*sabcdefghijklmnop\xc3\xa9xyz\"}", pad, "12345678");
        kg_body_info_t ok_info;
        kg_error_t ok_err;
        CHECK_INT(scan_str(good, &ok_info, &ok_err), KG_OK);
    }
#undef R
    /* Nesting: 64 levels pass, 65 are refused. */
    char deep[256];
    size_t at = 0;
    deep[at++] = '{', memcpy(deep + at, "\"a\":", 4), at += 4;
    for (int i = 1; i < 64; i++)
        deep[at++] = '[';
    for (int i = 1; i < 64; i++)
        deep[at++] = ']';
    deep[at++] = '}';
    kg_body_info_t info;
    kg_error_t err;
    CHECK_INT(scan(deep, at, &info, &err), KG_OK);
    at = 0;
    deep[at++] = '{', memcpy(deep + at, "\"a\":", 4), at += 4;
    for (int i = 1; i < 65; i++)
        deep[at++] = '[';
    for (int i = 1; i < 65; i++)
        deep[at++] = ']';
    deep[at++] = '}';
    refused(deep, at, "deeper than 64");
    /* Valid multi-byte text of every length passes. */
    CHECK_INT(scan_str("{\"user\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}", &info, &err), KG_OK);
    /* Duplicates below the top level are the body's own business. */
    CHECK_INT(scan_str("{\"messages\":[{\"a\":1,\"a\":2}]}", &info, &err), KG_OK);
}
