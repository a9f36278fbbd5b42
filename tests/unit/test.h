/* SPDX-License-Identifier: Apache-2.0
 *
 * The unit-test harness: CHECK records a failure with its location and goes on, each test is
 * a void function listed in test_main.c, and the run ends with "N passed, N failed".
 */
#ifndef KG_TEST_H
#define KG_TEST_H

#include <stdio.h>
#include <string.h>

extern int kg_test_failures; /* failures in the current test */

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                               \
            kg_test_failures++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(a, b)                                                                                                \
    do {                                                                                                               \
        const char *a_ = (a), *b_ = (b);                                                                               \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                                         \
            fprintf(stderr, "    %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)",                   \
                    b_ ? b_ : "(null)");                                                                               \
            kg_test_failures++;                                                                                        \
        }                                                                                                              \
    } while (0)

#define CHECK_INT(a, b)                                                                                                \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        if (a_ != b_) {                                                                                                \
            fprintf(stderr, "    %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_);                 \
            kg_test_failures++;                                                                                        \
        }                                                                                                              \
    } while (0)

/** Path of a file in the source tree (tests/...), from the KG_SOURCE_ROOT the build passes. */
const char *kg_test_source_path(const char *relative, char *buf, size_t cap);
/** A fresh temporary directory (removed at exit is not guaranteed; it lives under /tmp). */
const char *kg_test_tmpdir(char *buf, size_t cap);

#endif
