/* The struct_size rule across ABI 1.0 and 1.1: metafed_engine_config gained spare_agents and
 * spare_domains in 1.1, metafed_stats gained events_dropped. A caller whose struct is 1.0's size
 * (as a program compiled against the 1.0 header passes) gets the defaults of what it does not
 * know, and the library writes nothing past that size; a 1.1 caller sets and reads them. run.sh also builds every C test against tests/c/compat/1.0/metafed.h and runs
 * it against this library. */
#include "common.h"
#include <stddef.h>
#include <string.h>

static const uint32_t size_1_0 = (uint32_t)offsetof(metafed_engine_config, spare_agents);

static int32_t answer(void *u, const metafed_request *r, metafed_response *resp) {
    (void)u;
    resp->value = r->task_id;
    return METAFED_HANDLER_OK;
}

/* A topology declaring the agent "Extra" of domain "API", for metafed_engine_add_agent. */
static metafed_topology *extra_agent(void) {
    metafed_topology *t = NULL;
    uint16_t d = 0;
    OK(metafed_topology_new(&t));
    OK(metafed_topology_add_domain(t, "API", &d));
    OK(metafed_topology_add_callback_agent(t, d, "Extra", answer, NULL, NULL, 0, NULL));
    return t;
}

/* Starts the seed's engine with `cfg` and says whether an agent and a domain can be added. */
static void adds(const metafed_engine_config *cfg, metafed_status want_agent, metafed_status want_domain) {
    metafed_topology *seed = NULL, *extra = extra_agent();
    metafed_engine *e = NULL;
    uint16_t id = 0;
    OK(metafed_topology_new_seed(0.0, &seed));
    OK(metafed_engine_new(seed, cfg, &e));
    CHECK(metafed_engine_add_agent(e, extra, "API", "Extra", &id) == want_agent);
    if (want_agent != METAFED_OK) CHECK(strstr(metafed_last_error(), "spare_agents = 0") != NULL);
    CHECK(metafed_engine_add_domain(e, "Geo", &id) == want_domain);
    if (want_domain != METAFED_OK) CHECK(strstr(metafed_last_error(), "spare_domains = 0") != NULL);
    metafed_engine_free(e);
    metafed_topology_free(seed);
    metafed_topology_free(extra);
}

int main(void) {
    metafed_engine_config cfg = {.struct_size = sizeof cfg};
    metafed_topology *seed = NULL;
    metafed_engine *e = NULL;

    CHECK(size_1_0 < sizeof cfg);
    OK(metafed_engine_config_init(&cfg));
    CHECK(cfg.struct_size == sizeof cfg && cfg.spare_agents == 16 && cfg.spare_domains == 4);

    /* A 1.0 caller: _init fills the 1.0 fields and nothing past them. */
    memset(&cfg, 0xAB, sizeof cfg);
    cfg.struct_size = size_1_0;
    OK(metafed_engine_config_init(&cfg));
    CHECK(cfg.struct_size == size_1_0 && cfg.max_in_flight > 0 && cfg.on_complete == NULL);
    CHECK(cfg.spare_agents == 0xABABABABu && cfg.spare_domains == 0xABABABABu);
    /* ... and the engine reads nothing past them: the bytes there are not its to read. */
    adds(&cfg, METAFED_OK, METAFED_OK);

    /* A 1.1 caller sets them: none spare, then too many. */
    cfg.struct_size = sizeof cfg;
    OK(metafed_engine_config_init(&cfg));
    cfg.spare_agents = 0;
    cfg.spare_domains = 0;
    adds(&cfg, METAFED_E_CONFIG, METAFED_E_CONFIG);
    cfg.spare_agents = 5000;
    OK(metafed_topology_new_seed(0.0, &seed));
    FAILS(METAFED_E_CONFIG, metafed_engine_new(seed, &cfg, &e));
    CHECK(strstr(metafed_last_error(), "spare_agents") != NULL);

    /* A size between two forms holds the fields it covers: spare_agents, not spare_domains. */
    OK(metafed_engine_config_init(&cfg));
    cfg.spare_agents = 0;
    cfg.spare_domains = 0;
    cfg.struct_size = (uint32_t)offsetof(metafed_engine_config, spare_domains);
    adds(&cfg, METAFED_E_CONFIG, METAFED_OK);

    /* Below 1.0's size, or above this library's, is refused. */
    cfg.struct_size = size_1_0 - 8;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_new(seed, &cfg, &e));
    cfg.struct_size = sizeof cfg + 8;
    FAILS(METAFED_E_STRUCT_SIZE, metafed_engine_config_init(&cfg));

    /* An output struct: a 1.0-sized metafed_stats gets the 1.0 fields and nothing past them. */
    {
        metafed_stats stats;
        OK(metafed_engine_new(seed, NULL, &e));
        memset(&stats, 0xCD, sizeof stats);
        stats.struct_size = (uint32_t)offsetof(metafed_stats, events_dropped);
        OK(metafed_engine_get_stats(e, &stats));
        CHECK(stats.struct_size == offsetof(metafed_stats, events_dropped) && stats.domains == 3 && stats.agents == 9);
        CHECK(stats.events_dropped == 0xCDCDCDCDCDCDCDCDull);
        stats.struct_size = sizeof stats;
        OK(metafed_engine_get_stats(e, &stats));
        CHECK(stats.events_dropped == 0);
        metafed_engine_free(e);
    }
    metafed_topology_free(seed);
    printf("growth from C: 1.0-sized and 1.1-sized engine configs and stats both served\n");
    return 0;
}
