/* A program of an earlier ABI never sees a reason it cannot know: an engine made with a
 * metafed_engine_config of ABI 1.2's size, from a TOML file that gives a domain adaptive shedding
 * (1.3), reports the sub-tasks its overloaded domain sheds as METAFED_REASON_DOMAIN_SHED, never
 * as METAFED_REASON_DOMAIN_OVERLOADED (13, past an array of METAFED_REASON_COUNT). */
#include "common.h"
#include <stddef.h>
#include <string.h>

int main(void) {
    metafed_topology *t = NULL;
    metafed_engine *e = NULL;
    metafed_engine_config ec = {.struct_size = sizeof ec};
    metafed_task task = {.struct_size = sizeof task};
    metafed_completion c;
    uint64_t shed = 0, counts[METAFED_REASON_COUNT] = {0}, tickets[20];
    int i;
    const char *toml =
        "[breakers.agent]\nmode = \"disabled\"\n[breakers.domain]\nmode = \"disabled\"\n[breakers.meta]\nmode = \"disabled\"\n"
        "[[domains]]\nname = \"D\"\nshedding = { target = 5.0, queue_capacity = 2 }\n"
        "agents = [{ name = \"a\", max_concurrency = 1, sim = { error_rate = 0.0, io = true, latency = { kind = \"fixed\", us = 20000.0 } } }]\n";
    OK(metafed_topology_new_from_toml(toml, &t));
    OK(metafed_engine_config_init(&ec));
    ec.struct_size = (uint32_t)offsetof(metafed_engine_config, keyed_limits_json); /* as ABI 1.2 */
    ec.workers = 1;
    OK(metafed_engine_new(t, &ec, &e));
    metafed_topology_free(t);
    for (i = 0; i < 20; i++) {
        OK(metafed_task_init(&task));
        task.id = (uint64_t)i;
        task.domains = 1;
        task.flags = METAFED_TASK_WAITABLE;
        OK(metafed_engine_submit(e, &task, &tickets[i]));
    }
    for (i = 0; i < 20; i++) {
        memset(&c, 0, sizeof c);
        c.struct_size = sizeof c;
        OK(metafed_engine_wait(e, tickets[i], METAFED_FOREVER, &c));
        CHECK(c.reason >= 0 && c.reason < METAFED_REASON_COUNT);
        counts[c.reason]++;
        shed += c.reason == METAFED_REASON_DOMAIN_SHED;
        metafed_completion_release(&c);
    }
    CHECK(shed > 0 && counts[METAFED_REASON_NONE] + shed == 20);
    metafed_engine_free(e);
    printf("old reasons: %llu sub-tasks shed by an overloaded domain reported as DOMAIN_SHED\n", (unsigned long long)shed);
    return 0;
}
