/* Calls that may never return. A libvirt call waits for its answer for as
 * long as the connection lives, and a connection to a daemon that accepts
 * the socket but runs nothing (SIGSTOPped, or its workers wedged) lives for
 * ever: keepalive only starts once virConnectOpen has returned, and answers
 * while workers hang. hv_run_bounded runs such a call on a thread of its own
 * and waits for it up to a deadline; past it, the caller goes on with
 * -ETIMEDOUT and the thread, holding nothing but the call's own data, frees
 * that data whenever the call returns. */
#include "hv-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hv.h"

typedef struct Bounded {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        bool abandoned;
        bool cancelled;
        /* On the list of waits hv_abandon_calls() wakes (under waits_lock). */
        struct Bounded *prev, *next;
        HvBoundedRun run;
        HvBoundedDrop drop;
        void *data;
        /* The worker's hv_last_error(), handed to the caller's thread. */
        char error[1024];
        char detail[2048];
} Bounded;

/* Every wait in progress, so that shutdown can end them all at once. Lock
 * order: waits_lock, then a Bounded's lock. */
static pthread_mutex_t waits_lock = PTHREAD_MUTEX_INITIALIZER;
static Bounded *waits;
static atomic_bool calls_abandoned;

static void waits_add(Bounded *b) {
        pthread_mutex_lock(&waits_lock);
        b->next = waits;
        if (waits)
                waits->prev = b;
        waits = b;
        pthread_mutex_unlock(&waits_lock);
}

static void waits_remove(Bounded *b) {
        pthread_mutex_lock(&waits_lock);
        if (b->prev)
                b->prev->next = b->next;
        else
                waits = b->next;
        if (b->next)
                b->next->prev = b->prev;
        b->prev = b->next = NULL;
        pthread_mutex_unlock(&waits_lock);
}

void hv_abandon_calls(void) {
        atomic_store(&calls_abandoned, true);
        pthread_mutex_lock(&waits_lock);
        for (Bounded *b = waits; b; b = b->next) {
                pthread_mutex_lock(&b->lock);
                b->cancelled = true;
                pthread_cond_signal(&b->cond);
                pthread_mutex_unlock(&b->lock);
        }
        pthread_mutex_unlock(&waits_lock);
}

bool hv_calls_abandoned(void) {
        return atomic_load(&calls_abandoned);
}

static void bounded_free(Bounded *b) {
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        free(b);
}

static void *bounded_main(void *arg) {
        Bounded *b = arg;
        b->run(b->data);
        pthread_mutex_lock(&b->lock);
        snprintf(b->error, sizeof b->error, "%s", hv_last_error());
        snprintf(b->detail, sizeof b->detail, "%s", hv_last_error_detail());
        b->done = true;
        bool abandoned = b->abandoned;
        pthread_cond_signal(&b->cond);
        pthread_mutex_unlock(&b->lock);
        /* Not abandoned: the caller frees b once it sees done. */
        if (abandoned) {
                b->drop(b->data);
                bounded_free(b);
        }
        return NULL;
}

int hv_run_bounded(unsigned deadline_ms, HvBoundedRun run, HvBoundedDrop drop, void *data) {
        Bounded *b = xcalloc(1, sizeof *b);
        pthread_mutex_init(&b->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&b->cond, &ca);
        pthread_condattr_destroy(&ca);
        b->run = run;
        b->drop = drop;
        b->data = data;

        pthread_attr_t attr;
        pthread_t thread;
        int r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = pthread_create(&thread, &attr, bounded_main, b);
                pthread_attr_destroy(&attr);
        }
        if (r != 0) {
                /* No thread to spare: run it here, unbounded, rather than not at all. */
                bounded_free(b);
                run(data);
                return 0;
        }

        waits_add(b);
        /* Shutdown may have begun between the check above and the add. */
        if (atomic_load(&calls_abandoned)) {
                pthread_mutex_lock(&b->lock);
                b->cancelled = true;
                pthread_mutex_unlock(&b->lock);
        }
        struct timespec until = time_after_ms(CLOCK_MONOTONIC, deadline_ms);
        pthread_mutex_lock(&b->lock);
        while (!b->done && !b->cancelled)
                if (pthread_cond_timedwait(&b->cond, &b->lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&b->lock);
        /* Off the list before b may become the worker's to free. */
        waits_remove(b);
        pthread_mutex_lock(&b->lock);
        if (!b->done) {
                bool cancelled = b->cancelled;
                b->abandoned = true;
                pthread_mutex_unlock(&b->lock);
                return cancelled ? -ECANCELED : -ETIMEDOUT;
        }
        pthread_mutex_unlock(&b->lock);
        hv_set_error("%s", b->error);
        hv_set_error_detail("%s", b->detail);
        bounded_free(b);
        return 0;
}
