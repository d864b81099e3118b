"""What the live page's tests share: the page's address as the command announces it, plain
HTTP requests to it (real sockets), and the checks every answer must pass."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from tests.engine.helpers import CLOUDS, Outcome

ANNOUNCED = re.compile(r"image-transfer: live page of journal (.+) on (http://\S+?/)")
#: Every password a test config's clouds have: no page or answer may show one.
PASSWORDS = tuple(spec.password for spec in CLOUDS.values())
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def announced(proc: asyncio.subprocess.Process, within: float = 30.0) -> str:
    """The page's URL, from the line ``serve`` (or ``--serve``) writes on stderr once it
    listens; the lines before it are kept in the error, should it never come."""
    assert proc.stderr is not None
    seen: list[str] = []

    async def scan() -> str:
        assert proc.stderr is not None
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"no live page announced; stderr:\n{''.join(seen)}")
            seen.append(line)
            found = ANNOUNCED.search(line)
            if found:
                return found.group(2)

    try:
        return await asyncio.wait_for(scan(), within)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"no live page in {within}s; stderr:\n{''.join(seen)}") from None


async def stop(proc: asyncio.subprocess.Process) -> Outcome:
    """SIGTERM, then its exit and the rest of its output."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def get(
    http: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


def safe_answer_problems(answer: Answer, secrets: tuple[str, ...] = PASSWORDS) -> list[str]:
    """What is wrong with any answer of the page: a missing security header, a secret or a
    traceback in it."""
    problems = []
    csp = answer.headers.get("Content-Security-Policy", "")
    for needed in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        if needed not in csp:
            problems.append(f"CSP lacks {needed!r}: {csp!r}")
    if "unsafe-inline" in csp or "unsafe-eval" in csp:
        problems.append(f"CSP allows inline code: {csp!r}")
    for name, value in SECURITY_HEADERS.items():
        if answer.headers.get(name) != value:
            problems.append(f"{name}: {answer.headers.get(name)!r}, expected {value!r}")
    everything = answer.body.decode(errors="replace") + "".join(
        f"{k}: {v}\n" for k, v in answer.headers.items()
    )
    for secret in secrets:
        if secret in everything:
            problems.append(f"a secret ({secret[:3]}...) in the answer")
    if "Traceback" in everything:
        problems.append("a traceback in the answer")
    return problems
