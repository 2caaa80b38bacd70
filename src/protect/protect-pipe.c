/* protect-pipe: items decoded on a small pool of threads ahead of one
 * consumer that takes them in order (a restore: chunks read, decompressed
 * and checked ahead of the writer).
 *
 * A ring of slots, one item each, in one allocation: item i goes to slot
 * i % slots, so items the consumer takes together lie side by side in
 * memory and can be written with one call. Workers claim items in order
 * (a shared counter) and never more than the ring holds past what the
 * consumer has released: the queue is bounded and the order of writes is
 * the order of the items whatever order the workers finish in. After an
 * item fails no worker claims another; the items before it are all
 * claimed already, so the consumer gets each of them and then the
 * failure. */
#include "protect-priv.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define PIPE_WORKERS_MAX 16u

struct RestorePipe {
        RestorePipeDecode decode;
        void *userdata;
        uint64_t n_items;
        size_t item_cap;
        unsigned slots;
        uint8_t *ring;          /* slots * item_cap bytes */
        size_t *len;            /* per slot */
        int *err;               /* per slot */
        bool *ready;            /* per slot */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t next_claim;    /* the next item a worker takes */
        uint64_t taken;         /* items handed to the consumer (first of its batch) */
        uint64_t released;      /* items whose slots are free again */
        bool stop;              /* a failure was seen, or the pipe is being freed */
        unsigned n_threads;
        pthread_t threads[PIPE_WORKERS_MAX];
        struct PipeWorker {
                RestorePipe *p;
                unsigned id;
        } workers[PIPE_WORKERS_MAX];
};

static void *pipe_worker(void *userdata) {
        struct PipeWorker *w = userdata;
        RestorePipe *p = w->p;
        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->stop && p->next_claim < p->n_items && p->next_claim >= p->released + p->slots)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stop || p->next_claim >= p->n_items)
                        break;
                uint64_t i = p->next_claim++;
                unsigned slot = (unsigned) (i % p->slots);
                pthread_mutex_unlock(&p->lock);
                size_t len = 0;
                int r = p->decode(p->userdata, w->id, i, p->ring + (size_t) slot * p->item_cap, p->item_cap, &len);
                pthread_mutex_lock(&p->lock);
                p->len[slot] = r < 0 ? 0 : len;
                p->err[slot] = r < 0 ? r : 0;
                p->ready[slot] = true;
                if (r < 0)
                        p->stop = true;
                pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int restore_pipe_start(uint64_t n_items, size_t item_cap, unsigned workers, unsigned slots, RestorePipeDecode decode,
                       void *userdata, RestorePipe **ret) {
        if (!decode || !ret || item_cap == 0 || workers == 0 || workers > PIPE_WORKERS_MAX || slots < workers)
                return -EINVAL;
        RestorePipe *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        *p = (RestorePipe) { .decode = decode, .userdata = userdata, .n_items = n_items, .item_cap = item_cap,
                             .slots = slots, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        p->ring = malloc((size_t) slots * item_cap);
        p->len = calloc(slots, sizeof *p->len);
        p->err = calloc(slots, sizeof *p->err);
        p->ready = calloc(slots, sizeof *p->ready);
        if (!p->ring || !p->len || !p->err || !p->ready) {
                restore_pipe_free(p);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < workers; i++) {
                p->workers[i] = (struct PipeWorker) { .p = p, .id = i };
                int r = -pthread_create(&p->threads[i], NULL, pipe_worker, &p->workers[i]);
                if (r < 0) {
                        restore_pipe_free(p);
                        return r;
                }
                p->n_threads++;
        }
        *ret = p;
        return 0;
}

int restore_pipe_take(RestorePipe *p, size_t max_bytes, RestoreBatch *ret) {
        pthread_mutex_lock(&p->lock);
        /* Slots of an earlier batch not released: give them back first. */
        assert(p->released == p->taken);
        *ret = (RestoreBatch) { .first = p->taken };
        if (p->taken >= p->n_items) {
                pthread_mutex_unlock(&p->lock);
                return 0;
        }
        unsigned slot = (unsigned) (p->taken % p->slots);
        while (!p->ready[slot])
                pthread_cond_wait(&p->cond, &p->lock);
        int r = p->err[slot];
        if (r < 0) {
                pthread_mutex_unlock(&p->lock);
                return r;
        }
        /* The first item, and those after it already decoded, up to
         * max_bytes and the ring's end (so the batch is contiguous). */
        size_t n = 0, bytes = 0;
        for (unsigned s = slot; s < p->slots && p->taken + n < p->n_items && p->ready[s] && p->err[s] == 0; s++) {
                if (n > 0 && bytes + p->item_cap > max_bytes)
                        break;
                bytes += p->item_cap;
                n++;
        }
        ret->n = n;
        ret->buf = p->ring + (size_t) slot * p->item_cap;
        ret->stride = p->item_cap;
        ret->len = p->len + slot;
        p->taken += n;
        pthread_mutex_unlock(&p->lock);
        return 0;
}

void restore_pipe_release(RestorePipe *p) {
        pthread_mutex_lock(&p->lock);
        for (uint64_t i = p->released; i < p->taken; i++)
                p->ready[i % p->slots] = false;
        p->released = p->taken;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

RestorePipe *restore_pipe_free(RestorePipe *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p->ring);
        free(p->len);
        free(p->err);
        free(p->ready);
        free(p);
        return NULL;
}
