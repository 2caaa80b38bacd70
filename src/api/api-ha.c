/* The ha capability's REST resources. */
#include "api-priv.h"

const Route api_routes_ha[] = {
        { NULL, NULL, NULL, false },
};
