"""Every enum of the package against the library's constants: each C constant has the Python
member of the same value, and each member its constant (a new reason or cause in the library
without its Python twin fails here)."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import metafed
from metafed import _ops

_DEFINES = {
    m.group(1): int(m.group(2), 0)
    for m in re.finditer(r"^#define (METAFED_[A-Z0-9_]+) (-?(?:0x[0-9A-Fa-f]+|\d+))$", (Path(metafed.__file__).parent / "_cdef.h").read_text(), re.M)
}


def _constants(prefix: str, skip: tuple[str, ...] = ("COUNT",)) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in _DEFINES.items() if k.startswith(prefix) and k[len(prefix):] not in skip}


def _check(cls: type[enum.IntEnum], prefix: str, aliases: dict[str, str] | None = None) -> None:
    c = _constants(prefix)
    py = {aliases.get(m.name, m.name) if aliases else m.name: int(m) for m in cls}
    assert c == py, f"{cls.__name__} against {prefix}*: C only {set(c.items()) - set(py.items())}, Python only {set(py.items()) - set(c.items())}"


def test_enums_match_the_library_constants() -> None:
    _check(metafed.Outcome, "METAFED_OUTCOME_")
    _check(metafed.Reason, "METAFED_REASON_")
    _check(metafed.FailureKind, "METAFED_FAILURE_", {"RAISED": "PANICKED"})
    _check(metafed.Level, "METAFED_LEVEL_")
    _check(metafed.BreakerMode, "METAFED_BREAKER_")
    _check(metafed.BreakerState, "METAFED_STATE_")


def test_breaker_causes_and_balance_kinds_match() -> None:
    causes = _constants("METAFED_CAUSE_")
    assert {name.lower(): v for name, v in causes.items()} == {v: k for k, v in _ops._CAUSES.items()}
    assert _constants("METAFED_BALANCE_") == {k.upper(): i for i, k in enumerate(metafed.Balance.KINDS)}


def test_the_attribute_limit_is_the_librarys() -> None:
    from metafed import _classify

    assert _classify.MAX_ATTRS == _DEFINES["METAFED_MAX_ATTRS"]
