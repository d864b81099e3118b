"""The generic half of the loader: ``Checks``, which collects every problem and warning of one
file (never stopping at the first), and its typed getters (table, string, choice, boolean,
integer, rate, duration, strings, file path, a secret from an environment variable).

A problem reads ``FILE: KEY: what was expected, got WHAT``; ``got`` shows a wrong value itself
only when it is a short scalar and not a secret, else only its kind.  The section readers
(``journal_log``, ``clouds``, ``jobs``) build on these getters and never format a problem alone.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from math import inf
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from transfer.bandwidth import Timetable, parse_bwlimit
from transfer.config.settings import Backoff, Secret, suggestion
from transfer.errors import ConfigError

# Names end up in journal keys, marker properties and "cloud/REGION" target keys.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REGION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")
_SECRET_KEYS = frozenset({"password"})

Mode = TypeVar("Mode", bound=enum.StrEnum)


def parse_duration(text: str) -> float | None:
    """``"6h"``, ``"1h30m"``, ``"90m"``, ``"45s"``, ``"3600"`` -> seconds; None when malformed."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def got(value: Any, *, secret: bool = False) -> str:
    """How a wrong value is shown: itself when scalar and not secret, else only its kind."""
    if secret:
        return kind(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return kind(value)


def join(where: str, key: str | int) -> str:
    """The dotted name of a key below ``where``, as problems print it (``jobs[0].copy.'a b'``)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if not where:
        return key
    if NAME_RE.fullmatch(key):
        return f"{where}.{key}"
    return f"{where}.{key!r}"


def is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class Checks:
    """Collects problems and warnings while reading one file; never stops at the first one.

    ``path`` names the file in every message; relative paths in it are relative to its folder.
    ``environ`` is where ``~`` and secrets from variables are looked up (tests pass their own).
    """

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.file = str(path)
        self.base = path.absolute().parent
        self.environ = environ
        self.problems: list[str] = []
        self.warnings: list[str] = []

    # -- what was found ----------------------------------------------------------------------

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def outside_file(self, variable: str, message: str) -> None:
        """A problem with an environment variable: no key of the file, so no file prefix."""
        self.problems.append(f"{variable}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.file}: {key}: {message}")

    def problems_for(self, where: str) -> bool:
        """Whether any problem so far is about ``where`` or a key below it."""
        prefix = f"{self.file}: {where}"
        return any(p == prefix or p.startswith((prefix + ".", prefix + ":")) for p in self.problems)

    def raise_problems(self) -> None:
        if self.problems:
            count = len(self.problems)
            noun = "problem" if count == 1 else "problems"
            raise ConfigError(
                f"{self.file}: {count} {noun} in the configuration", problems=self.problems
            )

    # -- typed getters -----------------------------------------------------------------------

    def check_keys(self, table: Mapping[str, Any], where: str, known: Collection[str]) -> None:
        for key in table:
            if key not in known:
                self.problem(join(where, key), f"unknown key{suggestion(key, known)}")

    def table(self, value: Any, where: str, known: Collection[str]) -> dict[str, Any] | None:
        """A table with only ``known`` keys; ``{}`` when absent, None when not a table."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"expected a table, got {got(value)}")
            return None
        self.check_keys(value, where, known)
        return value

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        choices: Collection[str] | None = None,
        lower: bool = False,
    ) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        name = join(where, key)
        secret = key in _SECRET_KEYS
        if not isinstance(value, str) or not value.strip():
            self.problem(name, f"expected a non-empty string, got {got(value, secret=secret)}")
            return None
        if "\x00" in value:
            self.problem(name, "expected text without NUL characters")
            return None
        if lower:
            value = value.lower()
        if choices is not None and value not in choices:
            options = "|".join(choices)
            self.problem(name, f"expected one of {options}, got {got(table[key])}")
            return None
        return value

    def choice(
        self, table: Mapping[str, Any], key: str, where: str, modes: type[Mode], default: Mode
    ) -> Mode:
        """One of the ``modes`` (case-insensitive); ``default`` when absent or wrong."""
        value = self.string(table, key, where, choices=tuple(modes), lower=True)
        return default if value is None else modes(value)

    def boolean(self, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(join(where, key), f"expected true or false, got {got(value)}")
            return default
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        low: int,
        high: int | None,
        default: int | None,
    ) -> int | None:
        value = table.get(key, default)
        if value is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"of at least {low}"
            self.problem(join(where, key), f"expected an integer {wanted}, got {got(value)}")
            return default
        assert isinstance(value, int)
        return value

    def bwlimit(self, table: Mapping[str, Any], key: str, where: str) -> Timetable | None:
        """A rate or a timetable of rates; None when absent, wrong or always off."""
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(
                join(where, key),
                f'expected a rate like "10M" or a timetable like "01:00,500M 07:00,off", '
                f"got {got(value)}",
            )
            return None
        try:
            timetable = parse_bwlimit(value)
        except ValueError as exc:
            self.problem(join(where, key), str(exc))
            return None
        if timetable.unlimited:
            return None
        return timetable

    def duration(self, table: Mapping[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
        if seconds is None or not 0 < seconds < inf:
            self.problem(
                join(where, key),
                f'expected a duration like "6h", "90m" or a number of seconds, got {got(value)}',
            )
            return None
        return seconds

    def backoff(self, table: Mapping[str, Any], key: str, where: str) -> Backoff | None:
        """``"FIRST..CAP"``, two durations (``"2s..60s"``; ``"0s..0s"`` for none)."""
        value = table.get(key)
        if value is None:
            return None
        first = cap = None
        if isinstance(value, str) and value.count("..") == 1:
            low, high = value.split("..")
            first, cap = parse_duration(low), parse_duration(high)
        if first is None or cap is None or not 0 <= first <= cap < inf:
            self.problem(
                join(where, key),
                f'expected "FIRST..MAX" durations like "2s..60s", FIRST at most MAX, got '
                f"{got(value)}",
            )
            return None
        return Backoff(first, cap)

    def positive_number(self, table: Mapping[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < inf:
            self.problem(join(where, key), f"expected a positive number, got {got(value)}")
            return None
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        """Distinct non-empty strings, in their order; a lone string counts as a list of one."""
        value = table.get(key)
        if value is None:
            return ()
        if isinstance(value, str):  # a lone string is an easy slip for a one-item list
            value = [value]
        name = join(where, key)
        if not isinstance(value, list):
            self.problem(name, f"expected an array of strings, got {got(value)}")
            return ()
        good: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(join(name, index), f"expected a non-empty string, got {got(item)}")
            elif item not in good:
                good.append(item)
        return tuple(good)

    def file_path(self, value: str) -> Path:
        """``~`` expanded with ``environ``'s HOME; a relative path is relative to the file."""
        expanded = value
        if value == "~" or value.startswith("~/"):
            home = self.environ.get("HOME") or str(Path.home())
            expanded = home + value[1:]
        path = Path(expanded)
        return path if path.is_absolute() else self.base / path

    def env_secret(self, variable: Any, where: str) -> Secret | None:
        """The value of the environment variable named ``variable``, never shown."""
        if not isinstance(variable, str) or not ENV_RE.fullmatch(variable):
            self.problem(where, f"expected an environment variable name, got {got(variable)}")
            return None
        resolved = self.environ.get(variable)
        if resolved is None:
            self.problem(where, f"environment variable {variable} is not set")
            return None
        if not resolved:
            self.problem(where, f"environment variable {variable} is empty")
            return None
        return Secret(resolved)
