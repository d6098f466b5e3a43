/* W1 (WORKLOADS.md, 1024 in flight, breakers off) driven from C through the C ABI:
 *   sim       simulated (Rust) agents; submit_batch + poll from C: the cost of the ABI calls
 *   callback  every agent a C callback (the oracle in C): adds a call across the boundary per attempt
 *   run_batch the bulk entry point (one call for the whole closed loop, columnar arrays)
 * Usage: w1_from_c MODE TASKS WORKERS   -> prints "tasks/s ok" on one line.
 * benches/c/run.sh builds it and runs it interleaved with the Rust-driven engine. */
#define _POSIX_C_SOURCE 200809L
#include "metafed.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int32_t oracle(void *user_data, const metafed_request *req, metafed_response *resp) {
    uint64_t threshold = *(const uint64_t *)user_data;
    uint64_t key = req->fanout > 1 ? req->task_id * 4u + req->domain : req->task_id;
    if (splitmix64(key * 31u + req->attempt) < threshold) {
        resp->code = 1;
        return METAFED_HANDLER_ERROR;
    }
    resp->value = key;
    return METAFED_HANDLER_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        metafed_status s_ = (call);                                                                \
        if (s_ != METAFED_OK && s_ != METAFED_E_FULL) {                                            \
            fprintf(stderr, "%s: %s: %s\n", #call, metafed_status_str(s_), metafed_last_error()); \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    static const uint64_t threshold = 2213609288845146193ull; /* floor(0.12 * 2^64) */
    const char *mode = argc > 1 ? argv[1] : "callback";
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    uint32_t workers = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0;
    metafed_topology *topo = NULL;
    metafed_engine *engine = NULL;
    metafed_engine_config cfg = {.struct_size = sizeof cfg};
    uint64_t sent = 0, done = 0, ok = 0;
    double t0;

    if (strcmp(mode, "callback") == 0) {
        static const char *names[3] = {"API", "Database", "Auth"};
        int d, a;
        CHECK(metafed_topology_new(&topo));
        for (d = 0; d < 3; d++) {
            uint16_t id;
            CHECK(metafed_topology_add_domain(topo, names[d], &id));
            for (a = 0; a < 3; a++) {
                char name[8];
                snprintf(name, sizeof name, "a%d", a);
                CHECK(metafed_topology_add_callback_agent(topo, id, name, oracle, (void *)&threshold, NULL, 0, NULL));
            }
        }
    } else {
        CHECK(metafed_topology_new_seed(0.12, &topo));
    }
    CHECK(metafed_topology_disable_breakers(topo));
    CHECK(metafed_engine_config_init(&cfg));
    cfg.workers = workers;
    CHECK(metafed_engine_new(topo, &cfg, &engine));

    t0 = now_s();
    if (strcmp(mode, "run_batch") == 0) {
        uint64_t *ids = malloc(n * sizeof *ids), *domains = malloc(n * sizeof *domains), counts[4];
        size_t got = 0, i;
        for (i = 0; i < n; i++) {
            ids[i] = i;
            domains[i] = 1ull << (i % 3);
        }
        t0 = now_s();
        CHECK(metafed_engine_run_batch(engine, ids, domains, n, n, 0, 1024, NULL, counts, &got));
        done = got;
        ok = counts[0];
        free(ids);
        free(domains);
    } else {
        metafed_task batch[64];
        uint64_t tickets[64];
        metafed_completion out[256];
        size_t i;
        memset(batch, 0, sizeof batch);
        for (i = 0; i < 64; i++) batch[i].struct_size = sizeof batch[i];
        out[0].struct_size = sizeof out[0];
        while (done < n) {
            uint64_t room = 1024 - (sent - done), k;
            size_t submitted = 0, got = 0;
            if (room > 64) room = 64;
            if (room > n - sent) room = n - sent;
            for (k = 0; k < room; k++) {
                batch[k].id = sent + k;
                batch[k].domains = 1ull << ((sent + k) % 3);
            }
            if (room) CHECK(metafed_engine_submit_batch(engine, batch, (size_t)room, tickets, &submitted));
            sent += submitted;
            CHECK(metafed_engine_poll(engine, out, 256, room == 0 && sent > done ? METAFED_FOREVER : 0, &got));
            for (k = 0; k < got; k++) ok += out[k].outcome == METAFED_OUTCOME_OK;
            done += got;
        }
    }
    printf("%.0f %llu\n", done / (now_s() - t0), (unsigned long long)ok);
    metafed_engine_free(engine);
    metafed_topology_free(topo);
    return 0;
}
