/* Queue agents from C (ABI 1.2): a poll() loop of our own runs the attempts of three agents
 * whose attempts wait in one metafed_attempt_queue. It waits on the queue's descriptor, takes
 * attempts in batches, and completes them many per call (metafed_attempts_complete), failing
 * the ones the W1 oracle says fail: every task ends exactly as the oracle says. Then an attempt
 * completed with METAFED_HANDLER_TIMED_OUT fails over as abandoned, the statistics add up, and
 * bad arguments are refused with messages. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <poll.h>
#include <string.h>

#define TASKS 20000u
#define P 0.12
#define BATCH 64

static uint64_t oracle_ok(void) {
    uint64_t ok = 0, i;
    for (i = 0; i < TASKS; i++) ok += !(oracle_fails(i, 0, P) && oracle_fails(i, 1, P) && oracle_fails(i, 2, P));
    return ok;
}

/* Takes what waits and completes it: each attempt of task i, number a, fails when the oracle
 * says so, else answers i * 2 with the tag as reply bytes. Returns how many it ran. */
static size_t run_batch(metafed_attempt_queue *q, int time_out_all) {
    metafed_queued_attempt items[BATCH];
    metafed_attempt attempts[BATCH];
    int32_t results[BATCH];
    metafed_response responses[BATCH];
    metafed_status statuses[BATCH];
    static const char *names[] = {"rest", "graphql", "ws"};
    size_t n = 0, i;
    items[0].struct_size = sizeof items[0];
    OK(metafed_attempt_queue_take(q, items, BATCH, &n));
    memset(responses, 0, sizeof responses);
    responses[0].struct_size = sizeof responses[0];
    for (i = 0; i < n; i++) {
        CHECK(items[i].timeout_ns > 0 && items[i].timeout_ns <= MS(50));
        CHECK(items[i].tag < 3);
        CHECK(items[i].data_len == 0 && items[i].data == NULL);
        attempts[i] = items[i].attempt;
        if (time_out_all) {
            results[i] = METAFED_HANDLER_TIMED_OUT;
        } else if (oracle_fails(items[i].task_id, items[i].attempt_number, P)) {
            results[i] = METAFED_HANDLER_ERROR;
            responses[i].code = 7;
        } else {
            results[i] = METAFED_HANDLER_OK;
            responses[i].value = items[i].task_id * 2;
            responses[i].data = (const uint8_t *)names[items[i].tag];
            responses[i].data_len = strlen(names[items[i].tag]);
        }
    }
    OK(metafed_attempts_complete(attempts, results, responses, n, statuses));
    for (i = 0; i < n; i++) CHECK(statuses[i] == METAFED_OK);
    return n;
}

