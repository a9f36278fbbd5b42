/* SPDX-License-Identifier: Apache-2.0
 *
 * Tests of the usage scan (usage/usage_scan.h): token counts found in a JSON answer and in a
 * stream's final chunk, whatever the chunking, and never in message content.
 */
#include "usage/usage_scan.h"
#include "../test.h"

/* Feeds `text` in pieces of `step` bytes. */
static kg_usage_scan_t scan_in_steps(const char *text, size_t step)
{
    kg_usage_scan_t s = {0};
    size_t len = strlen(text);
    for (size_t at = 0; at < len; at += step)
        kg_usage_scan_feed(&s, text + at, len - at < step ? len - at : step);
    return s;
}

void test_usage_scan_any_chunking(void)
{
    static const char body[] =
        "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":1234,"
        "\"completion_tokens\" : 56,\"total_tokens\":1290,\"prompt_tokens_details\":{\"cached_tokens\":7}}}";
    for (size_t step = 1; step <= sizeof(body); step++) {
        kg_usage_scan_t s = scan_in_steps(body, step);
        CHECK(s.found_prompt && s.found_completion);
        CHECK_INT(s.prompt_tokens, 1234);
        CHECK_INT(s.completion_tokens, 56);
    }
}

void test_usage_scan_stream_and_content(void)
{
    /* Content that quotes a usage object is escaped JSON: never read as usage. */
    static const char stream[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"say \\\"prompt_tokens\\\": 999 and "
        "\\\"completion_tokens\\\":888\"}}],\"usage\":null}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":22,\"total_tokens\":33}}\n\n"
        "data: [DONE]\n\n";
    for (size_t step = 1; step <= sizeof(stream); step += 3) {
        kg_usage_scan_t s = scan_in_steps(stream, step);
        CHECK_INT(s.prompt_tokens, 11);
        CHECK_INT(s.completion_tokens, 22);
    }
    kg_usage_scan_t none = scan_in_steps("data: {\"content\":\"\\\"prompt_tokens\\\":5\"}\n\ndata: [DONE]\n\n", 4);
    CHECK(!none.found_prompt && !none.found_completion);
    /* Embeddings report prompt tokens only. */
    kg_usage_scan_t emb = scan_in_steps("{\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}", 5);
    CHECK(emb.found_prompt && !emb.found_completion);
    CHECK_INT(emb.prompt_tokens, 8);
}
