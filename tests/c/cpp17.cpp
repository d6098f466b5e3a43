// A C++17 program that includes the header and runs tasks through it, with RAII wrappers.
#include "metafed.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

void check(metafed_status s, const char *what) {
    if (s != METAFED_OK) throw std::runtime_error(std::string(what) + ": " + metafed_status_str(s) + ": " + metafed_last_error());
}

struct TopologyDeleter {
    void operator()(metafed_topology *t) const noexcept { metafed_topology_free(t); }
};
struct EngineDeleter {
    void operator()(metafed_engine *e) const noexcept { metafed_engine_free(e); }
};

// A handler in C++: exceptions are caught here and reported as METAFED_HANDLER_RAISED, never
// thrown through the library.
extern "C" int32_t cpp_handler(void *user_data, const metafed_request *req, metafed_response *resp) noexcept {
    try {
        auto *calls = static_cast<int *>(user_data);
        ++*calls;
        if (req->task_id == 13) throw std::runtime_error("unlucky");
        resp->value = req->task_id * 10 + req->domain;
        return METAFED_HANDLER_OK;
    } catch (...) {
        return METAFED_HANDLER_RAISED;
    }
}

}  // namespace

int main() {
    int calls = 0;
    metafed_topology *raw = nullptr;
    check(metafed_topology_new(&raw), "topology");
    std::unique_ptr<metafed_topology, TopologyDeleter> topo(raw);
    uint16_t d = 0;
    check(metafed_topology_add_domain(topo.get(), "Cpp", &d), "domain");
    check(metafed_topology_add_callback_agent(topo.get(), d, "only", cpp_handler, &calls, nullptr, 0, nullptr), "agent");
    metafed_engine *eraw = nullptr;
    check(metafed_engine_new(topo.get(), nullptr, &eraw), "engine");
    std::unique_ptr<metafed_engine, EngineDeleter> engine(eraw);

    for (uint64_t id : {7ull, 13ull}) {
        metafed_task task{};
        task.struct_size = sizeof task;
        check(metafed_task_init(&task), "task_init");
        task.flags = METAFED_TASK_WAITABLE;
        task.id = id;
        task.domains = 1ull << d;
        uint64_t ticket = 0;
        check(metafed_engine_submit(engine.get(), &task, &ticket), "submit");
        metafed_completion c{};
        c.struct_size = sizeof c;
        check(metafed_engine_wait(engine.get(), ticket, METAFED_FOREVER, &c), "wait");
        if (id == 7 && (c.outcome != METAFED_OUTCOME_OK || c.value != 70)) return 1;
        if (id == 13 && (c.outcome != METAFED_OUTCOME_FAILED || c.failures_len != 1 || c.failures[0].kind != METAFED_FAILURE_PANICKED)) return 2;
    }
    std::printf("C++17: %d handler calls, version %s\n", calls, metafed_version());
    return calls == 2 ? 0 : 3;
}
