/* The place capability's REST resources. */
#include "api-priv.h"

const Route api_routes_place[] = {
        { NULL, NULL, NULL, false },
};
