/* W1 (WORKLOADS.md) driven from C, with every agent a C callback that implements the failure
 * oracle; breakers disabled. The success count must equal the oracle's exactly. */
#include "common.h"

#define TASKS 200000u
#define IN_FLIGHT 1024u

static int32_t oracle_handler(void *user_data, const metafed_request *req, metafed_response *resp) {
    double p = *(const double *)user_data;
    uint64_t key = req->fanout > 1 ? req->task_id * 4u + req->domain : req->task_id;
    if (oracle_fails(key, req->attempt, p)) {
        resp->code = 1;
        return METAFED_HANDLER_ERROR;
    }
    resp->value = key;
    return METAFED_HANDLER_OK;
}

static int finalized = 0;
static void finalize(void *user_data) {
    (void)user_data;
    finalized++;
}

int main(void) {
    static const double p = 0.12;
    static const char *names[3][3] = {{"REST", "GraphQL", "WebSocket"}, {"SQL", "NoSQL", "Cache"}, {"JWT", "OAuth", "RBAC"}};
    static const char *domains[3] = {"API", "Database", "Auth"};
    metafed_topology *topo = NULL;
    metafed_engine *engine = NULL;
    uint64_t expected = 0, ok = 0, done = 0, sent = 0, i;
    size_t d, a;
    metafed_task batch[64];
    uint64_t tickets[64];
    metafed_completion out[256];

    OK(metafed_topology_new(&topo));
    for (d = 0; d < 3; d++) {
        uint16_t id;
        OK(metafed_topology_add_domain(topo, domains[d], &id));
        CHECK(id == d);
        for (a = 0; a < 3; a++) {
            OK(metafed_topology_add_callback_agent(topo, id, names[d][a], oracle_handler, (void *)&p, finalize, 0, NULL));
        }
    }
    OK(metafed_topology_disable_breakers(topo));
    OK(metafed_engine_new(topo, NULL, &engine));

    for (i = 0; i < TASKS; i++) {
        expected += !(oracle_fails(i, 0, p) && oracle_fails(i, 1, p) && oracle_fails(i, 2, p));
    }
    for (i = 0; i < 64; i++) {
        batch[i].struct_size = sizeof(metafed_task);
    }
    out[0].struct_size = sizeof(metafed_completion);
    while (done < TASKS) {
        uint64_t room = IN_FLIGHT - (sent - done);
        size_t n = 0, submitted = 0, got = 0;
        if (room > 64) room = 64;
        if (room > TASKS - sent) room = TASKS - sent;
        for (n = 0; n < room; n++) {
            metafed_task *t = &batch[n];
            t->flags = 0;
            t->id = sent + n;
            t->domains = 1ull << ((sent + n) % 3);
            t->payload = 0;
            t->data = NULL;
            t->data_len = 0;
            t->priority = 0;
            t->deadline_ns = 0;
        }
        if (room > 0) {
            metafed_status s = metafed_engine_submit_batch(engine, batch, (size_t)room, tickets, &submitted);
            CHECK(s == METAFED_OK || s == METAFED_E_FULL);
            sent += submitted;
        }
        OK(metafed_engine_poll(engine, out, 256, room == 0 ? METAFED_FOREVER : 0, &got));
        for (n = 0; n < got; n++) {
            CHECK(out[n].outcome == METAFED_OUTCOME_OK || out[n].reason == METAFED_REASON_AGENTS_EXHAUSTED);
            ok += out[n].outcome == METAFED_OUTCOME_OK;
        }
        done += got;
    }
    printf("W1 from C: %llu tasks, %llu ok, oracle %llu\n", (unsigned long long)TASKS, (unsigned long long)ok, (unsigned long long)expected);
    CHECK(ok == expected);
    metafed_engine_free(engine);
    CHECK(finalized == 0); /* the topology still holds the handlers */
    metafed_topology_free(topo);
    CHECK(finalized == 9); /* now nothing can call them: each finalizer ran once */
    return 0;
}
