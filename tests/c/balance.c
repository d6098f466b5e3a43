/* ABI 1.3: how a domain chooses its agents. A domain of three simulated I/O agents of 1 ms, the
 * third 10 ms on 30% of its calls (W6): by peak EWMA the slow agent gets a small share of the
 * calls where round-robin gives it a third; the balance is set on the topology, changed while
 * the engine runs, read back, and bad arguments are refused with a message naming them. */
#include "common.h"
#include <string.h>

#define TASKS 3000

static metafed_topology *w6(void) {
    metafed_topology *t = NULL;
    metafed_sim_agent s = {.struct_size = sizeof s};
    uint16_t d = 0;
    const char *names[3] = {"a", "b", "slow"};
    int i;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "D", &d));
    for (i = 0; i < 3; i++) {
        OK(metafed_sim_agent_init(&s));
        s.flags = METAFED_SIM_IO;
        s.latency_ns = MS(1);
        s.seed = (uint64_t)i + 1;
        if (i == 2) {
            s.slow_latency_ns = MS(10);
            s.slow_rate = 0.3;
        }
        OK(metafed_topology_add_sim_agent(t, d, names[i], &s, NULL));
    }
    OK(metafed_topology_disable_breakers(t));
    return t;
}

/* Runs TASKS tasks 16 at a time; returns the slow agent's share of the calls. */
static double slow_share(metafed_engine *e, uint64_t first) {
    static uint64_t ids[TASKS];
    uint64_t domains[1] = {1}, counts[METAFED_OUTCOME_COUNT] = {0}, calls[3];
    metafed_agent_stats a = {.struct_size = sizeof a};
    size_t done = 0, i;
    for (i = 0; i < TASKS; i++) ids[i] = first + i;
    for (i = 0; i < 3; i++) {
        OK(metafed_engine_get_agent_stats(e, (uint16_t)i, &a));
        calls[i] = a.calls;
    }
    OK(metafed_engine_run_batch(e, ids, domains, 1, TASKS, 0, 16, NULL, counts, &done));
    CHECK(done == TASKS && counts[METAFED_OUTCOME_OK] == TASKS);
    for (i = 0; i < 3; i++) {
        OK(metafed_engine_get_agent_stats(e, (uint16_t)i, &a));
        calls[i] = a.calls - calls[i];
    }
    return (double)calls[2] / (double)(calls[0] + calls[1] + calls[2]);
}

