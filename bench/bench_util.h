/* SPDX-License-Identifier: Apache-2.0
 *
 * This file owns what keygate's microbenchmarks share: the median of a run's samples and a
 * fatal exit naming the program. Header-only: each benchmark is one file compiled by hand.
 */
#ifndef KG_BENCH_UTIL_H
#define KG_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The program's name, for die(): each benchmark defines it. */
extern const char *const bench_name;

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", bench_name, what);
    exit(1);
}

#endif
