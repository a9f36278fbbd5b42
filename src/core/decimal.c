/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the decimal formatting of decimal.h.
 */
#include "core/decimal.h"

size_t kg_put_uint(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t kg_format_uint(uint64_t v, char *buf)
{
    size_t n = kg_put_uint(buf, v);
    buf[n] = '\0';
    return n;
}
