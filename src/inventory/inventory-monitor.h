/* inventory-monitor: lends the monitor the inventory's live libvirt
 * connections, so that collectors read each host through the same
 * connection the inventory keeps (one per host, with keepalive; for
 * libvirt's test driver the state lives per connection, so a second one
 * would see another "host"). */
#pragma once

#include <stdint.h>
#include "inventory.h"
#include "hv/hv.h"

/* Called once per connected host. conn stays valid for the call only. */
typedef void (*InventoryConnFn)(void *userdata, int64_t host_id, HvConn *conn);

/* Calls fn for every host whose connection is alive now, one after the
 * other in the calling thread, without the inventory lock held (a reference
 * keeps each connection open meanwhile). Never connects: hosts without a
 * live link are skipped (the inventory's own monitor reconnects them).
 * Returns the number of hosts visited. */
int inventory_each_connection(Inventory *inv, InventoryConnFn fn, void *userdata);
