/* Deferred attempts from C: a handler defers its attempt and a thread of our own completes it
 * later with a value and reply bytes; an attempt kept past the agent timeout is abandoned and
 * fails over, and completing it then says so; completing twice or after the engine is gone is
 * refused; blocking calls from a handler are refused; and the hardening of the interfaces
 * (handle types, durations, names, flags, shutdown accounting). */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <pthread.h>
#include <string.h>
#include <time.h>

#define TASKS 2000u

/* A minimal reactor: attempts to complete, each after its due time. */
struct job {
    metafed_attempt attempt;
    uint64_t task_id;
    struct timespec due;
};
static struct job queue[TASKS * 2];
static size_t queue_len = 0;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static int reactor_stop = 0;
static uint64_t completed_ok = 0, completed_abandoned = 0;

static void now_plus(struct timespec *ts, long us) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += us * 1000;
    while (ts->tv_nsec >= 1000000000) {
        ts->tv_nsec -= 1000000000;
        ts->tv_sec++;
    }
}

static int due(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void *reactor(void *arg) {
    (void)arg;
    for (;;) {
        struct job ready[64];
        size_t n = 0, i = 0;
        int stop;
        pthread_mutex_lock(&queue_lock);
        while (i < queue_len) {
            if (n < 64 && due(&queue[i].due)) {
                ready[n++] = queue[i];
                queue[i] = queue[--queue_len];
            } else {
                i++;
            }
        }
        stop = reactor_stop && queue_len == 0;
        pthread_mutex_unlock(&queue_lock);
        for (i = 0; i < n; i++) {
            char body[32];
            metafed_response r;
            metafed_status s;
            memset(&r, 0, sizeof r);
            r.struct_size = sizeof r;
            r.value = ready[i].task_id * 3;
            snprintf(body, sizeof body, "reply:%llu", (unsigned long long)ready[i].task_id);
            r.data = (const uint8_t *)body;
            r.data_len = strlen(body);
            s = metafed_attempt_complete(ready[i].attempt, METAFED_HANDLER_OK, &r);
            CHECK(s == METAFED_OK || s == METAFED_E_ABANDONED);
            __atomic_fetch_add(s == METAFED_OK ? &completed_ok : &completed_abandoned, 1, __ATOMIC_RELAXED);
            /* A second completion of the same attempt is refused, whatever the first said. */
            CHECK(metafed_attempt_complete(ready[i].attempt, METAFED_HANDLER_OK, &r) == METAFED_E_HANDLE);
        }
        if (stop) return NULL;
        if (n == 0) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Defers every attempt; the reactor answers 200 us later. */
static int32_t io_handler(void *user_data, const metafed_request *req, metafed_response *resp) {
    metafed_attempt a;
    (void)user_data;
    (void)resp;
    OK(metafed_request_defer(req, &a));
    /* Once deferred, it cannot be deferred again. */
    CHECK(metafed_request_defer(req, &a) == METAFED_E_INVALID);
    pthread_mutex_lock(&queue_lock);
    queue[queue_len].attempt = a;
    queue[queue_len].task_id = req->task_id;
    now_plus(&queue[queue_len].due, 200);
    queue_len++;
    pthread_mutex_unlock(&queue_lock);
    return METAFED_HANDLER_PENDING;
}

/* Defers and keeps the attempt for 80 ms: past the 50 ms agent timeout. */
static metafed_attempt kept[TASKS];
static size_t kept_len = 0;
static int32_t hang_handler(void *user_data, const metafed_request *req, metafed_response *resp) {
    (void)user_data;
    (void)resp;
    pthread_mutex_lock(&queue_lock);
    OK(metafed_request_defer(req, &kept[kept_len]));
    queue[queue_len].attempt = kept[kept_len];
    queue[queue_len].task_id = req->task_id;
    now_plus(&queue[queue_len].due, 80000);
    queue_len++;
    kept_len++;
    pthread_mutex_unlock(&queue_lock);
    return METAFED_HANDLER_PENDING;
}

static int32_t answer_now(void *user_data, const metafed_request *req, metafed_response *resp) {
    static const uint8_t bytes[] = {1, 2, 3};
    (void)user_data;
    resp->value = req->task_id;
    resp->data = bytes;
    resp->data_len = sizeof bytes;
    return METAFED_HANDLER_OK;
}

/* Blocks on its own engine, which must refuse. */
static metafed_engine *self_engine = NULL;
static int blocked_calls_refused = 0;
static int32_t blocking_handler(void *user_data, const metafed_request *req, metafed_response *resp) {
    metafed_task t = {.struct_size = sizeof t};
    metafed_completion c = {.struct_size = sizeof c};
    uint64_t ticket = 0;
    size_t n = 0;
    (void)user_data;
    (void)resp;
    if (req->task_id != 1) return METAFED_HANDLER_OK;
    OK(metafed_task_init(&t));
    t.id = 99;
    t.domains = 1;
    t.flags = METAFED_TASK_WAITABLE;
    OK(metafed_engine_submit(self_engine, &t, &ticket)); /* non-blocking: fine */
    if (metafed_engine_wait(self_engine, ticket, METAFED_FOREVER, &c) == METAFED_E_WOULD_DEADLOCK) blocked_calls_refused++;
    if (metafed_engine_poll(self_engine, &c, 1, METAFED_FOREVER, &n) == METAFED_E_WOULD_DEADLOCK) blocked_calls_refused++;
    if (metafed_engine_submit_blocking(self_engine, &t, METAFED_FOREVER, &ticket) == METAFED_E_WOULD_DEADLOCK) blocked_calls_refused++;
    if (metafed_engine_shutdown(self_engine, MS(1000), NULL) == METAFED_E_WOULD_DEADLOCK) blocked_calls_refused++;
    return METAFED_HANDLER_OK;
}

static metafed_engine *start(metafed_topology *t, uint32_t workers) {
    metafed_engine_config cfg = {.struct_size = sizeof cfg};
    metafed_engine *e = NULL;
    OK(metafed_engine_config_init(&cfg));
    cfg.workers = workers;
    cfg.pin = 0;
    OK(metafed_engine_new(t, &cfg, &e));
    return e;
}

static void run_waitable(metafed_engine *e, uint16_t d, uint32_t n, metafed_completion *out) {
    static uint64_t tickets[TASKS];
    uint32_t i;
    for (i = 0; i < n; i++) {
        metafed_task t = {.struct_size = sizeof t};
        OK(metafed_task_init(&t));
        t.id = i;
        t.domains = 1ull << d;
        t.flags = METAFED_TASK_WAITABLE;
        OK(metafed_engine_submit_blocking(e, &t, METAFED_FOREVER, &tickets[i]));
    }
    for (i = 0; i < n; i++) {
        out[i].struct_size = sizeof out[i];
        OK(metafed_engine_wait(e, tickets[i], MS(30000), &out[i]));
    }
}

static void deferred_answers_with_bytes(void) {
    static metafed_completion out[TASKS];
    metafed_topology *t = NULL;
    metafed_engine *e;
    metafed_stats s;
    uint16_t d;
    uint32_t i;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "IO", &d));
    OK(metafed_topology_add_callback_agent(t, d, "rest", io_handler, NULL, NULL, 0, NULL));
    OK(metafed_topology_disable_breakers(t));
    /* Budgets far above the reactor's delay, so that a slow machine (or ThreadSanitizer, 5-15x
       slower) does not turn answers into abandoned attempts. */
    OK(metafed_topology_set_timeouts(t, MS(10000), MS(20000), MS(30000)));
    e = start(t, 2);
    run_waitable(e, d, TASKS, out);
    for (i = 0; i < TASKS; i++) {
        char want[32];
        snprintf(want, sizeof want, "reply:%u", i);
        CHECK(out[i].outcome == METAFED_OUTCOME_OK && out[i].value == (uint64_t)i * 3);
        CHECK(out[i].bodies_len == 1 && out[i].bodies[0].domain == d);
        CHECK(out[i].bodies[0].len == strlen(want) && memcmp(out[i].bodies[0].data, want, strlen(want)) == 0);
        metafed_completion_release(&out[i]);
        CHECK(out[i].bodies == NULL && out[i].bodies_len == 0);
        metafed_completion_release(&out[i]); /* releasing twice is harmless */
    }
    s.struct_size = sizeof s;
    OK(metafed_engine_get_stats(e, &s));
    CHECK(s.late_results == 0);
    metafed_engine_free(e);
    metafed_topology_free(t);
}

static void abandoned_attempts_fail_over(void) {
    static metafed_completion out[40];
    metafed_topology *t = NULL;
    metafed_engine *e;
    metafed_agent_stats as;
    metafed_stats s;
    uint16_t d, hang;
    uint32_t i, failed_over = 0, abandoned;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "D", &d));
    OK(metafed_topology_add_callback_agent(t, d, "hang", hang_handler, NULL, NULL, 0, &hang));
    OK(metafed_topology_add_callback_agent(t, d, "now", answer_now, NULL, NULL, 0, NULL));
    OK(metafed_topology_disable_breakers(t));
    e = start(t, 1);
    run_waitable(e, d, 40, out);
    for (i = 0; i < 40; i++) {
        CHECK(out[i].outcome == METAFED_OUTCOME_OK);
        CHECK(out[i].bodies_len == 1 && out[i].bodies[0].len == 3 && out[i].bodies[0].data[2] == 3);
        if (out[i].attempts == 2) {
            failed_over++;
            CHECK(out[i].failures[0].kind == METAFED_FAILURE_ABANDONED && out[i].failures[0].agent == hang);
        }
        metafed_completion_release(&out[i]);
    }
    CHECK(failed_over == 20 && kept_len == 20);
    for (i = 0; i < kept_len; i++) {
        OK(metafed_attempt_is_abandoned(kept[i], &abandoned));
        CHECK(abandoned == 1);
    }
    as.struct_size = sizeof as;
    OK(metafed_engine_get_agent_stats(e, hang, &as));
    CHECK(as.abandoned == 20 && as.deferred == 20);
    /* The reactor completes the kept attempts at 80 ms: each is refused as abandoned, late. */
    for (;;) {
        struct timespec ts = {0, 5000000};
        pthread_mutex_lock(&queue_lock);
        i = (uint32_t)queue_len;
        pthread_mutex_unlock(&queue_lock);
        if (i == 0) break;
        nanosleep(&ts, NULL);
    }
    s.struct_size = sizeof s;
    OK(metafed_engine_get_stats(e, &s));
    CHECK(s.late_results == 20);
    metafed_engine_free(e);
    /* After the engine is freed, an attempt handle names nothing. */
    FAILS(METAFED_E_HANDLE, metafed_attempt_complete(kept[0], METAFED_HANDLER_OK, NULL));
    metafed_topology_free(t);
}

