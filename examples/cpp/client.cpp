// A small metafed client in C++17: the seed's 3 x 3 federation plus one agent of your own
// written in C++, a batch of waitable tasks, the stats. Build it with CMake (CMakeLists.txt
// here) against an installed metafed: find_package(metafed) gives metafed::metafed.
#include <metafed.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Every metafed call returns a status; this turns a failure into an exception with the
// library's message.
void check(metafed_status s, const char *what) {
    if (s != METAFED_OK) {
        throw std::runtime_error(std::string(what) + ": " + metafed_status_str(s) + ": " + metafed_last_error());
    }
}

struct TopologyFree {
    void operator()(metafed_topology *t) const noexcept { metafed_topology_free(t); }
};
struct EngineFree {
    void operator()(metafed_engine *e) const noexcept { metafed_engine_free(e); }
};
using Topology = std::unique_ptr<metafed_topology, TopologyFree>;
using Engine = std::unique_ptr<metafed_engine, EngineFree>;

// Your agent. Exceptions must not cross into the library: catch them and say so.
extern "C" int32_t lookup(void *, const metafed_request *req, metafed_response *resp) noexcept {
    try {
        if (req->task_id % 17 == 0) throw std::runtime_error("not found");
        resp->value = req->task_id + 1000;
        return METAFED_HANDLER_OK;
    } catch (...) {
        return METAFED_HANDLER_RAISED;
    }
}

}  // namespace

int main() try {
    metafed_topology *t = nullptr;
    check(metafed_topology_new_seed(0.12, &t), "topology");
    Topology topo(t);
    uint16_t db = 0;
    check(metafed_topology_get_domain_id(topo.get(), "Database", &db), "domain");
    check(metafed_topology_add_callback_agent(topo.get(), db, "Lookup", lookup, nullptr, nullptr, 0, nullptr), "agent");
    metafed_engine *e = nullptr;
    check(metafed_engine_new(topo.get(), nullptr, &e), "engine");
    Engine engine(e);

    std::vector<uint64_t> tickets;
    for (uint64_t id = 1; id <= 200; ++id) {
        metafed_task task{};
        task.struct_size = sizeof task;  // every struct starts with its size, set before _init
        check(metafed_task_init(&task), "task");
        task.id = id;
        task.domains = 1ull << db;
        task.flags = METAFED_TASK_WAITABLE;
        uint64_t ticket = 0;
        check(metafed_engine_submit_blocking(engine.get(), &task, METAFED_FOREVER, &ticket), "submit");
        tickets.push_back(ticket);
    }
    unsigned ok = 0;
    for (uint64_t ticket : tickets) {
        metafed_completion c{};
        c.struct_size = sizeof c;
        check(metafed_engine_wait(engine.get(), ticket, METAFED_FOREVER, &c), "wait");
        ok += c.outcome == METAFED_OUTCOME_OK;
        metafed_completion_release(&c);
    }
    std::printf("metafed %s from C++: %u of %zu tasks ok\n", metafed_version(), ok, tickets.size());
    return ok > 0 ? 0 : 1;
} catch (const std::exception &err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 1;
}
