/* A real agent in C: each attempt is an HTTP GET over a TCP socket to a service you name, run
 * on the agent's own threads (an isolated agent, so a slow server stalls no engine worker),
 * with the service's status as the value and its body as the reply bytes. A simulated agent
 * beside it in the same domain (chosen once for every 20 times the service is) takes the tasks
 * the service fails, and the agent's breaker stops sending it tasks while the service is down.
 *
 * Build and run (from the repository root, after `cargo build --release`), against any HTTP
 * server on the loopback interface, for instance Python's:
 *   python3 -m http.server 8000 --bind 127.0.0.1 &
 *   cc -std=c99 -O2 examples/c/http_agent.c -Iinclude target/release/libmetafed.a -lpthread -ldl -lm \
 *      -o target/http_agent && target/http_agent 127.0.0.1:8000 /
 * Arguments: HOST:PORT (default 127.0.0.1:8000), PATH (default /), TASKS (default 500).
 * It exits 0 when every task completed exactly once (each id once, none missing). */
#define _POSIX_C_SOURCE 200809L
#include "metafed.h"
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_REPLY 65536

/* Each of the agent's threads reads into a buffer of its own, kept across calls: the reply bytes
 * point into it, and the library copies them once the handler has returned. */
static pthread_key_t reply_buffer;

static void free_buffer(void *buf) { free(buf); }

struct service {
    char host[256];
    char port[16];
    char path[1024];
};

static int fail(const char *what, metafed_status s) {
    fprintf(stderr, "http_agent: %s: %s: %s\n", what, metafed_status_str(s), metafed_last_error());
    return 1;
}

/* One GET: the status code (0 when the service could not be reached or broke the exchange),
 * the body copied to `body` (at most `cap` bytes), its length to `*body_len`. */
static int http_get(const struct service *svc, char *buf, size_t cap, const char **body, size_t *body_len) {
    struct addrinfo hints, *ai = NULL, *p;
    struct timeval tv = {0, 150 * 1000}; /* inside the agent timeout (200 ms) */
    char req[1400];
    size_t got = 0;
    int fd = -1, status = 0, n;
    char *end;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(svc->host, svc->port, &hints, &ai) != 0) return 0;
    for (p = ai; p != NULL; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd < 0) continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return 0;
    n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", svc->path, svc->host);
    if (n < 0 || (size_t)n >= sizeof req || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return 0;
    }
    while (got < cap - 1) { /* HTTP/1.0 with Connection: close: the body ends at the end of the stream */
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { /* a timeout or a reset */
            close(fd);
            return 0;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1) return 0;
    end = strstr(buf, "\r\n\r\n");
    *body = end ? end + 4 : buf + got;
    *body_len = (size_t)(buf + got - *body);
    return status;
}

/* The agent: runs on its own threads (METAFED_AGENT_ISOLATED), so it may block. */
static int32_t http_agent(void *user_data, const metafed_request *req, metafed_response *resp) {
    const struct service *svc = user_data;
    char *buf = pthread_getspecific(reply_buffer);
    const char *body = NULL;
    size_t body_len = 0;
    int status;
    (void)req;
    if (buf == NULL && ((buf = malloc(MAX_REPLY)) == NULL || pthread_setspecific(reply_buffer, buf) != 0)) {
        free(buf);
        resp->code = 500;
        return METAFED_HANDLER_ERROR;
    }
    status = http_get(svc, buf, MAX_REPLY, &body, &body_len);
    if (status != 200) {
        resp->code = status == 0 ? 502 : status; /* 502: unreachable, or the exchange broke */
        return METAFED_HANDLER_ERROR;
    }
    resp->value = (uint64_t)status;
    resp->data = (const uint8_t *)body; /* in this thread's buffer: the library copies it after we return */
    resp->data_len = body_len;
    return METAFED_HANDLER_OK;
}

