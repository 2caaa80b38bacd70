/* A store on a fresh temporary database, the fixture of the unit tests
 * that need one (setup/teardown of cmocka): a SQLite file in a temporary
 * directory, or, when ARMADA_TEST_PG_URL is set (libpq keywords such as
 * "host=/tmp/pg user=armada", optionally after "postgresql:"), a new
 * PostgreSQL database on that server, dropped again by tmpstore_free(). */
#pragma once

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "store/store.h"

typedef struct {
        char dir[64];
        char path[1024];        /* what store_open() takes */
        char pg_name[96];       /* the PostgreSQL database, "" on SQLite */
        Store *st;
} TmpStore;

/* The server of ARMADA_TEST_PG_URL as libpq keywords, or NULL. */
static inline const char *tmpstore_pg_base(void) {
        const char *u = getenv("ARMADA_TEST_PG_URL");
        if (!u || !*u)
                return NULL;
        return strncmp(u, "postgresql:", 11) == 0 ? u + 11 : u;
}

/* Runs sql on the server's maintenance database; 0 or -1. */
static inline int tmpstore_pg_admin(const char *sql) {
        char conninfo[1024];
        snprintf(conninfo, sizeof conninfo, "%s dbname=postgres", tmpstore_pg_base());
        PGconn *c = PQconnectdb(conninfo);
        int r = -1;
        if (PQstatus(c) == CONNECTION_OK) {
                PGresult *res = PQexec(c, sql);
                r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
                if (r < 0)
                        fprintf(stderr, "tmpstore: %s: %s", sql, PQresultErrorMessage(res));
                PQclear(res);
        } else
                fprintf(stderr, "tmpstore: %s", PQerrorMessage(c));
        PQfinish(c);
        return r;
}

static inline int tmpstore_free(TmpStore *t);

/* A new store (tag names it); NULL when it cannot be made. */
static inline TmpStore *tmpstore_new(const char *tag) {
        static int counter;
        TmpStore *t = calloc(1, sizeof *t);
        snprintf(t->dir, sizeof t->dir, "/tmp/armada-test-%s-XXXXXX", tag);
        if (!mkdtemp(t->dir)) {
                free(t);
                return NULL;
        }
        if (tmpstore_pg_base()) {
                char sql[160];
                snprintf(t->pg_name, sizeof t->pg_name, "armada_unit_%s_%d_%d", tag, (int) getpid(), ++counter);
                for (char *p = t->pg_name; *p; p++)
                        if (*p == '-') *p = '_';
                snprintf(sql, sizeof sql, "CREATE DATABASE %s", t->pg_name);
                if (tmpstore_pg_admin(sql) < 0) {
                        rmdir(t->dir);
                        free(t);
                        return NULL;
                }
                snprintf(t->path, sizeof t->path, "postgresql:%s dbname=%s", tmpstore_pg_base(), t->pg_name);
        } else
                snprintf(t->path, sizeof t->path, "%s/t.db", t->dir);
        if (store_open(t->path, &t->st) < 0) {
                t->st = NULL;
                tmpstore_free(t);
                return NULL;
        }
        return t;
}

/* Closes the store and removes its directory (and database); 0 or -1.
 * Accepts NULL (a setup that failed). */
static inline int tmpstore_free(TmpStore *t) {
        if (!t)
                return -1;
        store_free(t->st);
        int r = 0;
        if (t->pg_name[0]) {
                char sql[160];
                snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", t->pg_name);
                r = tmpstore_pg_admin(sql);
        }
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
        if (system(cmd) != 0)
                r = -1;
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
