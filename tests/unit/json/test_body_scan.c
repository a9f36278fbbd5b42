/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of src/json/body_scan.c and body_scan_fast.cpp: what the gateway reads from a body, what
 * it refuses, the offsets the permitted rewrites are spliced at, and that the fast reader takes
 * the bodies clients send and reads them as the exact one does.
 */
#include <stdlib.h>

#include "../test.h"
#include "json/body_scan.h"
#include "json/body_scan_internal.h"

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

static void free_blocks(void)
{
    for (size_t i = 0; i < n_blocks; i++)
        free(blocks[i]);
    n_blocks = 0;
}

/* An exact-size heap copy, so ASan sees any read past the end. */
static char *heap_copy(const char *body, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    memcpy(copy, body, len);
    return copy;
}

static kg_err_t scan(const char *body, size_t len, kg_body_info_t *info, kg_error_t *err)
{
    kg_body_alloc_t alloc = {tracked_alloc, NULL};
    char *copy = heap_copy(body, len);
    kg_err_t rv = kg_body_scan(copy, len, &alloc, info, err);
    free(copy);
    free_blocks();
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
    /* Names are told apart by their first 256 folded bytes: the check stays linear in the body. */
    char names[700];
    int n = snprintf(names, sizeof(names), "{\"%0300d\":1,\"%0299d1\":2}", 0, 0);
    refused(names, (size_t)n, "repeats the member");
    n = snprintf(names, sizeof(names), "{\"1%0299d\":1,\"2%0299d\":2}", 0, 0);
    CHECK_INT(scan(names, (size_t)n, &info, &err), KG_OK);
    /* Duplicates below the top level are the body's own business. */
    CHECK_INT(scan_str("{\"messages\":[{\"a\":1,\"a\":2}]}", &info, &err), KG_OK);
}

/* Runs both readers on body; returns whether the fast one took it, having checked that it then
 * read what the exact one read. *exact_rv is the exact reader's verdict. */
static bool fast_takes(const char *body, size_t len, kg_err_t *exact_rv)
{
    kg_body_alloc_t alloc = {tracked_alloc, NULL};
    kg_body_info_t fast, exact;
    kg_error_t err;
    char *copy = heap_copy(body, len);
    bool took = kg__body_scan_fast(copy, len, &alloc, &fast);
    *exact_rv = kg__body_scan_exact(copy, len, &alloc, &exact, &err);
    free(copy);
    free_blocks();
    if (took) {
        CHECK_INT(*exact_rv, KG_OK);
        CHECK(memcmp(&fast, &exact, sizeof(fast)) == 0);
        if (memcmp(&fast, &exact, sizeof(fast)) != 0)
            fprintf(stderr, "    readings differ for %.*s\n", len > 200 ? 200 : (int)len, body);
    }
    return took;
}

/* Each body is left to the exact reader, whose verdict is `exact`. */
static void declined(const char *const *bodies, size_t n, kg_err_t exact)
{
    kg_err_t rv;
    for (size_t i = 0; i < n; i++) {
        CHECK(!fast_takes(bodies[i], strlen(bodies[i]), &rv));
        CHECK_INT(rv, exact);
    }
}

void test_body_scan_readers_agree(void)
{
    kg_err_t rv;
    /* What clients send: the fast reader takes it, reading what the exact one reads. */
    static const char *const taken[] = {
        ("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You are concise.\"},"
         "{\"role\":\"user\",\"content\":\"Hi! Is order 48213-B late?\"}],\"temperature\":0.2,\"max_tokens\":256,"
         "\"user\":\"bench-user-0001\"}"),
        (" \r\n{ \"messages\" : [ ], \"model\" :  \"a\\u0062\"  , \"stream\": true, \"stream_options\": "
         "{\"include_usage\": true, \"x\": [null, {}]} } \n"),
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\\ud83d\\ude00 caf\xc3\xa9 "
        "\\\"q\\\"\"}]}",
        "{\"input\":[\"a\",\"b\",[1,2]],\"encoding_format\":\"base64\",\"dimensions\":256,\"model\":\"e\"}",
        "{\"input\":[1,2,3]}",
        "{\"input\":[]}",
        "{\"input\":\"one\",\"dimensions\":1234567890}",
        "{\"max_completion_tokens\":50000,\"max_tokens\":1,\"n\":3,\"best_of\":1000}",
        "{\"max_tokens\":4096.5,\"dimensions\":8.0}",
        "{\"max_tokens\":5e4,\"n\":-0}",
        "{\"max_tokens\":1e300}",
        "{\"max_tokens\":-5,\"extra\":{\"max_tokens\":99,\"model\":\"x\",\"model\":\"y\"}}",
        "{\"model\":5,\"stream\":\"true\",\"stream_options\":[true],\"messages\":{}}",
        "{\"stream_options\":{\"include_usage\":1,\"include_usage\":false}}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        bool took = fast_takes(taken[i], strlen(taken[i]), &rv);
        if (!took)
            fprintf(stderr, "    not taken: %s\n", taken[i]);
        CHECK(took);
    }

    /* What it leaves to the exact reader: valid JSON simdjson does not take (numbers past 64 bits
     * or a double, unpaired surrogates), which the exact reader accepts, and everything refused. */
    static const char *const accepted_by_exact[] = {
        "{\"model\":\"m\",\"n\":123456789012345678901234567890}",
        "{\"model\":\"m\",\"temperature\":1e400}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"cut \\ud83d\"}]}",
    };
    declined(accepted_by_exact, sizeof(accepted_by_exact) / sizeof(accepted_by_exact[0]), KG_OK);
    static const char *const refused[] = {
        "{\"model\":\"a\",\"model\":\"b\"}",
        "{\"model\":\"a\",\"Mod\\u0065l\":\"b\"}",
        "{\"model\":\"a\"} {}",
        "{\"model\":\"a\"}}",
        "{\"model\":\"a\",}",
        "{\"user\":\"\xc0\xaf\"}",
        "{\"user\":\"\xed\xa0\x80\"}",
        "\xef\xbb\xbf{\"model\":\"a\"}",
        "[1,2]",
        "\"model\"",
        "",
    };
    declined(refused, sizeof(refused) / sizeof(refused[0]), KG_EINVALID_JSON);

    /* Nesting: 64 levels taken, 65 left to the exact reader, which refuses them. */
    char deep[256];
    for (int levels = 64; levels <= 65; levels++) {
        size_t at = 0;
        deep[at++] = '{', memcpy(deep + at, "\"a\":", 4), at += 4;
        for (int i = 1; i < levels; i++)
            deep[at++] = '[';
        for (int i = 1; i < levels; i++)
            deep[at++] = ']';
        deep[at++] = '}';
        CHECK(fast_takes(deep, at, &rv) == (levels == 64));
        CHECK_INT(rv, levels == 64 ? KG_OK : KG_EINVALID_JSON);
    }

    /* A body larger than what a thread's reader keeps (1 MiB), then a small one again. */
    size_t big_len = (3u << 19) + 64;
    char *big = malloc(big_len + 1);
    int head = snprintf(big, big_len, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(big + head, 'x', big_len - (size_t)head - 4);
    memcpy(big + big_len - 4, "\"}]}", 4);
    CHECK(fast_takes(big, big_len, &rv));
    free(big);
    CHECK(fast_takes(taken[0], strlen(taken[0]), &rv));
}