int main(int argc, char **argv) {
    static struct service svc;
    const char *where = argc > 1 ? argv[1] : "127.0.0.1:8000";
    const char *colon = strrchr(where, ':');
    unsigned long tasks = argc > 3 ? strtoul(argv[3], NULL, 10) : 500;
    metafed_topology *topo = NULL;
    metafed_engine *engine = NULL;
    metafed_status s;
    metafed_sim_agent fallback = {.struct_size = sizeof fallback};
    metafed_stats stats = {.struct_size = sizeof stats};
    uint16_t api = 0, ids[2] = {0, 0};
    const char *names[2] = {"HTTP", "Fallback"};
    uint64_t ok = 0, done = 0, next = 0, bytes = 0, served_by_http = 0, twice = 0;
    unsigned char *seen = NULL; /* one byte per task: completed yet? */
    size_t k;
    unsigned long i, missing = 0;
    metafed_completion out[64];

    if (colon == NULL || colon == where || colon[1] == '\0' || (size_t)(colon - where) >= sizeof svc.host ||
        strlen(colon + 1) >= sizeof svc.port) {
        fprintf(stderr, "http_agent: HOST:PORT expected, got \"%s\"\n", where);
        return 2;
    }
    if (argc > 2 && (argv[2][0] != '/' || strlen(argv[2]) >= sizeof svc.path)) {
        fprintf(stderr, "http_agent: PATH must start with / (and be under 1 KiB), got \"%s\"\n", argv[2]);
        return 2;
    }
    if (tasks == 0 || tasks > 1000000) {
        fprintf(stderr, "http_agent: TASKS must be 1 to 1000000, got \"%s\"\n", argv[3]);
        return 2;
    }
    if ((seen = calloc(tasks, 1)) == NULL) {
        fprintf(stderr, "http_agent: out of memory\n");
        return 1;
    }
    memcpy(svc.host, where, (size_t)(colon - where));
    strcpy(svc.port, colon + 1);
    strcpy(svc.path, argc > 2 ? argv[2] : "/");

    if (pthread_key_create(&reply_buffer, free_buffer) != 0) {
        fprintf(stderr, "http_agent: pthread_key_create failed\n");
        return 1;
    }
    if ((s = metafed_topology_new(&topo)) != METAFED_OK) return fail("topology", s);
    if ((s = metafed_topology_add_domain(topo, "API", &api)) != METAFED_OK) return fail("domain", s);
    s = metafed_topology_add_callback_agent(topo, api, names[0], http_agent, &svc, NULL, METAFED_AGENT_ISOLATED, &ids[0]);
    if (s != METAFED_OK) return fail("the HTTP agent", s);
    /* Four threads of its own, four GETs at once: beyond that the domain picks another agent or
     * the sub-task waits, rather than attempts queueing at the agent past their timeout. */
    if ((s = metafed_topology_set_agent_threads(topo, ids[0], 4)) != METAFED_OK) return fail("agent threads", s);
    s = metafed_topology_set_agent_max_concurrency(topo, ids[0], 4);
    if (s != METAFED_OK) return fail("agent concurrency", s);
    if ((s = metafed_sim_agent_init(&fallback)) != METAFED_OK) return fail("sim agent", s);
    fallback.latency_ns = 100000; /* answers in 0.1 ms, with value 0 */
    s = metafed_topology_add_sim_agent(topo, api, names[1], &fallback, &ids[1]);
    if (s != METAFED_OK) return fail("the fallback agent", s);
    /* The service first: it is chosen 20 times for each time the fallback is. */
    if ((s = metafed_topology_set_agent_weight(topo, ids[0], 20)) != METAFED_OK) return fail("weight", s);
    /* Budgets for a loopback service: an attempt 200 ms, a sub-task 600 ms, a task 1.5 s. */
    s = metafed_topology_set_timeouts(topo, 200000000ull, 600000000ull, 1500000000ull);
    if (s != METAFED_OK) return fail("timeouts", s);
    if ((s = metafed_engine_new(topo, NULL, &engine)) != METAFED_OK) return fail("engine", s);
    metafed_topology_free(topo);

    /* A closed loop: as many tasks in flight as the agent has threads, each completion making
     * room for the next task. */
    while (done < tasks) {
        size_t n = 0;
        while (next < tasks && next - done < 4) {
            metafed_task task = {.struct_size = sizeof task};
            if ((s = metafed_task_init(&task)) != METAFED_OK) return fail("task", s);
            task.id = next++;
            task.domains = 1ull << api;
            if ((s = metafed_engine_submit_blocking(engine, &task, METAFED_FOREVER, NULL)) != METAFED_OK)
                return fail("submit", s);
        }
        out[0].struct_size = sizeof out[0];
        if ((s = metafed_engine_poll(engine, out, 64, METAFED_FOREVER, &n)) != METAFED_OK) return fail("poll", s);
        for (k = 0; k < n; k++) {
            if (out[k].id < tasks) twice += seen[out[k].id]++ > 0;
            ok += out[k].outcome == METAFED_OUTCOME_OK;
            if (out[k].outcome == METAFED_OUTCOME_OK && out[k].bodies_len > 0) {
                const char *at = (const char *)out[k].bodies; /* stride: the library's struct_size */
                served_by_http++; /* only the service answers with bytes */
                for (uint32_t b = 0; b < out[k].bodies_len; b++, at += out[k].bodies->struct_size)
                    bytes += ((const metafed_body *)at)->len;
            }
            metafed_completion_release(&out[k]); /* the reply bytes are the library's until released */
        }
        done += n;
    }
    if ((s = metafed_engine_get_stats(engine, &stats)) != METAFED_OK) return fail("stats", s);
    printf("http://%s%s: %llu of %llu tasks ok, %llu answered by the service (%llu body bytes)\n", where, svc.path,
           (unsigned long long)ok, (unsigned long long)done, (unsigned long long)served_by_http,
           (unsigned long long)bytes);
    for (k = 0; k < 2; k++) {
        metafed_agent_stats a = {.struct_size = sizeof a};
        if ((s = metafed_engine_get_agent_stats(engine, ids[k], &a)) != METAFED_OK) return fail("agent stats", s);
        printf("  agent %-8s calls %6llu  failures %6llu (abandoned %llu, no room %llu)  breaker trips %llu\n",
               names[k], (unsigned long long)a.calls, (unsigned long long)a.failures,
               (unsigned long long)a.abandoned, (unsigned long long)a.overloaded, (unsigned long long)a.trips);
    }
    metafed_engine_free(engine);
    for (i = 0; i < tasks; i++) missing += !seen[i];
    free(seen);
    if (twice || missing) fprintf(stderr, "http_agent: %llu tasks completed twice, %llu never\n",
                                  (unsigned long long)twice, (unsigned long long)missing);
    return stats.completed == tasks && done == tasks && twice == 0 && missing == 0 ? 0 : 1;
}
