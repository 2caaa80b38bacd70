/* armada-admin: what an operator does to an installation's store while no
 * armadad runs on it. One command today:
 *
 *   armada-admin migrate-store --from sqlite:var/armada.db --to postgresql://armada@db1/armada
 *
 * copies every row (ids and id sequences included) into a new, empty
 * store, then verifies both ends table by table (row count and SHA-256)
 * and prints them; the exit status is 0 only when every table agrees. */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store-copy.h"
#include "store/store.h"
#include "util/util.h"

enum { EXIT_MISMATCH = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

static void usage(FILE *f) {
        fprintf(f, "Usage: armada-admin migrate-store --from STORE --to STORE [--quiet] [--verbose]\n"
                   "\n"
                   "Copies an installation's whole store into a new, empty one and verifies it.\n"
                   "STORE is sqlite:PATH (or a path) or postgresql://USER@HOST/DATABASE (a libpq URI).\n"
                   "No armadad may run on the source. The target's tables are created by its\n"
                   "migrations; a target that already holds rows is refused, never overwritten.\n"
                   "\n"
                   "  --from STORE     the store armadad used until now\n"
                   "  --to STORE       the new store\n"
                   "  --quiet          print only errors and the verdict\n"
                   "  --verbose        also print the store's own log (it may show the URL as given)\n"
                   "\n"
                   "Exit status: 0 copied and verified; 1 a table differs after the copy;\n"
                   "2 bad usage; 3 refused or failed (nothing was changed on the target).\n");
}

static bool is_postgresql(const char *store) {
        return strncmp(store, "postgresql:", 11) == 0 || strncmp(store, "postgres:", 9) == 0;
}

/* The store as it may be shown: a password in a URI (user:secret@) or in
 * the keyword form (password=secret) is masked. */
static char *store_shown(const char *store) {
        char *s = xstrdup(store);
        char *scheme = strstr(s, "://");
        if (scheme) {
                char *at = strchr(scheme + 3, '@'), *colon = strchr(scheme + 3, ':');
                if (at && colon && colon < at) {
                        char *out = xasprintf("%.*s:***%s", (int) (colon - s), s, at);
                        free(s);
                        s = out;
                }
        }
        char *pw = strstr(s, "password=");
        if (pw) {
                char *end = pw + strlen("password=");
                while (*end && *end != ' ' && *end != '&')
                        end++;
                char *out = xasprintf("%.*spassword=***%s", (int) (pw - s), s, end);
                free(s);
                s = out;
        }
        return s;
}

/* The argument store_open() takes: a path for SQLite (sqlite: dropped),
 * the URL itself for PostgreSQL. */
static const char *store_arg(const char *store) {
        return strncmp(store, "sqlite:", 7) == 0 ? store + 7 : store;
}

/* Removes an SQLite database and its companions. */
static void remove_sqlite(const char *path) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *f = xasprintf("%s%s", path, suffixes[i]);
                (void) unlink(f);
        }
}

/* The rows migrations seed, from a scratch SQLite store in a temporary
 * directory (removed again). */
static int seed_counts(StoreCopyReport *ret) {
        char dir[] = "/tmp/armada-admin-XXXXXX";
        if (!mkdtemp(dir))
                return -errno;
        _cleanup_free_ char *path = xasprintf("%s/seed.db", dir);
        Store *st = NULL;
        int r = store_open(path, &st);
        if (r >= 0)
                r = store_copy_seed_counts(st, ret);
        store_free(st);
        remove_sqlite(path);
        (void) rmdir(dir);
        return r;
}

static void print_report(const StoreCopyReport *rep, bool quiet) {
        if (!quiet)
                printf("%-28s %12s %12s  %-64s  %s\n", "TABLE", "SOURCE ROWS", "TARGET ROWS", "SHA-256 (rows by primary key)", "");
        for (size_t i = 0; i < rep->n_tables; i++) {
                const StoreCopyTable *t = &rep->tables[i];
                if (quiet && t->same)
                        continue;
                char src_rows[24] = "-", dst_rows[24] = "-";
                if (t->source_rows >= 0)
                        snprintf(src_rows, sizeof src_rows, "%lld", (long long) t->source_rows);
                if (t->target_rows >= 0)
                        snprintf(dst_rows, sizeof dst_rows, "%lld", (long long) t->target_rows);
                const char *verdict = !t->same ? "MISMATCH" : t->source_rows < 0 ? "only in the target" :
                                      t->target_rows < 0 ? "only in the source (empty)" : "ok";
                printf("%-28s %12s %12s  %-64s  %s\n", t->name, src_rows, dst_rows, t->source_sum[0] ? t->source_sum : "-", verdict);
                if (!t->same && t->target_sum[0])
                        printf("%-28s %12s %12s  %-64s  %s\n", "", "", "", t->target_sum, "(target)");
        }
}

