import pytest

import metafed


def oracle_fails(task_id: int, attempt: int, p: float) -> bool:
    """The failure oracle of WORKLOADS.md."""
    m = (1 << 64) - 1
    x = (task_id * 31 + attempt) & m
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    x ^= x >> 31
    return x < int(p * 2**64)


@pytest.fixture
def seed_engine():
    with metafed.Engine(metafed.Topology.seed(0.12)) as e:
        yield e
