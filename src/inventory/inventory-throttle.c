/* Per-host throttles: at most N domain starts and N disk-heavy volume
 * operations (full copies, uploads, downloads) in flight on one host at
 * once. libvirtd forks a child for every QEMU it launches, and a hundred
 * forks at once make its fork-safety bugs likely (issue 15: a deploy of 100
 * clones wedged libvirtd); copies compete for the same disks. The rest wait
 * in FIFO order, each on a ticket in its host's queue, and say so in their
 * job's step; a job cancelled while it waits leaves the queue.
 *
 * HA restarts are served first (they join the queue ahead of every job) and
 * never wait longer than priority_wait_ms: after that they start anyway,
 * over the limit, because restarting protected VMs after a host failure
 * outranks sparing libvirtd, and a queue held by starts that never return
 * must not hold a failover with it.
 *
 * The limit is the host's own (max_parallel_starts, max_parallel_disk_ops)
 * or armadad's default; a waiting job re-reads it every round, so raising
 * it on a busy host lets the queue move at once. */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "inventory-priv.h"

#define THROTTLE_DEFAULT 4
#define WAIT_ROUND_MS 250

typedef struct Waiter {
        struct Waiter *next;
        bool priority;
} Waiter;

struct ThrottleGate {
        int64_t host_id;
        InventorySlot kind;
        int in_flight;
        Waiter *head;
        struct ThrottleGate *next;
};

static const char *const SLOT_WORDS[] = { "start slot", "disk-operation slot" };

void throttle_init(Inventory *inv) {
        if (inv->cfg.max_parallel_starts <= 0) inv->cfg.max_parallel_starts = THROTTLE_DEFAULT;
        if (inv->cfg.max_parallel_disk_ops <= 0) inv->cfg.max_parallel_disk_ops = THROTTLE_DEFAULT;
        if (inv->cfg.priority_wait_ms <= 0) inv->cfg.priority_wait_ms = 60000;
        pthread_mutex_init(&inv->throttle_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&inv->throttle_cond, &ca);
        pthread_condattr_destroy(&ca);
}

void throttle_free(Inventory *inv) {
        for (ThrottleGate *g = inv->gates, *next; g; g = next) {
                next = g->next;
                free(g);
        }
        inv->gates = NULL;
        pthread_mutex_destroy(&inv->throttle_lock);
        pthread_cond_destroy(&inv->throttle_cond);
}

/* Called with the lock held. Gates live until inventory_free(). */
static ThrottleGate *gate_get(Inventory *inv, int64_t host_id, InventorySlot kind) {
        for (ThrottleGate *g = inv->gates; g; g = g->next)
                if (g->host_id == host_id && g->kind == kind)
                        return g;
        ThrottleGate *g = xcalloc(1, sizeof *g);
        g->host_id = host_id;
        g->kind = kind;
        g->next = inv->gates;
        inv->gates = g;
        return g;
}

static int limit_of(Inventory *inv, const StoreHost *h, InventorySlot kind) {
        int own = kind == INVENTORY_SLOT_START ? h->max_parallel_starts : h->max_parallel_disk_ops;
        int dflt = kind == INVENTORY_SLOT_START ? inv->cfg.max_parallel_starts : inv->cfg.max_parallel_disk_ops;
        return own > 0 ? own : dflt > 0 ? dflt : THROTTLE_DEFAULT;
}

/* Priority waiters go behind the other priority waiters, ahead of the rest. */
static void enqueue(ThrottleGate *g, Waiter *w) {
        Waiter **p = &g->head;
        if (w->priority)
                while (*p && (*p)->priority)
                        p = &(*p)->next;
        else
                while (*p)
                        p = &(*p)->next;
        w->next = *p;
        *p = w;
}

static void dequeue(ThrottleGate *g, Waiter *w) {
        for (Waiter **p = &g->head; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        return;
                }
}

static int ahead_of(const ThrottleGate *g, const Waiter *w) {
        int n = 0;
        for (const Waiter *x = g->head; x && x != w; x = x->next)
                n++;
        return n;
}

/* The test hosts' stand-in for a start that blocks inside libvirtd (see
 * InventoryConfig.test_hold_starts): waits, without looking at cancel
 * requests, while the file names the VM on a line of its own. */
