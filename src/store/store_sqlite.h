/* SPDX-License-Identifier: Apache-2.0
 *
 * Private to src/store/: what the SQLite backend's files share.
 */
#ifndef KG_STORE_STORE_SQLITE_H
#define KG_STORE_STORE_SQLITE_H

#include <stddef.h>

#include <sqlite3.h>

/** Brings the schema to the newest version; returns it, or -1 with err filled. */
int kg__store_migrate(sqlite3 *db, char *err, size_t err_cap);

#endif