static void blocking_calls_are_refused_in_handlers(void) {
    metafed_topology *t = NULL;
    metafed_completion c = {.struct_size = sizeof c};
    metafed_task task = {.struct_size = sizeof task};
    uint64_t ticket;
    uint16_t d;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "D", &d));
    OK(metafed_topology_add_callback_agent(t, d, "blocker", blocking_handler, NULL, NULL, 0, NULL));
    self_engine = start(t, 1);
    OK(metafed_task_init(&task));
    task.id = 1;
    task.domains = 1;
    task.flags = METAFED_TASK_WAITABLE;
    OK(metafed_engine_submit(self_engine, &task, &ticket));
    OK(metafed_engine_wait(self_engine, ticket, MS(10000), &c));
    CHECK(c.outcome == METAFED_OUTCOME_OK);
    CHECK(blocked_calls_refused == 4);
    metafed_engine_free(self_engine);
    metafed_topology_free(t);
}

static void interfaces_refuse_bad_input_where_it_is_given(void) {
    metafed_topology *t = NULL;
    metafed_engine *e;
    metafed_breaker_config bc = {.struct_size = sizeof bc};
    metafed_sim_agent sim = {.struct_size = sizeof sim};
    metafed_hedge_config h = {.struct_size = sizeof h};
    metafed_task task = {.struct_size = sizeof task};
    metafed_request fake;
    metafed_attempt a;
    metafed_stats s;
    metafed_completion out[128];
    uint64_t ticket;
    size_t n, got = 0;
    uint16_t d, agent;
    char name[16];
    static char long_name[1 << 20];
    int i;
    OK(metafed_topology_new(&t));
    /* Handles of one type are not handles of another. */
    FAILS(METAFED_E_HANDLE, metafed_engine_shutdown((metafed_engine *)t, 0, NULL));
    OK(metafed_topology_add_domain(t, "D", &d)); /* the topology is untouched */
    /* Names: refused where they are given, with the header's limits. */
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_add_domain(t, "D", NULL));
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_add_domain(t, "  ", NULL));
    memset(long_name, 'x', sizeof long_name - 1);
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_add_domain(t, long_name, NULL));
    for (i = 1; i < (int)METAFED_MAX_DOMAINS; i++) {
        snprintf(name, sizeof name, "d%d", i);
        OK(metafed_topology_add_domain(t, name, NULL));
    }
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_add_domain(t, "one too many", NULL));
    metafed_topology_free(t);

    /* Durations: at most METAFED_MAX_DURATION_NS, never a panic. */
    OK(metafed_topology_new_seed(0.1, &t));
    OK(metafed_breaker_config_init(METAFED_LEVEL_AGENT, &bc));
    bc.timeout_ns = METAFED_FOREVER;
    FAILS(METAFED_E_INVALID, metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    bc.timeout_ns = METAFED_MAX_DURATION_NS + 1;
    FAILS(METAFED_E_INVALID, metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    bc.timeout_ns = METAFED_MAX_DURATION_NS;
    bc.open_max_ns = METAFED_MAX_DURATION_NS;
    OK(metafed_topology_set_breaker_config(t, METAFED_LEVEL_AGENT, &bc));
    OK(metafed_sim_agent_init(&sim));
    sim.latency_ns = UINT64_MAX;
    FAILS(METAFED_E_INVALID, metafed_topology_add_sim_agent(t, 0, "slow", &sim, NULL));
    /* New per-agent and per-domain settings. */
    OK(metafed_sim_agent_init(&sim));
    sim.flags = METAFED_SIM_IO;
    sim.latency_ns = 100000;
    OK(metafed_topology_add_sim_agent(t, 0, "io", &sim, &agent));
    OK(metafed_topology_set_agent_max_concurrency(t, agent, 8));
    FAILS(METAFED_E_TOPOLOGY, metafed_topology_set_agent_threads(t, agent, 2)); /* I/O agents hold no thread */
    FAILS(METAFED_E_INVALID, metafed_topology_set_agent_threads(t, 999, 2));
    OK(metafed_hedge_config_init(&h));
    OK(metafed_topology_set_hedge(t, 0, &h));
    h.delay_ns = MS(100); /* with the default percentile too: one of the two */
    FAILS(METAFED_E_INVALID, metafed_topology_set_hedge(t, 0, &h));
    h.percentile = 0.0;
    OK(metafed_topology_set_hedge(t, 0, &h));
    OK(metafed_topology_set_hedge(t, 0, NULL));
    OK(metafed_topology_set_retry_budget(t, 0, 0.2, 10, MS(1000)));
    FAILS(METAFED_E_INVALID, metafed_topology_set_retry_budget(t, 0, 0.2, 10, UINT64_MAX));
    OK(metafed_topology_remove_retry_budget(t, 0));
    e = start(t, 1);
    OK(metafed_task_init(&task));
    task.domains = 1;
    task.deadline_ns = UINT64_MAX;
    FAILS(METAFED_E_INVALID, metafed_engine_submit(e, &task, &ticket));
    /* Boolean-like parameters are 0 or 1. */
    FAILS(METAFED_E_INVALID, metafed_engine_set_domain_down(e, 0, 2));
    FAILS(METAFED_E_INVALID, metafed_engine_set_agent_in_rotation(e, 0, 7));
    /* Deferring outside a handler's call is refused, and so is a made-up attempt. */
    memset(&fake, 0, sizeof fake);
    FAILS(METAFED_E_INVALID, metafed_request_defer(&fake, &a));
    a.engine = 0;
    a.id = 0;
    FAILS(METAFED_E_HANDLE, metafed_attempt_complete(a, METAFED_HANDLER_OK, NULL));
    /* Tasks caught by the shutdown sweep are counted in the stats. */
    task.deadline_ns = 0;
    for (i = 0; i < 64; i++) {
        task.id = (uint64_t)i;
        if (metafed_engine_submit(e, &task, &ticket) != METAFED_OK) break;
    }
    n = (size_t)i;
    OK(metafed_engine_shutdown(e, 0, NULL));
    out[0].struct_size = sizeof out[0];
    while (got < n) {
        size_t k = 0;
        OK(metafed_engine_poll(e, out, 128, 0, &k));
        if (k == 0) break;
        got += k;
    }
    s.struct_size = sizeof s;
    OK(metafed_engine_get_stats(e, &s));
    CHECK(got == n && s.completed == n);
    CHECK(s.outcomes[METAFED_OUTCOME_OK] + s.outcomes[METAFED_OUTCOME_FAILED] + s.outcomes[METAFED_OUTCOME_TIMED_OUT] +
              s.outcomes[METAFED_OUTCOME_REJECTED] ==
          n);
    metafed_engine_free(e);
    metafed_topology_free(t);
}

static int32_t frees_its_engine(void *user_data, const metafed_request *req, metafed_response *resp) {
    (void)user_data;
    (void)req;
    (void)resp;
    metafed_engine_free(self_engine); /* from a handler: the shutdown happens elsewhere */
    return METAFED_HANDLER_OK;
}

static void freeing_the_engine_from_a_handler_is_safe(void) {
    metafed_topology *t = NULL;
    metafed_task task = {.struct_size = sizeof task};
    uint64_t ticket;
    uint16_t d;
    struct timespec ts = {0, 50000000};
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "D", &d));
    OK(metafed_topology_add_callback_agent(t, d, "f", frees_its_engine, NULL, NULL, 0, NULL));
    self_engine = start(t, 1);
    OK(metafed_task_init(&task));
    task.id = 1;
    task.domains = 1;
    OK(metafed_engine_submit(self_engine, &task, &ticket));
    nanosleep(&ts, NULL);
    FAILS(METAFED_E_HANDLE, metafed_engine_submit(self_engine, &task, &ticket));
    metafed_topology_free(t);
}

int main(void) {
    pthread_t r;
    CHECK(pthread_create(&r, NULL, reactor, NULL) == 0);
    deferred_answers_with_bytes();
    abandoned_attempts_fail_over();
    blocking_calls_are_refused_in_handlers();
    interfaces_refuse_bad_input_where_it_is_given();
    freeing_the_engine_from_a_handler_is_safe();
    pthread_mutex_lock(&queue_lock);
    reactor_stop = 1;
    pthread_mutex_unlock(&queue_lock);
    CHECK(pthread_join(r, NULL) == 0);
    printf("deferred from C: %llu answered, %llu abandoned and refused, blocking calls refused in handlers\n",
           (unsigned long long)completed_ok, (unsigned long long)completed_abandoned);
    return 0;
}
