/* SPDX-License-Identifier: Apache-2.0
 *
 * This file implements the usage record's names (see usage.h).
 */
#include "usage/usage.h"

const char *kg_usage_route_name(kg_usage_route_t r)
{
    switch (r) {
    case KG_USAGE_CHAT: return "chat";
    case KG_USAGE_COMPLETIONS: return "completions";
    case KG_USAGE_EMBEDDINGS: return "embeddings";
    }
    return "unknown";
}
