/* ABI 1.4: cross-domain rerouting. Domain "Primary" has one agent that always fails; its
 * alternates "Replica" and "Backup" answer. A task of Primary is answered by Replica, then (with
 * Replica's breaker forced open) by Backup; the completion says which domain answered and how
 * often the sub-task moved; the domain stats count it; alternates are set on the topology,
 * changed while the engine runs, read back, and bad lists are refused with a message. */
#include "common.h"
#include <string.h>

static void add_agent(metafed_topology *t, uint16_t d, const char *name, double error_rate) {
    metafed_sim_agent s = {.struct_size = sizeof s};
    OK(metafed_sim_agent_init(&s));
    s.error_rate = error_rate;
    OK(metafed_topology_add_sim_agent(t, d, name, &s, NULL));
}

static metafed_completion run(metafed_engine *e, uint64_t id, uint16_t domain) {
    metafed_task task = {.struct_size = sizeof task};
    metafed_completion c = {.struct_size = sizeof c};
    uint64_t ticket = 0;
    OK(metafed_task_init(&task));
    task.id = id;
    task.domains = (uint64_t)1 << domain;
    task.flags = METAFED_TASK_WAITABLE;
    OK(metafed_engine_submit(e, &task, &ticket));
    OK(metafed_engine_wait(e, ticket, METAFED_FOREVER, &c));
    metafed_completion_release(&c);
    return c;
}

int main(void) {
    metafed_topology *t = NULL;
    metafed_engine *e = NULL;
    metafed_completion c;
    metafed_domain_stats ds = {.struct_size = sizeof ds};
    uint16_t p = 0, r = 0, k = 0, alts[8] = {0}, self[1], twice[2];
    size_t n = 99;
    char audit[4096];
    size_t audit_len = 0;

    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "Primary", &p));
    OK(metafed_topology_add_domain(t, "Replica", &r));
    OK(metafed_topology_add_domain(t, "Backup", &k));
    add_agent(t, p, "p1", 1.0);
    add_agent(t, r, "r1", 0.0);
    add_agent(t, k, "k1", 0.0);
    OK(metafed_topology_disable_breakers(t));
    alts[0] = r;
    OK(metafed_topology_set_domain_alternates(t, p, alts, 1));
    self[0] = p;
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_set_domain_alternates(t, p, self, 1));
    CHECK(strstr(metafed_last_error(), "its own alternate") != NULL);
    twice[0] = twice[1] = r;
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_set_domain_alternates(t, p, twice, 2));
    CHECK(strstr(metafed_last_error(), "named twice") != NULL);
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_topology_set_domain_alternates(t, 9, alts, 1));
    FAILS(METAFED_E_NULL, metafed_topology_set_domain_alternates(t, p, NULL, 1));
    OK(metafed_engine_new(t, NULL, &e));
    metafed_topology_free(t);

    OK(metafed_engine_get_domain_alternates(e, p, alts, 8, &n));
    CHECK(n == 1 && alts[0] == r);
    OK(metafed_engine_get_domain_alternates(e, p, NULL, 0, &n));
    CHECK(n == 1);

    c = run(e, 1, p);
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.reason == METAFED_REASON_NONE);
    CHECK(c.answered == ((uint64_t)1 << r) && c.reroutes == 1 && c.failures_len == 1);
    CHECK(c.failures[0].domain == p);
    OK(metafed_engine_get_domain_stats(e, p, &ds));
    CHECK(ds.subtasks == 1 && ds.failed == 1 && ds.rerouted == 1);
    OK(metafed_engine_get_domain_stats(e, r, &ds));
    CHECK(ds.subtasks == 1 && ds.ok == 1 && ds.rerouted == 0);

    /* Changed live: Replica, then Backup; with Replica shed by its forced-open breaker, Backup
     * answers after two moves. */
    alts[0] = r;
    alts[1] = k;
    OK(metafed_engine_set_domain_alternates(e, p, alts, 2));
    OK(metafed_engine_set_breaker_mode(e, METAFED_LEVEL_DOMAIN, r, METAFED_BREAKER_FORCED_OPEN));
    c = run(e, 2, p);
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.answered == ((uint64_t)1 << k) && c.reroutes == 2);
    OK(metafed_engine_get_audit_json(e, 0, audit, sizeof audit, &audit_len));
    CHECK(strstr(audit, "\"domain_alternates\"") != NULL && strstr(audit, "Replica, Backup") != NULL);
    FAILS(METAFED_E_CONFIG, metafed_engine_set_domain_alternates(e, p, self, 1));
    FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_set_domain_alternates(e, 40, alts, 1));
    FAILS(METAFED_E_NULL, metafed_engine_get_domain_alternates(e, p, NULL, 2, &n));

    /* None: the task fails at its domain, as without rerouting. */
    OK(metafed_engine_set_domain_alternates(e, p, NULL, 0));
    c = run(e, 3, p);
    CHECK(c.outcome == METAFED_OUTCOME_FAILED && c.reason == METAFED_REASON_AGENTS_EXHAUSTED);
    CHECK(c.answered == 0 && c.reroutes == 0);
    metafed_engine_free(e);
    puts("reroute: ok");
    return 0;
}