int main(void) {
    metafed_topology *t = w6();
    metafed_engine *e = NULL;
    int32_t kind = -1;
    uint64_t decay = 1, rtt = 1;
    double rr, ewma;

    /* Set on the topology: round-robin first. */
    OK(metafed_topology_set_domain_balance(t, 0, METAFED_BALANCE_ROUND_ROBIN, 0, 0));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_set_domain_balance(t, 5, METAFED_BALANCE_ROUND_ROBIN, 0, 0));
    FAILS(METAFED_E_INVALID, metafed_topology_set_domain_balance(t, 0, 9, 0, 0));
    CHECK(strstr(metafed_last_error(), "balance kind 9") != NULL);
    OK(metafed_engine_new(t, NULL, &e));
    metafed_topology_free(t);
    OK(metafed_engine_get_domain_balance(e, 0, &kind, &decay, &rtt));
    CHECK(kind == METAFED_BALANCE_ROUND_ROBIN && decay == 0 && rtt == 0);
    rr = slow_share(e, 0);
    CHECK(rr > 0.30 && rr < 0.37);

    /* Changed while the engine runs: peak EWMA with its defaults (0, 0). */
    OK(metafed_engine_set_domain_balance(e, 0, METAFED_BALANCE_PEAK_EWMA, 0, 0));
    OK(metafed_engine_get_domain_balance(e, 0, &kind, &decay, &rtt));
    CHECK(kind == METAFED_BALANCE_PEAK_EWMA && decay == 10000000000u && rtt == MS(30));
    ewma = slow_share(e, TASKS);
    CHECK(ewma < 0.15);

    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_set_domain_balance(e, 3, METAFED_BALANCE_PEAK_EWMA, 0, 0));
    FAILS(METAFED_E_INVALID, metafed_engine_set_domain_balance(e, 0, METAFED_BALANCE_PEAK_EWMA, METAFED_FOREVER, 0));
    CHECK(strstr(metafed_last_error(), "decay_ns") != NULL);
    FAILS(METAFED_E_NULL, metafed_engine_get_domain_balance(e, 0, NULL, NULL, NULL));
    OK(metafed_engine_set_domain_balance(e, 0, METAFED_BALANCE_PEAK_EWMA, MS(500), MS(2)));
    OK(metafed_engine_get_domain_balance(e, 0, &kind, NULL, &rtt));
    CHECK(kind == METAFED_BALANCE_PEAK_EWMA && rtt == MS(2));

    /* Outlier detection: defaults, set while running, read back, bad settings named; an agent
     * that always fails is ejected after five failures in a row. */
    {
        metafed_outlier_config oc = {.struct_size = sizeof oc}, got = {.struct_size = sizeof got};
        metafed_agent_stats a = {.struct_size = sizeof a};
        int32_t on = -1;
        uint64_t ids[200], domains[1] = {1}, counts[METAFED_OUTCOME_COUNT] = {0};
        size_t done = 0, i;
        OK(metafed_outlier_config_init(&oc));
        CHECK(oc.consecutive_failures == 5 && oc.base_ejection_ns == 30000000000u && oc.max_ejected_percent == 10.0);
        OK(metafed_engine_get_domain_outlier(e, 0, &got, &on));
        CHECK(on == 0);
        oc.latency_factor = 0.5;
        FAILS(METAFED_E_INVALID, metafed_engine_set_domain_outlier(e, 0, &oc));
        CHECK(strstr(metafed_last_error(), "latency_factor") != NULL);
        oc.latency_factor = 3.0;
        OK(metafed_engine_set_domain_outlier(e, 0, &oc));
        OK(metafed_engine_get_domain_outlier(e, 0, &got, &on));
        CHECK(on == 1 && got.latency_factor == 3.0 && got.consecutive_failures == 5);
        FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_set_domain_outlier(e, 4, &oc));
        OK(metafed_engine_set_domain_outlier(e, 0, NULL));
        OK(metafed_engine_get_domain_outlier(e, 0, &got, &on));
        CHECK(on == 0);
        metafed_engine_free(e);

        /* A domain of two agents, one always failing, with the seed's agent breakers made quiet
         * (no trigger of their own): outlier detection ejects it. */
        {
            metafed_topology *t2 = NULL;
            metafed_sim_agent s = {.struct_size = sizeof s};
            metafed_breaker_config bc = {.struct_size = sizeof bc};
            uint16_t d = 0;
            OK(metafed_topology_new(&t2));
            OK(metafed_topology_add_domain(t2, "D", &d));
            OK(metafed_sim_agent_init(&s));
            OK(metafed_topology_add_sim_agent(t2, d, "good", &s, NULL));
            s.error_rate = 1.0;
            OK(metafed_topology_add_sim_agent(t2, d, "broken", &s, NULL));
            OK(metafed_breaker_config_init(METAFED_LEVEL_AGENT, &bc));
            bc.consecutive_failures = 0;
            bc.failure_rate = 0.0;
            OK(metafed_topology_set_breaker_config(t2, METAFED_LEVEL_AGENT, &bc));
            OK(metafed_outlier_config_init(&oc));
            OK(metafed_topology_set_domain_outlier(t2, d, &oc));
            OK(metafed_engine_new(t2, NULL, &e));
            metafed_topology_free(t2);
            for (i = 0; i < 200; i++) ids[i] = i;
            OK(metafed_engine_run_batch(e, ids, domains, 1, 200, 0, 1, NULL, counts, &done));
            CHECK(done == 200 && counts[METAFED_OUTCOME_OK] == 200);
            OK(metafed_engine_get_agent_stats(e, 1, &a));
            CHECK(a.ejections == 1 && a.calls < 20);
        }
    }
    metafed_engine_free(e);

    /* Adaptive shedding: a domain whose agents take 4 attempts at once and a burst of 100
     * sub-tasks, with a wait queue of 8 per worker: the rest are rejected at once with their own
     * reason, counted in metafed_stats.domain_overloaded. */
    {
        metafed_topology *t3 = NULL;
        metafed_sim_agent s = {.struct_size = sizeof s};
        metafed_stats st = {.struct_size = sizeof st};
        metafed_engine_config ec = {.struct_size = sizeof ec};
        uint64_t target = 1, interval = 1, ids[100], domains[1] = {1}, counts[METAFED_OUTCOME_COUNT] = {0};
        uint32_t cap = 1;
        size_t done = 0, i;
        uint16_t d = 0;
        OK(metafed_topology_new(&t3));
        OK(metafed_topology_add_domain(t3, "D", &d));
        OK(metafed_sim_agent_init(&s));
        s.flags = METAFED_SIM_IO;
        s.latency_ns = MS(20);
        OK(metafed_topology_add_sim_agent(t3, d, "a", &s, NULL));
        OK(metafed_topology_set_agent_max_concurrency(t3, 0, 4));
        OK(metafed_topology_disable_breakers(t3));
        FAILS(METAFED_E_INVALID, metafed_topology_set_domain_shedding(t3, d, METAFED_FOREVER, 0, 0));
        CHECK(strstr(metafed_last_error(), "target_ns") != NULL);
        OK(metafed_topology_set_domain_shedding(t3, d, MS(5), 0, 8));
        OK(metafed_engine_config_init(&ec));
        ec.workers = 1;
        OK(metafed_engine_new(t3, &ec, &e));
        metafed_topology_free(t3);
        OK(metafed_engine_get_domain_shedding(e, 0, &target, &interval, &cap));
        CHECK(target == MS(5) && interval == MS(100) && cap == 8);
        for (i = 0; i < 100; i++) ids[i] = i;
        OK(metafed_engine_run_batch(e, ids, domains, 1, 100, 0, 100, NULL, counts, &done));
        CHECK(done == 100 && counts[METAFED_OUTCOME_OK] >= 12 && counts[METAFED_OUTCOME_REJECTED] >= 50);
        OK(metafed_engine_get_stats(e, &st));
        CHECK(st.domain_overloaded == counts[METAFED_OUTCOME_REJECTED]);
        OK(metafed_engine_set_domain_shedding(e, 0, 0, 0, 0));
        OK(metafed_engine_get_domain_shedding(e, 0, &target, NULL, NULL));
        CHECK(target == 0);
        FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_set_domain_shedding(e, 9, MS(5), 0, 0));
    }
    metafed_engine_free(e);

    /* Keyed rate limits: a tenant's key (metafed_key_of) holds it to its class's quota. */
    {
        metafed_topology *t4 = NULL;
        metafed_engine_config ec = {.struct_size = sizeof ec};
        metafed_task task = {.struct_size = sizeof task};
        metafed_completion c;
        uint64_t acme = 0, globex = 0, ticket = 0;
        char text[512];
        size_t len = 0;
        int i, ok = 0;
        OK(metafed_key_of("acme", &acme));
        OK(metafed_key_of("globex", &globex));
        CHECK(acme != 0 && acme != globex);
        OK(metafed_topology_new_seed(0.0, &t4));
        OK(metafed_engine_config_init(&ec));
        CHECK(ec.keyed_limits_json == NULL);
        ec.keyed_limits_json = "{\"capacity\": 256, \"default_per_s\": 0.001, \"default_burst\": 2, "
                               "\"classes\": [{\"name\": \"gold\", \"per_s\": 0.001, \"burst\": 4, \"keys\": [\"acme\"]}]}";
        OK(metafed_engine_new(t4, &ec, &e));
        for (i = 0; i < 6; i++) {
            OK(metafed_task_init(&task));
            task.id = (uint64_t)i;
            task.domains = 1;
            task.flags = METAFED_TASK_WAITABLE;
            task.key = acme;
            OK(metafed_engine_submit(e, &task, &ticket));
            memset(&c, 0, sizeof c);
            c.struct_size = sizeof c;
            OK(metafed_engine_wait(e, ticket, METAFED_FOREVER, &c));
            ok += c.outcome == METAFED_OUTCOME_OK;
            if (i >= 4) CHECK(c.reason == METAFED_REASON_RATE_LIMITED);
        }
        CHECK(ok == 4);
        OK(metafed_engine_get_keyed_stats_json(e, text, sizeof text, &len));
        CHECK(strstr(text, "[\"gold\",4,2]") != NULL && strstr(text, "\"tracked\":1") != NULL);
        FAILS(METAFED_E_CONFIG, metafed_engine_set_keyed_limits_json(e, "{\"capacity\": 256, \"default_burst\": 0}"));
        CHECK(strstr(metafed_last_error(), "burst") != NULL);
        FAILS(METAFED_E_CONFIG, metafed_engine_set_keyed_limits_json(e, "not json"));
        OK(metafed_engine_set_keyed_limits_json(e, "{\"capacity\": 256, \"default_per_s\": 0}"));
        metafed_engine_free(e);
        ec.keyed_limits_json = "{\"capacity\": 0}";
        FAILS(METAFED_E_CONFIG, metafed_engine_new(t4, &ec, &e));
        /* An adaptive throttle starts the limit at its initial value. */
        {
            metafed_admission_config adm = {.struct_size = sizeof adm};
            ec.keyed_limits_json = NULL;
            ec.adaptive_throttle_json = "{\"initial_limit\": 40, \"min_limit\": 8, \"max_limit\": 400, \"target_latency\": 20.0}";
            OK(metafed_engine_new(t4, &ec, &e));
            OK(metafed_engine_get_admission(e, &adm));
            CHECK(adm.max_concurrent == 40);
            metafed_engine_free(e);
            ec.adaptive_throttle_json = "{\"initial_limit\": 4, \"min_limit\": 8}";
            FAILS(METAFED_E_CONFIG, metafed_engine_new(t4, &ec, &e));
            CHECK(strstr(metafed_last_error(), "initial_limit") != NULL);
            ec.adaptive_throttle_json = "{\"colour\": 1}";
            FAILS(METAFED_E_CONFIG, metafed_engine_new(t4, &ec, &e));
            CHECK(strstr(metafed_last_error(), "colour") != NULL);
        }
        metafed_topology_free(t4);
        e = NULL;
    }
    metafed_engine_free(e);
    printf("balance from C: the slow agent's share %.3f by round-robin, %.3f by peak EWMA\n", rr, ewma);
    return 0;
}
