/* The place capability's tables and SQL (see store.h for the conventions). */
#include "store.h"

const StoreMigration store_migrations_place[] = {
        { NULL, NULL },
};
