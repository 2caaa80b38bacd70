/* Lending live connections to the monitor (see inventory-monitor.h). */
#include "inventory-monitor.h"

#include <stdatomic.h>
#include "inventory-priv.h"

int inventory_each_connection(Inventory *inv, InventoryConnFn fn, void *userdata) {
        Link **links = NULL;
        size_t n = 0, cap = 0;
        pthread_mutex_lock(&inv->lock);
        for (size_t b = 0; b < INVENTORY_LINK_BUCKETS; b++) {
                for (Link *l = inv->links[b]; l; l = l->next) {
                        if (atomic_load(&l->dead))
                                continue;
                        if (n == cap) {
                                cap = cap ? cap * 2 : 64;
                                links = xrealloc(links, cap * sizeof *links);
                        }
                        l->refs++;
                        links[n++] = l;
                }
        }
        pthread_mutex_unlock(&inv->lock);
        int visited = 0;
        for (size_t i = 0; i < n; i++) {
                if (!atomic_load(&links[i]->dead) && hv_conn_alive(links[i]->conn)) {
                        fn(userdata, links[i]->host_id, links[i]->conn);
                        visited++;
                }
                link_release(inv, links[i]);
        }
        free(links);
        return visited;
}