static void test_hold(Inventory *inv, const StoreHost *h, const char *vm_name) {
        if (!inv->cfg.test_hold_starts || !inv->cfg.allow_test_hosts || !vm_name || !streq(h->domain_type, "test"))
                return;
        bool logged = false;
        for (;;) {
                _cleanup_free_ char *text = NULL;
                bool held = false;
                if (file_read_all(inv->cfg.test_hold_starts, &text, NULL) == 0) {
                        char *save = NULL;
                        for (char *line = strtok_r(text, "\n", &save); line && !held; line = strtok_r(NULL, "\n", &save))
                                held = streq(line, vm_name);
                }
                if (!held)
                        break;
                if (!logged)
                        log_info("test hold: the start of VM '%s' on host '%s' waits while '%s' names it", vm_name, h->name,
                                 inv->cfg.test_hold_starts);
                logged = true;
                struct timespec ts = { 0, 50 * 1000000 };
                nanosleep(&ts, NULL); /* polling the file a test edits: the condition being waited for */
        }
}

int inventory_slot_take(Inventory *inv, const StoreHost *h, InventorySlot kind, const char *vm_name, bool priority,
                        JobCtx *ctx) {
        assert(kind == INVENTORY_SLOT_START || kind == INVENTORY_SLOT_DISK);
        StoreHost cur = *h;
        int limit = limit_of(inv, &cur, kind);
        int64_t started = mono_ms();
        Waiter w = { .priority = priority };
        int shown_in_flight = -1, shown_ahead = -1;
        pthread_mutex_lock(&inv->throttle_lock);
        ThrottleGate *g = gate_get(inv, h->id, kind);
        if (g->in_flight < limit && !g->head) {
                g->in_flight++;
                pthread_mutex_unlock(&inv->throttle_lock);
                goto taken;
        }
        enqueue(g, &w);
        for (;;) {
                bool late = priority && mono_ms() - started >= inv->cfg.priority_wait_ms;
                if ((g->head == &w && g->in_flight < limit) || late) {
                        dequeue(g, &w);
                        g->in_flight++;
                        /* The next one may fit as well (a raised limit). */
                        pthread_cond_broadcast(&inv->throttle_cond);
                        pthread_mutex_unlock(&inv->throttle_lock);
                        if (late)
                                log_warn("host '%s': a HA restart of VM '%s' waited %d ms for a %s; it goes ahead over the limit"
                                         " of %d", h->name, vm_name ? vm_name : "?", inv->cfg.priority_wait_ms, SLOT_WORDS[kind], limit);
                        break;
                }
                int in_flight = g->in_flight, ahead = ahead_of(g, &w);
                pthread_mutex_unlock(&inv->throttle_lock);
                if (ctx && (in_flight != shown_in_flight || ahead != shown_ahead)) {
                        job_progress(ctx, 0, "waiting for a %s on host '%s' (%d in flight, limit %d, %d ahead)", SLOT_WORDS[kind],
                                     h->name, in_flight, limit, ahead);
                        shown_in_flight = in_flight;
                        shown_ahead = ahead;
                }
                bool cancelled = ctx && job_cancel_requested(ctx);
                if (store_host_get(inv->st, h->id, &cur) == 0)
                        limit = limit_of(inv, &cur, kind);
                pthread_mutex_lock(&inv->throttle_lock);
                if (cancelled) {
                        dequeue(g, &w);
                        pthread_cond_broadcast(&inv->throttle_cond);
                        pthread_mutex_unlock(&inv->throttle_lock);
                        return job_fail(ctx, -ECANCELED, "Cancelled while waiting for a %s on host '%s'.", SLOT_WORDS[kind], h->name);
                }
                if (g->head == &w && g->in_flight < limit)
                        continue;
                struct timespec ts = time_after_ms(CLOCK_MONOTONIC, WAIT_ROUND_MS);
                pthread_cond_timedwait(&inv->throttle_cond, &inv->throttle_lock, &ts);
        }
        if (ctx)
                job_progress(ctx, 0, "took a %s on host '%s' after %lld ms in the queue", SLOT_WORDS[kind], h->name,
                             (long long) (mono_ms() - started));
taken:
        if (kind == INVENTORY_SLOT_START)
                test_hold(inv, h, vm_name);
        return 0;
}

void inventory_slot_give(Inventory *inv, int64_t host_id, InventorySlot kind) {
        pthread_mutex_lock(&inv->throttle_lock);
        ThrottleGate *g = gate_get(inv, host_id, kind);
        assert(g->in_flight > 0);
        if (g->in_flight > 0)
                g->in_flight--;
        pthread_cond_broadcast(&inv->throttle_cond);
        pthread_mutex_unlock(&inv->throttle_lock);
}

int throttle_waiting(Inventory *inv, int64_t host_id, InventorySlot kind) {
        pthread_mutex_lock(&inv->throttle_lock);
        int n = ahead_of(gate_get(inv, host_id, kind), NULL);
        pthread_mutex_unlock(&inv->throttle_lock);
        return n;
}
