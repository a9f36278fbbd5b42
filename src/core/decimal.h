/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns decimal formatting of integers for the request path, where printf's machinery
 * (measured: ~0.5 us per call once its code is out of cache) costs more than the work around it.
 */
#ifndef KG_CORE_DECIMAL_H
#define KG_CORE_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/** Writes v in decimal at p, without a NUL (at most 20 bytes); returns the number of digits. */
size_t kg_put_uint(char *p, uint64_t v);
/** Writes v in decimal and a NUL into buf (at least 21 bytes); returns the number of digits. */
size_t kg_format_uint(uint64_t v, char *buf);

#endif
