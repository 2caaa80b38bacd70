/* The monitor capability's tables and SQL (see store.h for the conventions). */
#include "store.h"

const StoreMigration store_migrations_monitor[] = {
        { NULL, NULL },
};
