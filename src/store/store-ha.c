/* The ha capability's tables and SQL (see store.h for the conventions). */
#include "store.h"

const StoreMigration store_migrations_ha[] = {
        { NULL, NULL },
};
