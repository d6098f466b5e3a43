/* ABI 1.5: the decision engine. Tasks that name no domain carry attributes; the topology's
 * `[classify]` rules (TOML) route them and score their complexity, which the completion reports;
 * a C classifier replaces the rules while the engine runs and its refusals complete tasks as
 * METAFED_REASON_UNCLASSIFIED; bad attributes are refused at submission, naming the attribute;
 * a batch whose third task is bad submits the first two. */
#include "common.h"
#include <string.h>

static const char *RULES = "[classify]\n"
                           "base = 0.1\n"
                           "[[classify.rules]]\n"
                           "attr = \"path\"\n"
                           "prefix = \"/api/\"\n"
                           "domains = [\"API\"]\n"
                           "weight = 0.2\n"
                           "[[classify.rules]]\n"
                           "data_contains = \"SELECT\"\n"
                           "domains = [\"Database\"]\n"
                           "weight = 0.3\n";

static int finalized = 0;

static void finalize(void *user) {
    (void)user;
    finalized += 1;
}

/* Routes by the "tenant" attribute: "acme" to domain 1 (complexity 0.75, priority 2), anything
 * else refused with 42. */
static int32_t classify(void *user, const metafed_classify_input *in, metafed_classification *out) {
    size_t i;
    (void)user;
    for (i = 0; i < in->attrs_len; i++) {
        const metafed_attr *a = &in->attrs[i];
        if (a->name_len == 6 && memcmp(a->name, "tenant", 6) == 0 && a->value_len == 4 &&
            memcmp(a->value, "acme", 4) == 0) {
            out->domains = (uint64_t)1 << 1;
            out->complexity = 0.75;
            out->flags = METAFED_CLASSIFY_PRIORITY;
            out->priority = 2;
            return METAFED_CLASSIFY_OK;
        }
    }
    return 42;
}

static metafed_completion run(metafed_engine *e, uint64_t id, const metafed_attr *attrs, size_t n,
                              const char *data) {
    metafed_task task = {.struct_size = sizeof task};
    metafed_completion c = {.struct_size = sizeof c};
    uint64_t ticket = 0;
    OK(metafed_task_init(&task));
    task.id = id;
    task.flags = METAFED_TASK_WAITABLE;
    task.attrs = attrs;
    task.attrs_len = n;
    if (data) {
        task.data = (const uint8_t *)data;
        task.data_len = strlen(data);
    }
    OK(metafed_engine_submit(e, &task, &ticket));
    OK(metafed_engine_wait(e, ticket, METAFED_FOREVER, &c));
    metafed_completion_release(&c);
    return c;
}

