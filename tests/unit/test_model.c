/* Unit tests for model/: the store's rows hook (commit, rollback, foreign-key
 * actions) and the read model it keeps current. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/model.h"

static char dir[] = "/tmp/armada-test-model-XXXXXX";

static int setup(void **state) {
        static char path[256];
        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof path, "%s/t.db", dir);
        Store *st;
        if (store_open(path, &st) < 0)
                return -1;
        *state = st;
        return 0;
}

static int teardown(void **state) {
        store_free(*state);
        const char *const sfx[] = { "", "-wal", "-shm" };
        for (size_t i = 0; i < 3; i++) {
                char p[300];
                snprintf(p, sizeof p, "%s/t.db%s", dir, sfx[i]);
                unlink(p);
        }
        rmdir(dir);
        return 0;
}

/* ---- the store's rows hook ---- */

static StoreRowChange seen[64];
static size_t n_seen, n_calls;

static void record(void *userdata, const StoreRowChange *c, size_t n) {
        (void) userdata;
        n_calls++;
        for (size_t i = 0; i < n && n_seen < 64; i++)
                seen[n_seen++] = c[i];
}

static bool saw(StoreTable t, int64_t id) {
        for (size_t i = 0; i < n_seen; i++)
                if (seen[i].table == t && seen[i].id == id)
                        return true;
        return false;
}

static int64_t add_vm(Store *st, const char *name, int64_t host_id, int64_t owner_id) {
        StoreVm vm = { .host_id = host_id, .owner_id = owner_id, .cpus = 1, .memory_mib = 64 };
        uuid_generate(vm.uuid);
        snprintf(vm.name, sizeof vm.name, "%s", name);
        snprintf(vm.state, sizeof vm.state, "stopped");
        int64_t id = 0;
        assert_int_equal(store_vm_insert(st, &vm, &id), 0);
        return id;
}

static void test_rows_hook(void **state) {
        Store *st = *state;
        store_set_rows_hook(st, record, NULL);
        int64_t g, h, u, v;
        n_seen = n_calls = 0;
        assert_int_equal(store_group_create_path(st, "hk", &g, NULL), 0);
        assert_true(saw(STORE_TABLE_HOST_GROUP, g));
        assert_int_equal(n_calls, 1);
        assert_int_equal(store_host_insert(st, "hk-h", "test:///default", g, "p", "/x", &h), 0);
        assert_int_equal(store_user_insert(st, "hk-u", "x", "self-service", &u), 0);
        v = add_vm(st, "hk-v", h, u);
        assert_true(saw(STORE_TABLE_HOST, h));
        assert_true(saw(STORE_TABLE_VM, v));

        /* Inside a transaction: nothing until the commit, then once. */
        n_seen = n_calls = 0;
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_vm_set_state(st, v, "running"), 1);
        assert_int_equal(store_host_set_state(st, h, "connected", NULL), 1);
        assert_int_equal(n_calls, 0);
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(n_calls, 1);
        assert_int_equal(n_seen, 2);
        assert_true(saw(STORE_TABLE_HOST, h) && saw(STORE_TABLE_VM, v));

        /* A rollback tells nothing, not even at the next commit. */
        n_seen = n_calls = 0;
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_vm_set_state(st, v, "paused"), 1);
        store_rollback(st);
        assert_int_equal(store_begin(st), 0);
        assert_int_equal(store_commit(st), 0);
        assert_int_equal(n_calls, 0);

        /* A disk is part of its VM. */
        StoreDisk d = { .size_bytes = 1 };
        snprintf(d.target, sizeof d.target, "vda");
        snprintf(d.path, sizeof d.path, "/x/vda");
        assert_int_equal(store_vm_disk_add(st, v, &d), 0);
        assert_true(saw(STORE_TABLE_VM, v));

        /* Foreign-key actions: deleting the user sets the VM's owner to NULL
         * (ON DELETE SET NULL), and the hook hears of that VM. */
        n_seen = n_calls = 0;
        assert_int_equal(store_user_delete(st, u), 0);
        assert_true(saw(STORE_TABLE_VM, v));
        assert_int_equal(n_calls, 1);
        store_set_rows_hook(st, NULL, NULL);
}

/* ---- the model ---- */

static const ModelRow *find(Model *m, bool vm, int64_t id, ModelSnap **keep) {
        *keep = model_snap(m);
        return model_row_find(vm ? (*keep)->vms : (*keep)->hosts, id);
}

