/* Faults injected from C callbacks (failures, "raised", unknown return codes, a slow isolated
 * agent), a completion callback, and a shutdown while callbacks are running: every accepted
 * ticket completes exactly once. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <pthread.h>
#include <string.h>
#include <time.h>

#define TASKS 20000u

static int32_t flaky(void *user_data, const metafed_request *req, metafed_response *resp) {
    (void)user_data;
    if (oracle_fails(req->task_id, req->attempt, 0.2)) {
        resp->code = 42;
        return METAFED_HANDLER_ERROR;
    }
    resp->value = 1;
    return METAFED_HANDLER_OK;
}

static int32_t raises(void *user_data, const metafed_request *req, metafed_response *resp) {
    (void)user_data;
    (void)resp;
    return req->task_id % 2 ? METAFED_HANDLER_RAISED : 7; /* 7 is not a valid return code */
}

static int32_t slow(void *user_data, const metafed_request *req, metafed_response *resp) {
    struct timespec ts = {0, 200000}; /* 0.2 ms: callbacks are running when shutdown comes */
    (void)user_data;
    (void)req;
    nanosleep(&ts, NULL);
    resp->value = 2;
    return METAFED_HANDLER_OK;
}

static uint64_t callback_count = 0;
static void on_complete(void *user_data, const metafed_completion *c) {
    (void)user_data;
    CHECK(c->struct_size == sizeof(metafed_completion));
    __atomic_fetch_add(&callback_count, 1, __ATOMIC_RELAXED);
}

static metafed_topology *make_topology(void) {
    metafed_topology *t = NULL;
    uint16_t d;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "Flaky", &d));
    OK(metafed_topology_add_callback_agent(t, d, "a", flaky, NULL, NULL, 0, NULL));
    OK(metafed_topology_add_callback_agent(t, d, "b", flaky, NULL, NULL, 0, NULL));
    OK(metafed_topology_add_callback_agent(t, d, "bad", raises, NULL, NULL, 0, NULL));
    OK(metafed_topology_add_domain(t, "Slow", &d));
    OK(metafed_topology_add_callback_agent(t, d, "s1", slow, NULL, NULL, METAFED_AGENT_ISOLATED, NULL));
    OK(metafed_topology_add_callback_agent(t, d, "s2", slow, NULL, NULL, 0, NULL));
    return t;
}

struct shutdown_arg {
    metafed_engine *engine;
    metafed_shutdown_report report;
};

