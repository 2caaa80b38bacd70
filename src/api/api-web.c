/* The web capability's REST resources. */
#include "api-priv.h"

const Route api_routes_web[] = {
        { NULL, NULL, NULL, false },
};