static void test_model_follows(void **state) {
        Store *st = *state;
        int64_t g, h, u, v1, v2;
        assert_int_equal(store_group_create_path(st, "mf/a", &g, NULL), 0);
        assert_int_equal(store_host_insert(st, "mf-h", "test:///default", g, "p", "/x", &h), 0);
        assert_int_equal(store_user_insert(st, "mf-u", "x", "self-service", &u), 0);
        v1 = add_vm(st, "mf-b", h, u);
        Model *m = NULL;
        assert_int_equal(model_new(st, &m), 0);

        ModelSnap *s0 = model_snap(m);
        const ModelRow *r = model_row_find(s0->vms, v1);
        assert_non_null(r);
        assert_string_equal(r->name, "mf-b");
        assert_int_equal(r->group_id, g);
        assert_int_equal(r->owner_id, u);
        /* Exactly the store's JSON. */
        _cleanup_json_ json_t *truth = NULL;
        assert_int_equal(store_vm_get_json(st, v1, &truth), 0);
        assert_true(json_equal(truth, r->json));
        const ModelRow *hr = model_row_find(s0->hosts, h);
        assert_non_null(hr);
        assert_int_equal(jget_int(hr->json, "n_vms"), 1);
        uint64_t vgen = s0->vms->generation, hgen = s0->hosts->generation;

        /* A new VM: in the model at once, in name order, and its host's
         * VM count follows; the old snapshot is untouched. */
        v2 = add_vm(st, "mf-a", h, 0);
        ModelSnap *s1 = model_snap(m);
        assert_int_equal(s1->vms->n, s0->vms->n + 1);
        assert_non_null(model_row_find(s1->vms, v2));
        assert_null(model_row_find(s0->vms, v2));
        size_t at = model_name_after(s1->vms, "mf-a") - 1;
        assert_string_equal(s1->vms->by_name[at]->name, "mf-a");
        assert_string_equal(s1->vms->by_name[at + 1]->name, "mf-b");
        assert_int_equal(jget_int(model_row_find(s1->hosts, h)->json, "n_vms"), 2);
        assert_true(s1->vms->generation != vgen && s1->hosts->generation != hgen);

        /* A cascade (ON DELETE SET NULL) reaches the model. */
        assert_int_equal(store_user_delete(st, u), 0);
        ModelSnap *s2 = NULL;
        r = find(m, true, v1, &s2);
        assert_int_equal(r->owner_id, 0);
        assert_true(json_is_null(json_object_get(r->json, "owner_name")));
        model_snap_unref(s2);

        /* A group renamed: its hosts' group_path follows; the chain is the
         * store's. */
        int64_t parent;
        assert_int_equal(store_group_find(st, "mf", &parent), 0);
        assert_int_equal(store_group_rename(st, parent, "mg"), 0);
        r = find(m, false, h, &s2);
        assert_string_equal(jget_str(r->json, "group_path"), "mg/a");
        int64_t chain[8], want[8];
        size_t n = model_group_chain(s2, g, chain, 8);
        assert_int_equal(n, (size_t) store_group_chain(st, g, want, 8));
        assert_memory_equal(chain, want, n * sizeof *chain);
        assert_int_equal(model_group_chain(s2, 987654, chain, 8), 0);
        model_snap_unref(s2);

        /* Disks and states. */
        StoreDisk d = { .size_bytes = 5 };
        snprintf(d.target, sizeof d.target, "vda");
        snprintf(d.path, sizeof d.path, "/x/a");
        assert_int_equal(store_vm_disk_add(st, v1, &d), 0);
        assert_int_equal(store_vm_set_state(st, v2, "running"), 1);
        r = find(m, true, v1, &s2);
        assert_int_equal(json_array_size(json_object_get(r->json, "disks")), 1);
        assert_string_equal(model_row_find(s2->vms, v2)->state, "running");
        model_snap_unref(s2);

        /* Deleting the host with its VMs empties both tables of them. */
        assert_int_equal(store_host_delete(st, h, true), 0);
        s2 = model_snap(m);
        assert_null(model_row_find(s2->hosts, h));
        assert_null(model_row_find(s2->vms, v1));
        assert_null(model_row_find(s2->vms, v2));
        assert_int_equal(s2->vms->n, s0->vms->n - 1);
        model_snap_unref(s2);

        /* What the model holds is what a fresh load gives. */
        Model *fresh = NULL;
        model_free(m);
        assert_int_equal(model_new(st, &fresh), 0);
        ModelSnap *a = model_snap(fresh);
        assert_int_equal(a->vms->n, s1->vms->n - 2);
        model_snap_unref(a);
        model_snap_unref(s0);
        model_snap_unref(s1);
        model_free(fresh);
}

static void count_cb(void *userdata, const char *state, size_t n) {
        if (streq(state, "running"))
                *(size_t *) userdata = n;
}

static void test_model_counts(void **state) {
        Store *st = *state;
        int64_t h;
        assert_int_equal(store_host_insert(st, "mc-h", "test:///default", STORE_ROOT_GROUP_ID, "p", "/x", &h), 0);
        Model *m = NULL;
        assert_int_equal(model_new(st, &m), 0);
        size_t before = 0;
        ModelSnap *s = model_snap(m);
        model_count_states(s->vms, count_cb, &before);
        model_snap_unref(s);
        for (int i = 0; i < 3; i++) {
                char name[32];
                snprintf(name, sizeof name, "mc-%d", i);
                int64_t v = add_vm(st, name, h, 0);
                assert_int_equal(store_vm_set_state(st, v, "running"), 1);
        }
        s = model_snap(m);
        size_t running = 0;
        model_count_states(s->vms, count_cb, &running);
        assert_int_equal(running, before + 3);
        model_snap_unref(s);
        ModelStats stats;
        model_stats(m, &stats);
        assert_true(stats.batches >= 6);
        model_free(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows_hook),
                cmocka_unit_test(test_model_follows),
                cmocka_unit_test(test_model_counts),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
