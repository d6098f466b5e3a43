/* A small metafed client in C: the seed's 3 x 3 federation with one agent of your own, a batch
 * of tasks, and the stats.
 *
 * Build and run (from the repository root, after `cargo build --release`):
 *   cc -std=c99 -O2 examples/c/client.c -Iinclude target/release/libmetafed.a -lpthread -ldl -lm -o client && ./client
 */
#include "metafed.h"
#include <stdio.h>

/* Your agent: fails one attempt in ten (by task id), answers the task id doubled otherwise. */
static int32_t my_agent(void *user_data, const metafed_request *req, metafed_response *resp) {
    (void)user_data;
    if ((req->task_id + req->attempt) % 10 == 0) {
        resp->code = 500;
        return METAFED_HANDLER_ERROR;
    }
    resp->value = req->task_id * 2;
    return METAFED_HANDLER_OK;
}

static int fail(const char *what, metafed_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, metafed_status_str(s), metafed_last_error());
    return 1;
}

int main(void) {
    metafed_topology *topo = NULL;
    metafed_engine *engine = NULL;
    metafed_status s;
    uint16_t api = 0;
    uint64_t i, ok = 0, done = 0;
    metafed_completion out[64];
    metafed_stats stats = {.struct_size = sizeof stats}; /* every struct starts with its size */

    /* The seed's 3 x 3 on simulated agents failing 12% of attempts, plus one agent of ours. */
    if ((s = metafed_topology_new_seed(0.12, &topo)) != METAFED_OK) return fail("topology", s);
    if ((s = metafed_topology_get_domain_id(topo, "API", &api)) != METAFED_OK) return fail("domain", s);
    s = metafed_topology_add_callback_agent(topo, api, "Mine", my_agent, NULL, NULL, 0, NULL);
    if (s != METAFED_OK) return fail("agent", s);
    if ((s = metafed_engine_new(topo, NULL, &engine)) != METAFED_OK) return fail("engine", s);
    metafed_topology_free(topo); /* the engine keeps what it needs */

    for (i = 0; i < 1000; i++) {
        metafed_task task = {.struct_size = sizeof task};
        if ((s = metafed_task_init(&task)) != METAFED_OK) return fail("task", s);
        task.id = i;
        task.domains = 1ull << (i % 3); /* API, Database, Auth in turn */
        s = metafed_engine_submit_blocking(engine, &task, METAFED_FOREVER, NULL);
        if (s != METAFED_OK) return fail("submit", s);
    }
    while (done < 1000) {
        size_t n = 0, k;
        out[0].struct_size = sizeof out[0];
        if ((s = metafed_engine_poll(engine, out, 64, METAFED_FOREVER, &n)) != METAFED_OK) return fail("poll", s);
        for (k = 0; k < n; k++) ok += out[k].outcome == METAFED_OUTCOME_OK;
        done += n;
    }
    if ((s = metafed_engine_get_stats(engine, &stats)) != METAFED_OK) return fail("stats", s);
    printf("metafed %s: %llu of %llu tasks ok; %u workers; p50 %.1f us; model predicts %.4f\n", metafed_version(),
           (unsigned long long)ok, (unsigned long long)done, stats.workers, stats.latency_p50_ns / 1e3,
           stats.predicted_success);
    metafed_engine_free(engine);
    return 0;
}
