/* Every entry point called with bad arguments: NULL pointers, invalid, stale and double-freed
 * handles, wrong struct sizes, unknown domains, bad values. Each returns a status and leaves a
 * message; none crashes (this runs under AddressSanitizer and UBSan). */
#include "common.h"
#include <string.h>

static int32_t ok_handler(void *u, const metafed_request *r, metafed_response *resp) {
    (void)u;
    (void)r;
    resp->value = 1;
    return METAFED_HANDLER_OK;
}

static int finalized = 0;
static void finalize(void *u) {
    (void)u;
    finalized++;
}

int main(void) {
    metafed_topology *t = NULL, *stale_t = NULL;
    metafed_engine *e = NULL, *stale_e = NULL;
    metafed_engine *bogus = (metafed_engine *)(uintptr_t)0x12345;
    metafed_task task = {.struct_size = sizeof task};
    metafed_completion c = {.struct_size = sizeof c};
    metafed_stats stats = {.struct_size = sizeof stats};
    metafed_engine_config cfg = {.struct_size = sizeof cfg};
    metafed_sim_agent sim = {.struct_size = sizeof sim};
    metafed_breaker_config bc = {.struct_size = sizeof bc};
    metafed_hedge_config h = {.struct_size = sizeof h};
    uint64_t ticket = 0, tickets[4];
    uint16_t id = 0;
    size_t n = 0;

    /* Statuses and strings. */
    CHECK(strcmp(metafed_status_str(METAFED_OK), "ok") == 0);
    CHECK(strcmp(metafed_status_str(-5), "unknown status") == 0);
    CHECK(metafed_version() != NULL);

    /* Topology: NULL out-params, NULL strings, bad values. */
    FAILS(METAFED_E_NULL, metafed_topology_new(NULL));
    FAILS(METAFED_E_INVALID, metafed_topology_new_seed(1.5, &t));
    FAILS(METAFED_E_NULL, metafed_topology_new_from_toml(NULL, &t));
    FAILS(METAFED_E_CONFIG, metafed_topology_new_from_toml("[[domains]]\nname = 3\n", &t));
    FAILS(METAFED_E_IO, metafed_topology_new_from_file("/nonexistent/metafed.toml", &t));
    OK(metafed_topology_new(&t));
    FAILS(METAFED_E_NULL, metafed_topology_add_domain(t, NULL, &id));
    FAILS(METAFED_E_HANDLE, metafed_topology_add_domain((metafed_topology *)(uintptr_t)0x999, "x", &id));
    OK(metafed_topology_add_domain(t, "D", &id));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_add_callback_agent(t, 7, "a", ok_handler, NULL, finalize, 0, NULL));
    FAILS(METAFED_E_NULL, metafed_topology_add_callback_agent(t, id, "a", NULL, NULL, finalize, 0, NULL));
    FAILS(METAFED_E_INVALID, metafed_topology_add_callback_agent(t, id, "a", ok_handler, NULL, finalize, 0x80, NULL));
    CHECK(finalized == 0); /* refused: ownership stayed with the caller */
    FAILS(METAFED_E_NULL, metafed_topology_add_sim_agent(t, id, "s", NULL, NULL));
    /* struct_size is the caller's to set, before _init too: _init refuses a struct without it. */
    sim.struct_size = 0;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_sim_agent_init(&sim));
    sim.struct_size = sizeof sim + 8; /* a newer header than the library */
    FAILS(METAFED_E_STRUCT_SIZE, metafed_sim_agent_init(&sim));
    sim.struct_size = sizeof sim;
    OK(metafed_sim_agent_init(&sim));
    CHECK(sim.struct_size == sizeof sim && sim.error_rate == 0.0 && sim.latency_ns == 0);
    sim.struct_size = 3;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_topology_add_sim_agent(t, id, "s", &sim, NULL));
    sim.struct_size = sizeof sim;
    OK(metafed_sim_agent_init(&sim));
    sim.error_rate = 2.0;
    FAILS(METAFED_E_INVALID, metafed_topology_add_sim_agent(t, id, "s", &sim, NULL));
    sim.error_rate = 0.0;
    sim.latency_ns = 1000; /* a fixed latency and an exponential one: a field means one thing */
    sim.exponential_mean_ns = 1000;
    FAILS(METAFED_E_INVALID, metafed_topology_add_sim_agent(t, id, "s", &sim, NULL));
    CHECK(strstr(metafed_last_error(), "exponential_mean_ns") != NULL);
    sim.exponential_mean_ns = 0;
    sim.latency_ns = METAFED_MAX_DURATION_NS + 1;
    FAILS(METAFED_E_INVALID, metafed_topology_add_sim_agent(t, id, "s", &sim, NULL));
    CHECK(strstr(metafed_last_error(), "latency_ns") != NULL);
    sim.latency_ns = 0;
    sim.hang_ns = 1000;
    sim.panic_rate = 0.5;
    FAILS(METAFED_E_INVALID, metafed_topology_add_sim_agent(t, id, "s", &sim, NULL));
    FAILS(METAFED_E_STRUCT_SIZE, metafed_hedge_config_init(&(metafed_hedge_config){.struct_size = 0}));
    OK(metafed_hedge_config_init(&h));
    CHECK(h.delay_ns == 0 && h.percentile == 95.0);
    h.delay_ns = 1000000; /* a fixed delay and a percentile: refused */
    FAILS(METAFED_E_INVALID, metafed_topology_set_hedge(t, id, &h));
    h.percentile = 0.0;
    h.delay_ns = 0; /* neither */
    FAILS(METAFED_E_INVALID, metafed_topology_set_hedge(t, id, &h));
    FAILS(METAFED_E_INVALID, metafed_topology_set_retry_budget(t, id, 0.2, 10.0, 0));
    FAILS(METAFED_E_INVALID, metafed_topology_set_retry_budget(t, id, 0.2, 10.0, METAFED_MAX_DURATION_NS + 1));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_remove_retry_budget(t, 9));
    FAILS(METAFED_E_INVALID, metafed_topology_set_timeouts(t, METAFED_MAX_DURATION_NS + 1, 0, 0));
    FAILS(METAFED_E_INVALID, metafed_topology_set_domain_fault_rate(t, id, -1.0));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_set_domain_fault_rate(t, 9, 0.1));
    FAILS(METAFED_E_INVALID, metafed_topology_set_meta_fault_rate(t, 3.0));
    FAILS(METAFED_E_INVALID, metafed_topology_set_max_attempts(t, id, 0));
    FAILS(METAFED_E_INVALID, metafed_breaker_config_init(9, &bc));
    FAILS(METAFED_E_NULL, metafed_breaker_config_init(METAFED_LEVEL_AGENT, NULL));
    OK(metafed_breaker_config_init(METAFED_LEVEL_AGENT, &bc));
    CHECK(bc.timeout_ns == 50000000u);
    bc.timeout_ns = 0;
    FAILS(METAFED_E_INVALID, metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    CHECK(strstr(metafed_last_error(), "timeout_ns") != NULL);
    bc.timeout_ns = METAFED_FOREVER;
    FAILS(METAFED_E_INVALID, metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    OK(metafed_breaker_config_init(METAFED_LEVEL_AGENT, &bc));
    bc.mode = 17;
    FAILS(METAFED_E_INVALID, metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_get_domain_id(t, "nope", &id));
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_bind_callback_agent(t, "D", "ghost", ok_handler, NULL, NULL, 0, NULL));

    /* An engine from an invalid topology (a domain with no agents). */
    FAILS(METAFED_E_TOPOLOGY, metafed_engine_new(t, NULL, &e));
    OK(metafed_topology_add_callback_agent(t, id, "a", ok_handler, NULL, finalize, 0, NULL));
    OK(metafed_engine_config_init(&cfg));
    cfg.struct_size = 8;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_new(t, &cfg, &e));
    cfg.struct_size = sizeof cfg;
    OK(metafed_engine_config_init(&cfg));
    cfg.drain_timeout_ns = METAFED_MAX_DURATION_NS + 1;
    FAILS(METAFED_E_INVALID, metafed_engine_new(t, &cfg, &e));
    OK(metafed_engine_config_init(&cfg));
    cfg.max_in_flight = 0;
    FAILS(METAFED_E_CONFIG, metafed_engine_new(t, &cfg, &e));
    cfg.max_in_flight = 64;
    cfg.pin = 2;
    FAILS(METAFED_E_INVALID, metafed_engine_new(t, &cfg, &e));
    cfg.pin = 0;
    FAILS(METAFED_E_NULL, metafed_engine_new(t, &cfg, NULL));
    OK(metafed_engine_new(t, &cfg, &e));

    /* Submissions. */
    OK(metafed_task_init(&task));
    task.domains = 1;
    task.deadline_ns = METAFED_MAX_DURATION_NS + 1;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
    CHECK(strstr(metafed_last_error(), "deadline_ns") != NULL);
    task.deadline_ns = 0;
    FAILS(METAFED_E_NULL, metafed_engine_submit(e, NULL, &ticket));
    FAILS(METAFED_E_HANDLE, metafed_engine_submit(bogus, &task, &ticket));
    FAILS(METAFED_E_HANDLE, metafed_engine_submit(NULL, &task, &ticket));
    task.domains = 2;
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_submit(e, &task, &ticket));
    task.domains = 0;
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_submit(e, &task, &ticket));
    task.domains = 1;
    task.priority = 4;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
    task.priority = 0;
    task.flags = 0x40;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
    task.flags = 0;
    task.data_len = 5; /* data NULL */
    FAILS(METAFED_E_NULL, metafed_engine_submit(e, &task, &ticket));
    task.data_len = 0;
    task.struct_size = 4;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_submit(e, &task, &ticket));
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_submit_batch(e, &task, 1, tickets, &n));
    task.struct_size = sizeof task;
    FAILS(METAFED_E_NULL, metafed_engine_submit_batch(e, &task, 1, tickets, NULL));
    FAILS(METAFED_E_NULL, metafed_engine_submit_batch(e, NULL, 1, tickets, &n));
    FAILS(METAFED_E_NULL, metafed_engine_submit_batch(e, &task, 1, NULL, &n));
    OK(metafed_engine_submit_batch(e, NULL, 0, NULL, &n)); /* nothing to do */
    CHECK(n == 0);

    /* Completions. */
    FAILS(METAFED_E_NULL, metafed_engine_poll(e, NULL, 4, 0, &n));
    FAILS(METAFED_E_NULL, metafed_engine_poll(e, &c, 1, 0, NULL));
    c.struct_size = 1;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_poll(e, &c, 1, 0, &n));
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_wait(e, 0, 0, &c)); /* one rule: every struct */
    c.struct_size = sizeof c;
    FAILS(METAFED_E_UNKNOWN_TICKET, metafed_engine_wait(e, 0, 0, &c));
    FAILS(METAFED_E_UNKNOWN_TICKET, metafed_engine_wait(e, 0xdeadbeefull << 32, 0, &c));
    FAILS(METAFED_E_NULL, metafed_engine_wait(e, 0, 0, NULL));
    OK(metafed_engine_submit(e, &task, &ticket));
    FAILS(METAFED_E_NOT_WAITABLE, metafed_engine_wait(e, ticket, 0, &c));
    c.struct_size = sizeof c;
    OK(metafed_engine_poll(e, &c, 1, METAFED_FOREVER, &n));
    CHECK(n == 1 && c.ticket == ticket && c.outcome == METAFED_OUTCOME_OK && c.value == 1);

    /* Stats and controls. */
    stats.struct_size = 2;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_get_stats(e, &stats));
    FAILS(METAFED_E_NULL, metafed_engine_get_stats(e, NULL));
    stats.struct_size = sizeof stats;
    OK(metafed_engine_get_stats(e, &stats));
    CHECK(stats.completed == 1 && stats.domains == 1 && stats.agents == 1);
    {
        metafed_domain_stats ds = {.struct_size = sizeof ds};
        metafed_agent_stats as = {.struct_size = sizeof as};
        FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_get_domain_stats(e, 5, &ds));
        FAILS(METAFED_E_INVALID, metafed_engine_get_agent_stats(e, 5, &as));
        OK(metafed_engine_get_domain_stats(e, 0, &ds));
        OK(metafed_engine_get_agent_stats(e, 0, &as));
        CHECK(ds.subtasks == 1 && as.calls == 1);
    }
    FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_mode(e, 7, 0, METAFED_BREAKER_NORMAL));
    FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_mode(e, METAFED_LEVEL_AGENT, 9, METAFED_BREAKER_NORMAL));
    FAILS(METAFED_E_INVALID, metafed_engine_set_breaker_mode(e, METAFED_LEVEL_AGENT, 0, 9));
    OK(metafed_engine_set_breaker_mode(e, METAFED_LEVEL_META, 0, METAFED_BREAKER_DISABLED));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_set_domain_down(e, 3, 1));
    FAILS(METAFED_E_INVALID, metafed_engine_set_agent_in_rotation(e, 3, 1));
    {
        metafed_shutdown_report r = {.struct_size = 0};
        FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_shutdown(e, 100000000, &r));
        FAILS(METAFED_E_INVALID, metafed_engine_shutdown(e, METAFED_MAX_DURATION_NS + 1, NULL));
        OK(metafed_engine_shutdown(e, 100000000, NULL));
    }
    FAILS(METAFED_E_SHUTTING_DOWN, metafed_engine_submit(e, &task, &ticket));

    /* Stale and double-freed handles: detected, never undefined behaviour. */
    stale_e = e;
    metafed_engine_free(e);
    FAILS(METAFED_E_HANDLE, metafed_engine_submit(stale_e, &task, &ticket));
    FAILS(METAFED_E_HANDLE, metafed_engine_get_stats(stale_e, &stats));
    metafed_engine_free(stale_e); /* double free: ignored, with a message */
    CHECK(strstr(metafed_last_error(), "stale") != NULL);
    metafed_engine_free(NULL);
    stale_t = t;
    metafed_topology_free(t);
    CHECK(finalized == 1);
    FAILS(METAFED_E_HANDLE, metafed_topology_add_domain(stale_t, "x", &id));
    FAILS(METAFED_E_HANDLE, metafed_engine_new(stale_t, NULL, &e));
    metafed_topology_free(stale_t);
    metafed_topology_free(NULL);
    printf("bad arguments from C: every call refused with a status and a message\n");
    return 0;
}
