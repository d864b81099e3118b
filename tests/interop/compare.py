"""Comparing two runs of the tour: every place where real Glance and the emulator answered
differently, and the allow-list of differences that are meant (each with its reason).

A step whose statuses differ is reported as that one difference: its bodies cannot agree.
Otherwise the chosen headers and the normalized bodies are compared key by key.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.interop.tour import Observation

ABSENT = "<absent>"


@dataclass(frozen=True)
class Difference:
    step: str
    where: str  # "status", "header Location", "body.images[0].stores", ...
    glance: Any
    emulator: Any

    def __str__(self) -> str:
        return f"{self.step} | {self.where}: glance {self.glance!r}, emulator {self.emulator!r}"


@dataclass(frozen=True)
class Allowed:
    """A difference that is meant: ``step`` and ``where`` are fnmatch patterns."""

    step: str
    where: str
    reason: str

    def matches(self, difference: Difference) -> bool:
        return fnmatch.fnmatchcase(difference.step, self.step) and fnmatch.fnmatchcase(
            difference.where, self.where
        )


def differences(glance: Sequence[Observation], emulator: Sequence[Observation]) -> list[Difference]:
    found: list[Difference] = []
    steps_g = [o.step for o in glance]
    steps_e = [o.step for o in emulator]
    if steps_g != steps_e:
        # Only happens when the tour itself branched differently; compare what lines up.
        found.append(Difference("(tour)", "steps", steps_g, steps_e))
    for g, e in zip(glance, emulator, strict=False):
        if g.step != e.step:
            break
        if g.status != e.status:
            found.append(Difference(g.step, "status", g.status, e.status))
            continue
        for name in sorted(set(g.headers) | set(e.headers)):
            gv, ev = g.headers.get(name, ABSENT), e.headers.get(name, ABSENT)
            if gv != ev:
                found.append(Difference(g.step, f"header {name}", gv, ev))
        found.extend(_body(g.step, "body", g.body, e.body))
    return found


def _body(step: str, where: str, g: Any, e: Any) -> Iterable[Difference]:
    if isinstance(g, dict) and isinstance(e, dict):
        for key in sorted(set(g) | set(e)):
            yield from _body(step, f"{where}.{key}", g.get(key, ABSENT), e.get(key, ABSENT))
    elif isinstance(g, list) and isinstance(e, list) and len(g) == len(e):
        for index, (gi, ei) in enumerate(zip(g, e, strict=True)):
            yield from _body(step, f"{where}[{index}]", gi, ei)
    elif g != e:
        yield Difference(step, where, g, e)


def split(
    found: Iterable[Difference], allowed: Sequence[Allowed]
) -> tuple[list[Difference], set[Allowed]]:
    """The differences no entry allows, and the entries that allowed something."""
    unexplained: list[Difference] = []
    used: set[Allowed] = set()
    for difference in found:
        matching = [entry for entry in allowed if entry.matches(difference)]
        if matching:
            used.update(matching)
        else:
            unexplained.append(difference)
    return unexplained, used
