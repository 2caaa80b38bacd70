/* protect-restore: a recovery point back into a VM (job vm.restore). */
#include "protect-priv.h"

#include <errno.h>

void protect_restore_register_jobs(Jobs *jobs, Inventory *inv) {
        (void) jobs, (void) inv;
}

int protect_backup_restore(Store *st, Jobs *jobs, const OpCaller *c, const ProtectRestoreSpec *spec, json_t **ret, OpError *err) {
        (void) st, (void) jobs, (void) c, (void) spec, (void) ret;
        return op_fail(err, 501, "internal", NULL, "Restore is not available yet.");
}
