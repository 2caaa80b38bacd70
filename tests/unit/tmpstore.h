/* A store on a fresh temporary directory, the fixture of the unit tests
 * that need a database (setup/teardown of cmocka). */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include "store/store.h"

typedef struct {
        char dir[64];
        char path[128];
        Store *st;
} TmpStore;

/* A new store under /tmp/armada-test-TAG-XXXXXX; NULL when it cannot be made. */
static inline TmpStore *tmpstore_new(const char *tag) {
        TmpStore *t = calloc(1, sizeof *t);
        snprintf(t->dir, sizeof t->dir, "/tmp/armada-test-%s-XXXXXX", tag);
        if (!mkdtemp(t->dir)) {
                free(t);
                return NULL;
        }
        snprintf(t->path, sizeof t->path, "%s/t.db", t->dir);
        if (store_open(t->path, &t->st) < 0) {
                free(t);
                return NULL;
        }
        return t;
}

/* Closes the store and removes its directory; 0 or -1. */
static inline int tmpstore_free(TmpStore *t) {
        store_free(t->st);
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
        int r = system(cmd) == 0 ? 0 : -1;
        free(t);
        return r;
}

/* Breaks table under the store, deterministically, for the tests of "a
 * database error is not 'not found'": it is renamed (its rows, indexes and
 * triggers follow), so every statement that names it fails to prepare
 * ("no such table") on every connection. 0 or negative. */
static inline int tmpstore_break_table(Store *st, const char *table) {
        char sql[160];
        snprintf(sql, sizeof sql, "ALTER TABLE %s RENAME TO %s_broken", table, table);
        return store_exec(st, sql, "");
}
