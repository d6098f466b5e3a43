/* Operating an engine from C: Prometheus metrics (size query, then the text), health as JSON,
 * breaker events drained into an array, the audit trail with the actor this thread set, and the
 * admin endpoint, spoken to over a plain socket. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <arpa/inet.h>
#include <stddef.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TASKS 5000u

/* The full text of a metafed text getter: a size query, then the text (with room to grow). */
#define FETCH(call_with_buf_cap_len, text)                                                    \
    do {                                                                                      \
        size_t len_ = 0, cap_;                                                                \
        char *buf = NULL;                                                                     \
        size_t cap = 0, *out_len = &len_;                                                     \
        OK(call_with_buf_cap_len);                                                            \
        cap_ = len_ + 4096;                                                                   \
        buf = (char *)malloc(cap_);                                                           \
        CHECK(buf != NULL);                                                                   \
        cap = cap_;                                                                           \
        OK(call_with_buf_cap_len);                                                            \
        CHECK(len_ < cap_ && strlen(buf) == len_);                                            \
        (text) = buf;                                                                         \
    } while (0)

/* GET `path` from 127.0.0.1:`port` with a bearer token; the response's first line and body. */
static void http_get(uint16_t port, const char *path, const char *token, char *resp, size_t cap) {
    struct sockaddr_in a;
    char req[512];
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s\r\n", path,
             token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    while (got + 1 < cap && (n = read(fd, resp + got, cap - 1 - got)) > 0) {
        got += (size_t)n;
    }
    resp[got] = '\0';
    close(fd);
}

static unsigned long extra_calls;
static int extra_finalized;

static int32_t extra_handler(void *user_data, const metafed_request *request, metafed_response *response) {
    (void)user_data;
    (void)request;
    __atomic_fetch_add(&extra_calls, 1, __ATOMIC_RELAXED);
    response->value = 1;
    return METAFED_HANDLER_OK;
}

static void extra_finalizer(void *user_data) {
    (void)user_data;
    __atomic_store_n(&extra_finalized, 1, __ATOMIC_RELAXED);
}

/* The event callback: counts events by kind and keeps the last JSON line. */
static unsigned breaker_events, audit_events;
static char last_json[1024];

static void on_event(void *user_data, const metafed_event *event) {
    (void)user_data;
    if (event->kind == METAFED_EVENT_BREAKER) {
        CHECK(event->breaker != NULL && event->breaker->struct_size >= sizeof *event->breaker);
        CHECK(event->breaker->level == METAFED_LEVEL_AGENT && event->breaker->to == METAFED_STATE_OPEN);
        breaker_events++;
    } else if (event->kind == METAFED_EVENT_AUDIT) {
        CHECK(event->breaker == NULL && event->audit_seq > 0);
        audit_events++;
    }
    CHECK(event->struct_size >= sizeof *event && strlen(event->json) == event->json_len);
    snprintf(last_json, sizeof last_json, "%s", event->json);
}