static int migrate_store(const char *from, const char *to, bool quiet) {
        _cleanup_free_ char *from_shown = store_shown(from), *to_shown = store_shown(to);
        if (streq(store_arg(from), store_arg(to))) {
                fprintf(stderr, "armada-admin: the source and the target are the same store '%s'.\n", from_shown);
                return EXIT_USAGE;
        }
        /* store_open() creates a missing SQLite file: a mistyped source
         * would be copied as an empty installation. */
        if (!is_postgresql(from) && access(store_arg(from), F_OK) < 0) {
                fprintf(stderr, "armada-admin: the source store '%s' does not exist.\n", from_shown);
                return EXIT_REFUSED;
        }
        if (!is_postgresql(to) && access(store_arg(to), F_OK) == 0) {
                fprintf(stderr, "armada-admin: the target store '%s' exists already: migrate-store creates a new one and never"
                                " overwrites a file.\n", to_shown);
                return EXIT_REFUSED;
        }
        StoreCopyReport seed = {0}, rep = {0};
        Store *src = NULL, *dst = NULL;
        bool dst_created = false;
        char err[512] = "";
        int rc = EXIT_REFUSED;
        if (store_open(store_arg(from), &src) < 0) {
                fprintf(stderr, "armada-admin: cannot open the source store '%s'.\n", from_shown);
                goto out;
        }
        if (store_copy_claim_source(src, err, sizeof err) < 0) {
                fprintf(stderr, "armada-admin: %s\n", err);
                goto out;
        }
        if (seed_counts(&seed) < 0) {
                fprintf(stderr, "armada-admin: cannot make a scratch store to learn what a new store holds.\n");
                goto out;
        }
        dst_created = !is_postgresql(to);
        if (store_open(store_arg(to), &dst) < 0) {
                fprintf(stderr, "armada-admin: cannot open the target store '%s' (is it reachable, and does the database"
                                " exist?).\n", to_shown);
                goto out;
        }
        if (store_copy(src, dst, &seed, &rep, err, sizeof err) < 0) {
                fprintf(stderr, "armada-admin: %s\n", err);
                goto out;
        }
        print_report(&rep, quiet);
        if (rep.ok) {
                printf("Copied %zu tables from '%s' to '%s': every row count and checksum agrees.\n", rep.n_tables, from_shown,
                       to_shown);
                rc = 0;
        } else {
                fprintf(stderr, "armada-admin: the copy in '%s' differs from '%s' (tables marked MISMATCH above).\n", to_shown,
                        from_shown);
                rc = EXIT_MISMATCH;
        }
out:
        store_copy_report_clear(&seed);
        store_copy_report_clear(&rep);
        store_free(dst);
        store_free(src);
        /* A new SQLite target this run made goes again when the copy was
         * refused or failed (its rows were rolled back; a later run would
         * refuse the file). One that differs stays, to be looked at. */
        if (rc == EXIT_REFUSED && dst_created)
                remove_sqlite(store_arg(to));
        return rc;
}

int main(int argc, char **argv) {
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? EXIT_USAGE : 0;
        }
        if (!streq(argv[1], "migrate-store")) {
                fprintf(stderr, "armada-admin: unknown command '%s'.\n", argv[1]);
                usage(stderr);
                return EXIT_USAGE;
        }
        static const struct option opts[] = {
                { "from", required_argument, NULL, 'f' },
                { "to", required_argument, NULL, 't' },
                { "quiet", no_argument, NULL, 'q' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {0},
        };
        const char *from = NULL, *to = NULL;
        bool quiet = false, verbose = false;
        int c;
        optind = 2;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (c) {
                case 'f': from = optarg; break;
                case 't': to = optarg; break;
                case 'q': quiet = true; break;
                case 'v': verbose = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        if (!from || !to || optind < argc) {
                fprintf(stderr, "armada-admin: migrate-store needs --from and --to.\n");
                usage(stderr);
                return EXIT_USAGE;
        }
        if (sodium_init() < 0) {
                fprintf(stderr, "armada-admin: cannot initialise libsodium.\n");
                return EXIT_REFUSED;
        }
        /* The store logs its own errors with what it was given (a URL may
         * carry a password): only with --verbose. The sentence printed here
         * names the store with the password masked. */
        log_set_level(verbose ? LOG_LEVEL_WARN : (LogLevel) (LOG_LEVEL_ERROR + 1));
        return migrate_store(from, to, quiet);
}
