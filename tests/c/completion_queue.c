/* Completion queues from C (ABI 1.7): a poll() loop of our own waits on two queues'
 * descriptors while tasks go to queue A, queue B (one by one and in mixed batches) and to the
 * engine's poll. Each task completes exactly once, at the queue it named and nowhere else, and as
 * often as the W1 oracle says. Then bad arguments are refused with messages, a freed queue's
 * handle is stale, and the shutdown sweep delivers to a queue. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <poll.h>
#include <string.h>

#define TASKS 30000u
#define P 0.12

static uint8_t seen[TASKS]; /* which destination took task i: 1 A, 2 B, 3 poll */

static uint64_t oracle_ok(void) {
    uint64_t ok = 0, i;
    for (i = 0; i < TASKS; i++) ok += !(oracle_fails(i, 0, P) && oracle_fails(i, 1, P) && oracle_fails(i, 2, P));
    return ok;
}

/* Where task i goes: A, B or poll (NULL), in turn. */
static metafed_completion_queue *dest(uint64_t i, metafed_completion_queue *a, metafed_completion_queue *b) {
    return i % 3 == 0 ? a : i % 3 == 1 ? b : NULL;
}

static uint64_t record(const metafed_completion *c, size_t n, uint8_t who, uint64_t *ok) {
    size_t i;
    for (i = 0; i < n; i++) {
        CHECK(c[i].id < TASKS);
        CHECK(seen[c[i].id] == 0); /* exactly once */
        CHECK((uint8_t)(c[i].id % 3 + 1) == who); /* at the destination it named */
        seen[c[i].id] = who;
        *ok += c[i].outcome == METAFED_OUTCOME_OK;
    }
    return n;
}

int main(void) {
    metafed_topology *t = NULL, *t2 = NULL;
    metafed_engine *e = NULL, *other = NULL;
    metafed_completion_queue *a = NULL, *b = NULL, *foreign = NULL, *gone = NULL;
    metafed_completion out[128];
    metafed_task batch[32];
    uint64_t tickets[32];
    metafed_shutdown_report report = {.struct_size = sizeof report};
    int32_t fa = -1, fb = -1;
    uint64_t sent = 0, done = 0, ok = 0, ticket = 0;
    size_t n = 0, i;
    const uint64_t want = oracle_ok();

    OK(metafed_topology_new_seed(P, &t));
    OK(metafed_engine_new(t, NULL, &e));
    OK(metafed_engine_completion_queue_new(e, &a));
    OK(metafed_engine_completion_queue_new(e, &b));
    OK(metafed_completion_queue_get_fd(a, &fa));
    OK(metafed_completion_queue_get_fd(b, &fb));
    CHECK(fa >= 0 && fb >= 0 && fa != fb);

    while (done < TASKS) {
        /* Submit a mixed batch (A, B, poll in turn: the library splits it by queue), one task
         * at a time every other round. */
        if (sent < TASKS) {
            size_t k = (sent / 32) % 2 == 0 ? 32 : 1, submitted = 0;
            if (k > TASKS - sent) k = (size_t)(TASKS - sent);
            for (i = 0; i < k; i++) {
                batch[i].struct_size = sizeof batch[i];
                OK(metafed_task_init(&batch[i]));
                batch[i].id = sent + i;
                batch[i].domains = 1ull << ((sent + i) % 3);
                batch[i].completion_queue = dest(sent + i, a, b);
            }
            if (k == 1) {
                metafed_status s = metafed_engine_submit(e, &batch[0], &tickets[0]);
                CHECK(s == METAFED_OK || s == METAFED_E_FULL);
                submitted = s == METAFED_OK;
            } else {
                metafed_status s = metafed_engine_submit_batch(e, batch, k, tickets, &submitted);
                CHECK(s == METAFED_OK || s == METAFED_E_FULL);
            }
            sent += submitted;
        }
        /* Collect: the engine's poll without waiting, then each readable queue. */
        out[0].struct_size = sizeof out[0];
        OK(metafed_engine_poll(e, out, 128, 0, &n));
        done += record(out, n, 3, &ok);
        {
            struct pollfd fds[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
            int r = poll(fds, 2, sent == TASKS ? 5 : 0);
            CHECK(r >= 0);
            if (fds[0].revents & POLLIN) {
                OK(metafed_completion_queue_take(a, out, 128, &n));
                done += record(out, n, 1, &ok);
            }
            if (fds[1].revents & POLLIN) {
                OK(metafed_completion_queue_take(b, out, 128, &n));
                done += record(out, n, 2, &ok);
            }
        }
    }
    CHECK(ok == want);
    /* Nothing more anywhere; an empty take says 0. */
    OK(metafed_completion_queue_take(a, out, 128, &n));
    CHECK(n == 0);
    {
        struct pollfd fds[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
        CHECK(poll(fds, 2, 0) == 0);
    }

    /* Bad arguments, refused with a message. */
    OK(metafed_topology_new_seed(0.0, &t2));
    OK(metafed_engine_new(t2, NULL, &other));
    OK(metafed_engine_completion_queue_new(other, &foreign));
    batch[0].struct_size = sizeof batch[0];
    OK(metafed_task_init(&batch[0]));
    batch[0].domains = 1;
    batch[0].completion_queue = foreign;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &batch[0], &ticket));
    CHECK(strstr(metafed_last_error(), "another engine") != NULL);
    batch[0].completion_queue = a;
    batch[0].flags = METAFED_TASK_WAITABLE;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &batch[0], &ticket));
    CHECK(strstr(metafed_last_error(), "WAITABLE") != NULL);
    batch[0].flags = 0;
    OK(metafed_engine_completion_queue_new(e, &gone));
    metafed_completion_queue_free(gone);
    batch[0].completion_queue = gone;
    FAILS(METAFED_E_HANDLE, metafed_engine_submit(e, &batch[0], &ticket));
    FAILS(METAFED_E_HANDLE, metafed_completion_queue_take(gone, out, 1, &n));
    FAILS(METAFED_E_NULL, metafed_completion_queue_take(a, out, 1, NULL));
    FAILS(METAFED_E_NULL, metafed_completion_queue_get_fd(a, NULL));
    FAILS(METAFED_E_NULL, metafed_engine_completion_queue_new(e, NULL));
    metafed_completion_queue_free(NULL);

    /* Tasks still in flight at the shutdown reach their queue. */
    batch[0].completion_queue = b;
    for (i = 0; i < 100; i++) {
        batch[0].id = i;
        OK(metafed_engine_submit_blocking(e, &batch[0], METAFED_FOREVER, &ticket));
    }
    OK(metafed_engine_shutdown(e, MS(1000), &report));
    {
        size_t got = 0;
        while (got < 100) {
            OK(metafed_completion_queue_take(b, out, 128, &n));
            CHECK(n > 0); /* after the shutdown, every completion has been delivered */
            got += n;
        }
        CHECK(got == 100);
    }

    metafed_completion_queue_free(a);
    metafed_completion_queue_free(b);
    metafed_completion_queue_free(foreign);
    metafed_engine_free(e);
    metafed_engine_free(other);
    metafed_topology_free(t);
    metafed_topology_free(t2);
    printf("completion queues: %u tasks to two queues and poll, each once where it named (%llu ok, as the oracle)\n",
           TASKS, (unsigned long long)ok);
    return 0;
}
