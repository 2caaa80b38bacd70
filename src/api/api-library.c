/* The library capability's REST resources. */
#include "api-priv.h"

const Route api_routes_library[] = {
        { NULL, NULL, NULL, false },
};