int main(void) {
    metafed_topology *topo = NULL;
    metafed_engine *engine = NULL;
    uint64_t ids[TASKS], domains[1] = {1}, counts[4];
    size_t done = 0, i, n = 0;
    char *text = NULL;
    int32_t status = -1;
    metafed_breaker_event events[16];
    uint16_t port = 0;
    static char resp[1 << 16];

    OK(metafed_topology_new_seed(0.12, &topo));
    OK(metafed_topology_disable_breakers(topo));
    OK(metafed_engine_new(topo, NULL, &engine));
    metafed_topology_free(topo);
    for (i = 0; i < TASKS; i++) ids[i] = i;
    OK(metafed_engine_run_batch(engine, ids, domains, 1, TASKS, 0, 0, NULL, counts, &done));
    CHECK(done == TASKS);

    /* Metrics: the Prometheus text format, and OpenMetrics. */
    FETCH(metafed_engine_get_metrics_text(engine, 0, buf, cap, out_len), text);
    CHECK(strstr(text, "metafed_tasks_admitted_total 5000\n") != NULL);
    CHECK(strstr(text, "# TYPE metafed_task_latency_seconds histogram") != NULL);
    free(text);
    FETCH(metafed_engine_get_metrics_text(engine, 1, buf, cap, out_len), text);
    CHECK(strlen(text) > 6 && strcmp(text + strlen(text) - 6, "# EOF\n") == 0);
    free(text);
    FAILS(METAFED_E_INVALID, metafed_engine_get_metrics_text(engine, 2, NULL, 0, NULL));

    /* Health. */
    FETCH(metafed_engine_get_health_json(engine, buf, cap, out_len, &status), text);
    CHECK(status == METAFED_HEALTHY);
    CHECK(strstr(text, "\"status\":\"healthy\"") != NULL);
    free(text);

    /* Events pushed to a callback (here on this thread: operator actions). */
    OK(metafed_engine_set_event_callback(engine, on_event, NULL));
    CHECK(audit_events == 1 && strstr(last_json, "\"action\":\"event_listener\"") != NULL);
    OK(metafed_engine_set_breaker_mode(engine, METAFED_LEVEL_AGENT, 2, METAFED_BREAKER_FORCED_OPEN));
    CHECK(audit_events == 2 && breaker_events == 1);
    CHECK(strstr(last_json, "\"event\":\"breaker\"") != NULL && strstr(last_json, "\"to\":\"open\"") != NULL);
    CHECK(strstr(last_json, "\"breaker\":\"agent API/WebSocket\"") != NULL);
    OK(metafed_engine_set_breaker_mode(engine, METAFED_LEVEL_AGENT, 2, METAFED_BREAKER_DISABLED));
    OK(metafed_engine_set_event_callback(engine, NULL, NULL));
    CHECK(audit_events == 3 && breaker_events == 1);
    OK(metafed_engine_drain_events(engine, events, 0, &n)); /* the pull API still works beside it */
    events[0].struct_size = sizeof events[0];
    OK(metafed_engine_drain_events(engine, events, 16, &n));
    CHECK(n == 1 && events[0].index == 2);

    /* An operator action, with this thread's actor: an event and an audit record. */
    OK(metafed_audit_set_actor("ops-test", "ticket 7"));
    OK(metafed_engine_set_breaker_mode(engine, METAFED_LEVEL_AGENT, 0, METAFED_BREAKER_FORCED_OPEN));
    OK(metafed_audit_set_actor(NULL, NULL));
    OK(metafed_engine_set_domain_down(engine, 2, 1));
    events[0].struct_size = 0; /* the stride is the caller's to set */
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_drain_events(engine, events, 16, &n));
    events[0].struct_size = sizeof events[0];
    OK(metafed_engine_drain_events(engine, events, 16, &n));
    CHECK(n == 1 && events[0].struct_size == sizeof events[0]);
    CHECK(events[0].level == METAFED_LEVEL_AGENT && events[0].index == 0);
    CHECK(events[0].from == METAFED_STATE_CLOSED && events[0].to == METAFED_STATE_OPEN);
    CHECK(events[0].cause == METAFED_CAUSE_FORCED && events[0].has_task == 0);
    OK(metafed_engine_drain_events(engine, events, 16, &n));
    CHECK(n == 0);
    FAILS(METAFED_E_NULL, metafed_engine_drain_events(engine, NULL, 16, &n));
    FETCH(metafed_engine_get_audit_json(engine, 0, buf, cap, out_len), text);
    CHECK(strstr(text, "\"actor\":\"ops-test\",\"reason\":\"ticket 7\",\"action\":\"breaker_mode\"") != NULL);
    CHECK(strstr(text, "\"target\":\"agent API/REST\",\"from\":\"disabled\",\"to\":\"forced_open\"") != NULL);
    CHECK(strstr(text, "\"actor\":\"unknown\",\"reason\":\"\",\"action\":\"domain_down\"") != NULL);
    free(text);
    FETCH(metafed_engine_get_audit_json(engine, 5, buf, cap, out_len), text);
    CHECK(strstr(text, "ops-test") == NULL && strstr(text, "domain_down") != NULL);
    free(text);
    FETCH(metafed_engine_get_health_json(engine, buf, cap, out_len, &status), text);
    CHECK(status == METAFED_DEGRADED);
    free(text);

    /* Live settings: the rate limit, an agent's concurrency (the seed's agents have none, so
     * one cannot be added while running), both audited. */
    OK(metafed_engine_set_rate_limit(engine, 1000.0, 10.0));
    OK(metafed_engine_set_rate_limit(engine, 0.0, 1.0));
    FAILS(METAFED_E_CONFIG, metafed_engine_set_rate_limit(engine, -1.0, 1.0));
    FAILS(METAFED_E_CONFIG, metafed_engine_set_agent_max_concurrency(engine, 0, 4));
    FAILS(METAFED_E_INVALID, metafed_engine_set_agent_max_concurrency(engine, 99, 4));
    OK(metafed_engine_set_agent_down(engine, 1, 1));
    OK(metafed_engine_set_agent_down(engine, 1, 0));
    FAILS(METAFED_E_INVALID, metafed_engine_set_agent_down(engine, 99, 1));
    FAILS(METAFED_E_INVALID, metafed_engine_set_agent_down(engine, 1, 2));
    {
        /* Breaker settings of a level, read and changed while the engine runs. */
        metafed_breaker_config cfg = {.struct_size = sizeof cfg};
        OK(metafed_engine_get_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        CHECK(cfg.timeout_ns == MS(200) && cfg.consecutive_failures == 5);
        cfg.consecutive_failures = 8;
        cfg.timeout_ns = MS(150);
        OK(metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        cfg.consecutive_failures = 0;
        OK(metafed_engine_get_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        CHECK(cfg.timeout_ns == MS(150) && cfg.consecutive_failures == 8);
#if METAFED_VERSION_MINOR >= 3
        /* ABI 1.3: a count window and a slow-call rate, resilience4j's options. (Built against
         * an earlier header, as run.sh also builds this file, the block is left out.) */
        CHECK(cfg.count_window == 0 && cfg.slow_call_rate == 0.0 && cfg.slow_call_duration_ns == 0);
        cfg.count_window = 100;
        cfg.slow_call_duration_ns = MS(80);
        cfg.slow_call_rate = 0.6;
        OK(metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        memset(&cfg, 0, sizeof cfg);
        cfg.struct_size = sizeof cfg;
        OK(metafed_engine_get_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        CHECK(cfg.count_window == 100 && cfg.slow_call_duration_ns == MS(80) && cfg.slow_call_rate == 0.6);
        CHECK(cfg.consecutive_failures == 8);
        cfg.slow_call_duration_ns = 0;
        FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        CHECK(strstr(metafed_last_error(), "slow_call_duration_ns") != NULL);
        cfg.slow_call_duration_ns = MS(80);
        cfg.count_window = 2000000;
        FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        CHECK(strstr(metafed_last_error(), "count_window") != NULL);
        {
            /* A client of ABI 1.2 gives the struct without 1.3's fields, and a read gives it
             * only the fields it knows. */
            metafed_breaker_config old = cfg;
            old.struct_size = (uint32_t)offsetof(metafed_breaker_config, slow_call_duration_ns);
            old.count_window = 77;   /* beyond its size: never read */
            old.slow_call_rate = 2.0;
            OK(metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &old));
            OK(metafed_engine_get_breaker_config(engine, METAFED_LEVEL_DOMAIN, &old));
            CHECK(old.count_window == 77 && old.slow_call_rate == 2.0);
            CHECK(old.struct_size == offsetof(metafed_breaker_config, slow_call_duration_ns));
            OK(metafed_engine_get_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
            /* ... and what it does not give keeps the level's settings, not the defaults. */
            CHECK(cfg.count_window == 100 && cfg.slow_call_rate == 0.6 && cfg.consecutive_failures == 8);
        }
#endif
        cfg.half_open_probes = 0;
        FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, &cfg));
        FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_config(engine, 7, &cfg));
        FAILS(METAFED_E_NULL, metafed_engine_set_breaker_config(engine, METAFED_LEVEL_DOMAIN, NULL));
        cfg.struct_size = 0;
        FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_get_breaker_config(engine, METAFED_LEVEL_META, &cfg));
    }
    {
        /* Admission settings, read and changed while the engine runs. */
        metafed_admission_config adm = {.struct_size = sizeof adm};
        OK(metafed_engine_get_admission(engine, &adm));
        CHECK(adm.max_concurrent == 0 && adm.rate_limit_per_s == 0.0);
        adm.max_concurrent = 64;
        adm.queue_capacity = 128;
        OK(metafed_engine_set_admission(engine, &adm));
        adm.max_concurrent = 0;
        OK(metafed_engine_get_admission(engine, &adm));
        CHECK(adm.max_concurrent == 64 && adm.queue_capacity == 128);
#if METAFED_VERSION_MINOR >= 6
        /* ABI 1.6: the longest a task waits for the throttle. */
        CHECK(adm.queue_timeout_ns == 0);
        adm.queue_timeout_ns = 20000000;
        OK(metafed_engine_set_admission(engine, &adm));
        adm.queue_timeout_ns = 0;
        OK(metafed_engine_get_admission(engine, &adm));
        CHECK(adm.queue_timeout_ns == 20000000);
        adm.queue_timeout_ns = UINT64_MAX;
        FAILS(METAFED_E_INVALID, metafed_engine_set_admission(engine, &adm));
        adm.queue_timeout_ns = 0;
        OK(metafed_engine_set_admission(engine, &adm));
#endif
        adm.priority_reserve[3] = 1.5;
        FAILS(METAFED_E_CONFIG, metafed_engine_set_admission(engine, &adm));
        adm.priority_reserve[3] = 0.2;
        adm.essential_priority = 1000;
        FAILS(METAFED_E_CONFIG, metafed_engine_set_admission(engine, &adm));
        FAILS(METAFED_E_NULL, metafed_engine_set_admission(engine, NULL));
        adm.struct_size = 3;
        FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_get_admission(engine, &adm));
        adm.struct_size = sizeof adm;
        adm.essential_priority = 0;
        adm.max_concurrent = 0;
        OK(metafed_engine_set_admission(engine, &adm));
    }
    FETCH(metafed_engine_get_audit_json(engine, 2, buf, cap, out_len), text);
    CHECK(strstr(text, "\"action\":\"rate_limit\",\"target\":\"admission\",\"from\":\"none\",\"to\":\"1000/s, burst 10\"") != NULL);
    free(text);

    {
        /* An agent added to the running engine from a topology that declares it, weighted,
         * then removed; no task is lost either way. */
        metafed_topology *extra = NULL;
        uint16_t api = 0, id = 0, dup = 0;
        uint32_t weight = 0;
        unsigned long before;
        OK(metafed_topology_new(&extra));
        OK(metafed_topology_add_domain(extra, "API", &api));
        OK(metafed_topology_add_callback_agent(extra, api, "Extra", extra_handler, NULL, extra_finalizer, 0, &id));
        FAILS(METAFED_E_TOPOLOGY, metafed_topology_set_agent_weight(extra, id, 0));
        OK(metafed_topology_set_agent_weight(extra, id, 2));
        OK(metafed_engine_add_agent(engine, extra, "API", "Extra", &id));
        CHECK(id == 9);
        FAILS(METAFED_E_CONFIG, metafed_engine_add_agent(engine, extra, "API", "Extra", &dup));
        FAILS(METAFED_E_CONFIG, metafed_engine_add_agent(engine, extra, "API", "Nope", &dup));
        metafed_topology_free(extra); /* the engine holds its own reference */
        OK(metafed_engine_get_agent_weight(engine, id, &weight));
        CHECK(weight == 2);
        OK(metafed_engine_set_agent_weight(engine, id, 7));
        FAILS(METAFED_E_CONFIG, metafed_engine_set_agent_weight(engine, id, 101));
        FAILS(METAFED_E_INVALID, metafed_engine_set_agent_weight(engine, 99, 1));
        OK(metafed_engine_run_batch(engine, ids, domains, 1, 1000, 0, 0, NULL, counts, &done));
        CHECK(done == 1000 && counts[0] + counts[1] + counts[2] + counts[3] == 1000 && __atomic_load_n(&extra_calls, __ATOMIC_RELAXED) > 0);
        OK(metafed_engine_remove_agent(engine, id));
        FAILS(METAFED_E_INVALID, metafed_engine_remove_agent(engine, id));
        FAILS(METAFED_E_INVALID, metafed_engine_get_agent_weight(engine, id, &weight));
        /* Workers see the removal from their next turn; a batch later, no call reaches it. */
        OK(metafed_engine_run_batch(engine, ids, domains, 1, 1000, 0, 0, NULL, counts, &done));
        before = __atomic_load_n(&extra_calls, __ATOMIC_RELAXED);
        OK(metafed_engine_run_batch(engine, ids, domains, 1, 1000, 0, 0, NULL, counts, &done));
        CHECK(done == 1000 && counts[0] + counts[1] + counts[2] + counts[3] == 1000 && __atomic_load_n(&extra_calls, __ATOMIC_RELAXED) == before);
        /* A domain added while running, with an agent declared in a topology; then removed. */
        {
            metafed_topology *geo = NULL;
            metafed_sim_agent sim = {.struct_size = sizeof sim};
            uint16_t g = 0, in_geo = 0, dom = 0;
            uint64_t geo_mask[1];
            OK(metafed_engine_add_domain(engine, "Geo", &dom));
            CHECK(dom == 3);
            FAILS(METAFED_E_CONFIG, metafed_engine_add_domain(engine, "API", &g));
            OK(metafed_topology_new(&geo));
            OK(metafed_topology_add_domain(geo, "Geo", &g));
            OK(metafed_sim_agent_init(&sim));
            OK(metafed_topology_add_sim_agent(geo, g, "Maps", &sim, &in_geo));
            OK(metafed_engine_add_agent(engine, geo, "Geo", "Maps", &in_geo));
            metafed_topology_free(geo);
            geo_mask[0] = 1u << dom;
            OK(metafed_engine_run_batch(engine, ids, geo_mask, 1, 500, 0, 0, NULL, counts, &done));
            CHECK(done == 500 && counts[0] == 500);
            OK(metafed_engine_remove_domain(engine, dom));
            FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_remove_domain(engine, dom));
            FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_run_batch(engine, ids, geo_mask, 1, 1, 0, 0, NULL, counts, &done));
        }
    }

    /* The admin endpoint. */
    FAILS(METAFED_E_CONFIG, metafed_engine_serve_admin(engine, "not an address", NULL, &port));
    OK(metafed_engine_serve_admin(engine, "127.0.0.1:0", "tok", &port));
    CHECK(port != 0);
    FAILS(METAFED_E_CONFIG, metafed_engine_serve_admin(engine, "127.0.0.1:0", NULL, NULL));
    http_get(port, "/ready", "tok", resp, sizeof resp);
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
    http_get(port, "/ready", NULL, resp, sizeof resp);
    CHECK(strncmp(resp, "HTTP/1.1 401", 12) == 0);
    http_get(port, "/metrics", "tok", resp, sizeof resp);
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0 && strstr(resp, "metafed_tasks_admitted_total 8500") != NULL);
    http_get(port, "/health", "tok", resp, sizeof resp);
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0 && strstr(resp, "\"status\": \"degraded\"") != NULL);
    OK(metafed_engine_stop_admin(engine));
    FAILS(METAFED_E_INVALID, metafed_engine_stop_admin(engine));
    /* Started again, then left for metafed_engine_free to stop. */
    OK(metafed_engine_serve_admin(engine, "127.0.0.1:0", NULL, NULL));
    metafed_engine_free(engine);
    CHECK(__atomic_load_n(&extra_finalized, __ATOMIC_RELAXED) == 1);
    printf("ops from C: metrics, health, events, audit, live agents, admin endpoint\n");
    return 0;
}