static void *shutdown_soon(void *p) {
    struct shutdown_arg *a = (struct shutdown_arg *)p;
    struct timespec ts = {0, 20000000}; /* let the run get going */
    nanosleep(&ts, NULL);
    a->report.struct_size = sizeof a->report;
    OK(metafed_engine_shutdown(a->engine, MS(5), &a->report));
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    static uint64_t tickets[TASKS * 4];
    static uint64_t seen[TASKS * 4];
    static metafed_completion out[512];
    metafed_topology *topo = make_topology();
    metafed_engine *engine = NULL;
    metafed_engine_config cfg = {.struct_size = sizeof cfg};
    struct shutdown_arg arg;
    pthread_t th;
    size_t accepted, nseen = 0, got, i;
    int saw_invalid = 0, saw_raised = 0, saw_error = 0;
    uint64_t rejected = 0;

    /* 1. Poll delivery, shutdown mid-run from another thread. */
    OK(metafed_engine_config_init(&cfg));
    cfg.max_in_flight = 256;
    OK(metafed_engine_new(topo, &cfg, &engine));
    arg.engine = engine;
    CHECK(pthread_create(&th, NULL, shutdown_soon, &arg) == 0);
    /* Collect on this thread between submissions so the engine never stays full. */
    {
        size_t n = 0;
        for (;;) {
            metafed_task t;
            metafed_status s;
            memset(&t, 0, sizeof t);
            t.struct_size = sizeof t;
            t.id = n;
            t.domains = n % 4 == 0 ? 3 : (n % 2 ? 1 : 2);
            s = metafed_engine_submit(engine, &t, &tickets[n]);
            if (s == METAFED_E_SHUTTING_DOWN || n == TASKS * 4) break;
            if (s == METAFED_OK) n++;
            else CHECK(s == METAFED_E_FULL);
            out[0].struct_size = sizeof out[0];
            OK(metafed_engine_poll(engine, out, 512, 0, &got));
            for (i = 0; i < got; i++) seen[nseen++] = out[i].ticket;
        }
        accepted = n;
    }
    CHECK(pthread_join(th, NULL) == 0);
    do {
        out[0].struct_size = sizeof out[0];
        OK(metafed_engine_poll(engine, out, 512, 0, &got));
        for (i = 0; i < got; i++) {
            const metafed_completion *c = &out[i];
            uint32_t f;
            seen[nseen++] = c->ticket;
            rejected += c->reason == METAFED_REASON_SHUTTING_DOWN;
            for (f = 0; f < c->failures_len; f++) {
                saw_invalid |= c->failures[f].kind == METAFED_FAILURE_INVALID_REPLY && c->failures[f].code == 7;
                saw_raised |= c->failures[f].kind == METAFED_FAILURE_PANICKED;
                saw_error |= c->failures[f].kind == METAFED_FAILURE_ERROR && c->failures[f].code == 42;
            }
        }
    } while (got > 0);
    printf("faults from C: %zu accepted, %zu completed, shutdown rejected %llu (drained %u)\n", accepted, nseen,
           (unsigned long long)arg.report.rejected, arg.report.drained);
    CHECK(accepted > 0);
    CHECK(nseen == accepted);
    qsort(tickets, accepted, sizeof tickets[0], cmp_u64);
    qsort(seen, nseen, sizeof seen[0], cmp_u64);
    for (i = 0; i < accepted; i++) CHECK(tickets[i] == seen[i]); /* each ticket exactly once */
    CHECK(saw_error);
    CHECK(rejected == arg.report.rejected);
    metafed_engine_free(engine);

    /* 2. Callback delivery, with drain: every completion reaches the callback, once. */
    cfg.on_complete = on_complete;
    cfg.on_complete_user_data = NULL;
    OK(metafed_engine_new(topo, &cfg, &engine));
    accepted = 0;
    while (accepted < TASKS) {
        metafed_task t;
        metafed_status s;
        memset(&t, 0, sizeof t);
        t.struct_size = sizeof t;
        t.id = accepted;
        t.domains = 1; /* Flaky: the raising agent is tried */
        s = metafed_engine_submit_blocking(engine, &t, METAFED_FOREVER, &tickets[accepted]);
        OK(s);
        accepted++;
    }
    arg.report.struct_size = sizeof arg.report;
    OK(metafed_engine_shutdown(engine, MS(60000), &arg.report));
    CHECK(arg.report.drained == 1);
    CHECK(callback_count == accepted);
    out[0].struct_size = sizeof out[0];
    OK(metafed_engine_poll(engine, out, 512, 0, &got));
    CHECK(got == 0);
    {
        metafed_agent_stats as;
        as.struct_size = sizeof as;
        OK(metafed_engine_get_agent_stats(engine, 2, &as));
        CHECK(as.calls > 0 && as.failures == as.calls);
        CHECK(as.panics > 0); /* METAFED_HANDLER_RAISED counts as a panic */
    }
    metafed_engine_free(engine);

    /* 3. Waitable tasks show the failure kinds of the raising agent. */
    OK(metafed_engine_new(topo, NULL, &engine));
    for (i = 0; i < 60; i++) {
        metafed_task t;
        metafed_completion c;
        uint64_t ticket;
        uint32_t f;
        memset(&t, 0, sizeof t);
        t.struct_size = sizeof t;
        t.flags = METAFED_TASK_WAITABLE;
        t.id = i;
        t.domains = 1;
        OK(metafed_engine_submit(engine, &t, &ticket));
        c.struct_size = sizeof c;
        OK(metafed_engine_wait(engine, ticket, METAFED_FOREVER, &c));
        CHECK(c.ticket == ticket && c.id == i);
        for (f = 0; f < c.failures_len; f++) {
            saw_invalid |= c.failures[f].kind == METAFED_FAILURE_INVALID_REPLY && c.failures[f].code == 7;
            saw_raised |= c.failures[f].kind == METAFED_FAILURE_PANICKED;
        }
    }
    CHECK(saw_invalid && saw_raised);
    metafed_engine_free(engine);
    metafed_topology_free(topo);
    return 0;
}