int main(void) {
    metafed_topology *t = NULL;
    metafed_engine *e = NULL;
    metafed_completion c;
    metafed_stats s = {.struct_size = sizeof s};
    metafed_sim_agent sim = {.struct_size = sizeof sim};
    metafed_task batch[3];
    uint64_t tickets[3] = {0};
    size_t submitted = 0, i;
    uint16_t api = 0, db = 0;
    char audit[8192];
    size_t audit_len = 0;
    const metafed_attr api_path[] = {{"path", 0, "/api/orders", 0}};
    const metafed_attr with_len[] = {{"path-ignored", 4, "/api/x-ignored", 6}};
    const metafed_attr short_value[] = {{"path-ignored", 4, "/api/x", 3}};
    const metafed_attr acme[] = {{"tenant", 0, "acme", 0}};
    const metafed_attr other[] = {{"tenant", 0, "initech", 0}};
    const metafed_attr empty_name[] = {{"", 0, "x", 0}};
    const metafed_attr null_name[] = {{NULL, 3, "x", 0}};

    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "API", &api));
    OK(metafed_topology_add_domain(t, "Database", &db));
    OK(metafed_sim_agent_init(&sim));
    OK(metafed_topology_add_sim_agent(t, api, "REST", &sim, NULL));
    OK(metafed_topology_add_sim_agent(t, db, "SQL", &sim, NULL));
    FAILS(METAFED_E_CONFIG, metafed_topology_set_classify_toml(t, "[classify]\nbase = 2.0\n"));
    CHECK(strstr(metafed_last_error(), "classify.base") != NULL);
    OK(metafed_topology_set_classify_toml(t, RULES));
    OK(metafed_engine_new(t, NULL, &e));
    metafed_topology_free(t);

    /* The rules: the path picks API, a keyword in the bytes adds Database. */
    c = run(e, 1, api_path, 1, NULL);
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.domains == ((uint64_t)1 << api));
    CHECK(c.complexity > 0.299 && c.complexity < 0.301);
    c = run(e, 2, api_path, 1, "SELECT 1");
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.domains == (((uint64_t)1 << api) | ((uint64_t)1 << db)));
    CHECK(c.complexity > 0.599 && c.complexity < 0.601);
    /* Lengths given: only the first name_len / value_len bytes count. */
    c = run(e, 3, with_len, 1, NULL);
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.domains == ((uint64_t)1 << api));
    c = run(e, 40, short_value, 1, NULL); /* "/ap": no rule's prefix */
    CHECK(c.outcome == METAFED_OUTCOME_REJECTED && c.reason == METAFED_REASON_UNCLASSIFIED);
    /* No rule matches: rejected as unclassified. */
    c = run(e, 4, NULL, 0, "ping");
    CHECK(c.outcome == METAFED_OUTCOME_REJECTED && c.reason == METAFED_REASON_UNCLASSIFIED && c.domains == 0);

    /* Bad attributes, refused where they are given. */
    {
        metafed_task task = {.struct_size = sizeof task};
        uint64_t ticket = 0;
        OK(metafed_task_init(&task));
        task.attrs = empty_name;
        task.attrs_len = 1;
        FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
        CHECK(strstr(metafed_last_error(), "attrs[0]") != NULL);
        task.attrs = null_name;
        FAILS(METAFED_E_NULL, metafed_engine_submit(e, &task, &ticket));
        CHECK(strstr(metafed_last_error(), "attrs[0].name") != NULL);
        task.attrs = NULL;
        FAILS(METAFED_E_NULL, metafed_engine_submit(e, &task, &ticket));
        task.attrs = api_path;
        task.attrs_len = METAFED_MAX_ATTRS + 1;
        FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
    }

    /* A batch whose third task is bad: the first two are submitted and complete. */
    for (i = 0; i < 3; i++) {
        batch[i].struct_size = sizeof batch[i];
        OK(metafed_task_init(&batch[i]));
        batch[i].id = 10 + i;
        batch[i].flags = METAFED_TASK_WAITABLE;
        batch[i].attrs = api_path;
        batch[i].attrs_len = 1;
    }
    batch[2].attrs = empty_name;
    OK(metafed_engine_submit_batch(e, batch, 3, tickets, &submitted));
    CHECK(submitted == 2);
    for (i = 0; i < 2; i++) {
        c.struct_size = sizeof c;
        OK(metafed_engine_wait(e, tickets[i], METAFED_FOREVER, &c));
        CHECK(c.outcome == METAFED_OUTCOME_OK && c.id == 10 + i && c.domains == ((uint64_t)1 << api));
        metafed_completion_release(&c);
    }

    /* A C classifier needs rules-free settings; then it routes, and its refusals count. */
    FAILS(METAFED_E_CONFIG, metafed_engine_set_classifier(e, classify, NULL, finalize));
    CHECK(finalized == 0); /* refused: nothing kept, the caller still owns user_data */
    OK(metafed_engine_set_classify_toml(e, ""));
    OK(metafed_engine_set_classifier(e, classify, NULL, finalize));
    c = run(e, 20, acme, 1, NULL);
    CHECK(c.outcome == METAFED_OUTCOME_OK && c.domains == ((uint64_t)1 << db) && c.priority == 2);
    CHECK(c.complexity > 0.749 && c.complexity < 0.751);
    c = run(e, 21, other, 1, NULL);
    CHECK(c.outcome == METAFED_OUTCOME_REJECTED && c.reason == METAFED_REASON_UNCLASSIFIED);
    OK(metafed_engine_get_stats(e, &s));
    CHECK(s.classified == 6 && s.unclassified == 3);
    OK(metafed_engine_get_audit_json(e, 0, audit, sizeof audit, &audit_len));
    CHECK(strstr(audit, "\"classifier\"") != NULL && strstr(audit, "\"classify\"") != NULL);
    /* Removed: tasks must name their domains again. */
    OK(metafed_engine_set_classifier(e, NULL, NULL, NULL));
    CHECK(finalized == 1);
    {
        metafed_task task = {.struct_size = sizeof task};
        uint64_t ticket = 0;
        OK(metafed_task_init(&task));
        FAILS(METAFED_E_UNKNOWN_DOMAIN, metafed_engine_submit(e, &task, &ticket));
        CHECK(strstr(metafed_last_error(), "no classifier") != NULL);
    }
    metafed_engine_free(e);
    puts("classify: ok");
    return 0;
}
