/* The monitor capability's REST resources. */
#include "api-priv.h"

const Route api_routes_monitor[] = {
        { NULL, NULL, NULL, false },
};