int main(void) {
    metafed_attempt_queue *q = NULL;
    metafed_topology *t = NULL;
    metafed_engine *e = NULL;
    metafed_completion done[256];
    metafed_attempt_queue_stats qs = {.struct_size = sizeof qs};
    uint16_t api = 0, agent = 0;
    int32_t fd = -1;
    uint64_t submitted = 0, finished = 0, ok = 0, value_sum = 0, want_sum = 0, i;
    size_t n = 0;
    const uint64_t want = oracle_ok();

    OK(metafed_attempt_queue_new(0, &q));
    OK(metafed_attempt_queue_get_fd(q, &fd));
    CHECK(fd >= 0);
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "API", &api));
    OK(metafed_topology_add_queue_agent(t, api, "REST", q, 0, 0, &agent));
    OK(metafed_topology_add_queue_agent(t, api, "GraphQL", q, 1, 0, NULL));
    OK(metafed_topology_add_queue_agent(t, api, "WebSocket", q, 2, 0, NULL));
    OK(metafed_topology_disable_breakers(t));
    OK(metafed_engine_new(t, NULL, &e));

    /* The closed loop: up to 1,024 in flight, our loop running the agents between polls. */
    while (finished < TASKS) {
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        while (submitted < TASKS && submitted - finished < 1024) {
            metafed_task task = {.struct_size = sizeof task};
            uint64_t ticket = 0;
            metafed_status s;
            OK(metafed_task_init(&task));
            task.id = submitted;
            task.domains = 1ull << api;
            s = metafed_engine_submit(e, &task, &ticket);
            if (s == METAFED_E_FULL) break;
            OK(s);
            submitted++;
        }
        CHECK(poll(&p, 1, 1) >= 0);
        if (p.revents & POLLIN) run_batch(q, 0);
        done[0].struct_size = sizeof done[0];
        OK(metafed_engine_poll(e, done, 256, 0, &n));
        for (i = 0; i < n; i++) {
            if (done[i].outcome == METAFED_OUTCOME_OK) {
                ok++;
                value_sum += done[i].value;
                want_sum += done[i].id * 2;
                CHECK(done[i].bodies_len == 1 && done[i].bodies[0].len >= 2);
            } else {
                CHECK(done[i].outcome == METAFED_OUTCOME_FAILED);
                CHECK(done[i].failures_total == 3);
            }
            metafed_completion_release(&done[i]);
        }
        finished += n;
    }
    printf("queue agents from a poll() loop: %llu of %d tasks succeeded (oracle: %llu)\n",
           (unsigned long long)ok, TASKS, (unsigned long long)want);
    CHECK(ok == want);
    CHECK(value_sum == want_sum);
    OK(metafed_attempt_queue_get_stats(q, &qs));
    CHECK(qs.struct_size == sizeof qs && qs.capacity == 65536);
    CHECK(qs.queued == qs.taken && qs.waiting == 0 && qs.refused == 0 && qs.expired == 0);
    CHECK(qs.high_water >= 1 && qs.high_water <= 1024);

    /* An attempt completed as timed out fails over as abandoned; all three do: the task fails. */
    {
        metafed_task task = {.struct_size = sizeof task};
        uint64_t ticket = 0;
        metafed_completion c = {.struct_size = sizeof c};
        size_t ran = 0;
        OK(metafed_task_init(&task));
        task.id = 1;
        task.domains = 1ull << api;
        task.flags = METAFED_TASK_WAITABLE;
        OK(metafed_engine_submit(e, &task, &ticket));
        while (ran < 3) {
            struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
            CHECK(poll(&p, 1, 1000) == 1);
            ran += run_batch(q, 1);
        }
        OK(metafed_engine_wait(e, ticket, METAFED_FOREVER, &c));
        CHECK(c.outcome == METAFED_OUTCOME_FAILED && c.failures_total == 3);
        CHECK(c.failures[0].kind == METAFED_FAILURE_ABANDONED);
        metafed_completion_release(&c);
    }

    /* Refusals, each with a message. */
    {
        metafed_queued_attempt item = {.struct_size = 0};
        metafed_attempt a = {0, 0};
        int32_t bad = 42;
        FAILS(METAFED_E_NULL, metafed_attempt_queue_new(0, NULL));
        FAILS(METAFED_E_INVALID, metafed_attempt_queue_new(1u << 30, &q));
        FAILS(METAFED_E_HANDLE, metafed_topology_add_queue_agent(t, api, "X", (metafed_attempt_queue *)t, 0, 0, NULL));
        FAILS(METAFED_E_INVALID, metafed_topology_add_queue_agent(t, api, "X", q, 0, 1, NULL));
        FAILS(METAFED_E_STRUCT_SIZE, metafed_attempt_queue_take(q, &item, 1, &n));
        FAILS(METAFED_E_NULL, metafed_attempt_queue_take(q, &item, 1, NULL));
        FAILS(METAFED_E_NULL, metafed_attempts_complete(NULL, &bad, NULL, 1, NULL));
        {
            metafed_status st = METAFED_OK;
            OK(metafed_attempts_complete(&a, &bad, NULL, 1, &st));
            CHECK(st == METAFED_E_INVALID);
            bad = METAFED_HANDLER_OK;
            OK(metafed_attempts_complete(&a, &bad, NULL, 1, &st));
            CHECK(st == METAFED_E_HANDLE);
        }
        OK(metafed_attempts_complete(NULL, NULL, NULL, 0, NULL));
    }

    metafed_engine_free(e);
    metafed_topology_free(t);
    metafed_attempt_queue_free(q);
    metafed_attempt_queue_free(NULL);
    printf("queue agents: passed\n");
    return 0;
}
