"""The settings: frozen, keyword-only dataclasses that the loader builds and validates, the
modes a key may choose from (``StrEnum``s, equal to their strings), the spool reserve's variable,
and the ``Secret`` wrapper that keeps passwords and tokens out of every message, log and repr.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from collections.abc import (
    Collection,
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from transfer.bandwidth import Timetable
from transfer.errors import (
    ConfigError,
)
from transfer.models import Image

NHN_IDENTITY_URL = "https://api-identity-infrastructure.nhncloudservice.com/v2.0"


class Secret:
    """A string that never shows itself: ``str``, ``repr`` and f-strings give ``'***'``.

    Call ``reveal()`` at the one place that must send it (an HTTP header or body).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class IdentityVersion(enum.StrEnum):
    """The Keystone API a cloud's ``identity_url`` speaks."""

    V2 = "v2.0"
    V3 = "v3"


def identity_version(url: str) -> IdentityVersion | None:
    """The Keystone version an identity URL names: ``.../v2.0`` or ``.../v3``; None for the
    bare root of the service (its version is discovered); ValueError for any other path."""
    path = urlsplit(url).path.rstrip("/")
    if not path:
        return None
    for version in IdentityVersion:
        if path.endswith("/" + version.value):
            return version
    raise ValueError(
        "expected an identity URL ending in /v3 or /v2.0, or the bare root of the identity "
        f"service (its versions are discovered), got {url!r}"
    )


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How to reach one tenant's Image API.

    Password mode: ``identity_url`` + ``tenant_id`` (or ``tenant_name``) + ``username`` +
    ``password``; with Keystone v3 also the user's domain (and the project's, for a project
    name).  Application credential mode (v3): ``application_credential_id`` (or its name with
    ``username`` and the user's domain) + ``application_credential_secret``; the project comes
    with the token.  In both, the image endpoint of a region comes from the token's service
    catalog unless ``endpoints`` names it.  Token mode (no identity service): ``token`` +
    ``endpoints`` (region name -> image URL).  ``tenant_id``/``tenant_name`` are Keystone v3's
    project id and name.  ``region`` is the cloud's default region (``region_name``).
    """

    name: str = "default"  # the config's name for this cloud, used in messages
    identity_url: str = NHN_IDENTITY_URL
    tenant_id: str | None = None
    tenant_name: str | None = None
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None  # path to a CA bundle; None = the system's
    verify_tls: bool = True
    user_domain_id: str | None = None
    user_domain_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    application_credential_id: str | None = None
    application_credential_name: str | None = None
    application_credential_secret: Secret | None = None
    region: str | None = None

    @property
    def uses_token(self) -> bool:
        return self.token is not None

    @property
    def uses_application_credential(self) -> bool:
        return self.application_credential_secret is not None

    @property
    def has_v3_parts(self) -> bool:
        """Whether anything only Keystone v3 knows is set (domains, an application credential)."""
        return self.uses_application_credential or any(
            (
                self.user_domain_id,
                self.user_domain_name,
                self.project_domain_id,
                self.project_domain_name,
            )
        )


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.StrEnum):
    """How log lines are written: compact console lines (the default), or JSON lines."""

    AUTO = "auto"  # the same as console: kept so that older configs still load
    CONSOLE = "console"
    JSON = "json"


class VerifyMode(enum.StrEnum):
    """How a copy is proved equal to its source."""

    AUTO = "auto"  # the servers' hashes prove a copy; hash in flight only what a side lacks
    FULL = "full"  # also hash every byte in flight


class MismatchAction(enum.StrEnum):
    """What becomes of a target whose bytes do not match the source."""

    DELETE = "delete"
    QUARANTINE = "quarantine"  # rename and tag the bad target, keep it


class SpoolMode(enum.StrEnum):
    """Whether a job downloads a source image to a spool file before uploading it."""

    OFF = "off"
    AUTO = "auto"
    ALWAYS = "always"


# An environment variable, not a key of the file: how much disk a spool must leave free to the
# journal and the system belongs to the host a run is on, not to a job.
SPOOL_RESERVE_ENV = "IMAGE_TRANSFER_SPOOL_RESERVE"
DEFAULT_SPOOL_RESERVE = 512 * 1024 * 1024

# API values, sent as they are: plain strings.
OS_TYPES = ("linux", "windows")
VISIBILITIES = ("public", "private", "shared", "community")

# Names end up in journal keys, marker properties and "cloud/REGION" target keys.
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, kw_only=True)
class LeaseSettings:
    """How a worker holds the items it claims from a shared journal (seconds).

    ``lease_seconds``: how long a claim lasts without renewal (a dead worker's items are taken
    over after it); ``renew_seconds``: how often the leases are renewed (default a third of
    the lease); ``call_seconds``: the longest one call that changes a cloud may take under a
    lease (default a third of the lease): it starts only while at least that much of the lease
    is left, and is cut off after it; ``max_takeovers``: how many times an item's lease may
    run out before the item is failed instead of handed out again.
    """

    lease_seconds: float = 30.0
    renew_seconds: float | None = None
    call_seconds: float | None = None
    max_takeovers: int = 3

    @property
    def renew(self) -> float:
        return self.renew_seconds if self.renew_seconds is not None else self.lease_seconds / 3

    @property
    def call(self) -> float:
        return self.call_seconds if self.call_seconds is not None else self.lease_seconds / 3

    def problems(self, names: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """What is wrong with these settings, as (setting, message) pairs, the settings named
        as ``names`` spells them (``journal.lease_seconds``, ``--lease-seconds``, ...)."""
        names = names or {}

        def name(key: str) -> str:
            return names.get(key, key)

        problems = [
            (name(key), f"expected a positive number of seconds, got {value:g}")
            for key, value in (
                ("lease_seconds", self.lease_seconds),
                ("renew_seconds", self.renew_seconds),
                ("call_seconds", self.call_seconds),
            )
            if value is not None and not 0 < value < math.inf
        ]
        if self.max_takeovers < 0:
            problems.append(
                (name("max_takeovers"), f"expected 0 or more, got {self.max_takeovers}")
            )
        if not problems and self.renew + self.call >= self.lease_seconds:
            problems.append(
                (
                    name("lease_seconds"),
                    f"expected more than {name('renew_seconds')} ({self.renew:g}) plus "
                    f"{name('call_seconds')} ({self.call:g}), got {self.lease_seconds:g}: a call "
                    "that starts just before a renewal must end before the lease can run out",
                )
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class JournalConfig:
    """Where the job journal lives: an SQLite file (``path``), or a PostgreSQL database
    several hosts share (``url``, without its password, which is in ``password`` or left to
    libpq: ``~/.pgpass``, ``PGPASSWORD``).  With ``url``, ``path`` still anchors this host's
    local state (the spool folder's default place, lock files) at its default location."""

    path: Path
    url: str | None = None
    password: Secret | None = None
    lease: LeaseSettings = field(default_factory=LeaseSettings)


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.AUTO


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One side of a job: a cloud (tenant credentials) and a region."""

    cloud: str
    region: str  # upper case

    @property
    def key(self) -> str:
        return f"{self.cloud}/{self.region}"


@dataclass(frozen=True, kw_only=True)
class SelectConfig:
    """Which source images a job copies: API filters first, then local globs and id lists."""

    visibility: str | None = None
    owner: str | None = None
    status: str | None = "active"
    size_min: int | None = None
    size_max: int | None = None
    nhncloud_product: str | None = None
    member_status: str | None = None
    tags: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    #: Custom properties a source must have, with exactly these (string) values.
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def api_filters(self) -> dict[str, str | int | list[str]]:
        """Query parameters for the list call (``tag`` repeats; no ``limit`` or ``marker``)."""
        filters: dict[str, str | int | list[str]] = {}
        for key in ("visibility", "owner", "status", "nhncloud_product", "member_status"):
            value = getattr(self, key)
            if value is not None:
                filters[key] = value
        if self.size_min is not None:
            filters["size_min"] = self.size_min
        if self.size_max is not None:
            filters["size_max"] = self.size_max
        if self.tags:
            filters["tag"] = list(self.tags)
        # One literal name can be filtered by the server; globs only locally.
        if len(self.names) == 1 and not _GLOB_CHARS & set(self.names[0]):
            filters["name"] = self.names[0]
        return filters

    def matches(self, image: Image) -> bool:
        """Whether a listed image is selected (re-checks the API filters the server may ignore).

        Every filter given must hold.  A name must match one of ``names`` (when any are given)
        and none of ``exclude_names``: an image both match is excluded.

        Public images (the provider's own) are selected only when ``visibility = "public"`` is
        asked for or their id is listed in ``ids``: users cannot create public images, and a
        migration that silently copied every public image would be a costly surprise.
        """
        if image.id in self.exclude_ids:
            return False
        if self.ids and image.id not in self.ids:
            return False
        if self.status is not None and image.status != self.status:
            return False
        if self.visibility is not None and image.visibility != self.visibility:
            return False
        if (
            image.visibility == "public"
            and self.visibility != "public"
            and image.id not in self.ids
        ):
            return False
        if self.owner is not None and image.owner != self.owner:
            return False
        if self.size_min is not None and (image.size is None or image.size < self.size_min):
            return False
        if self.size_max is not None and (image.size is None or image.size > self.size_max):
            return False
        if self.tags and not set(self.tags) <= set(image.tags):
            return False
        if self.properties:
            have = image.properties
            if any(k not in have or str(have[k]) != v for k, v in self.properties.items()):
                return False
        name = image.name or ""
        if self.names and not any(fnmatch.fnmatchcase(name, glob) for glob in self.names):
            return False
        return not any(fnmatch.fnmatchcase(name, glob) for glob in self.exclude_names)


@dataclass(frozen=True, kw_only=True)
class CopyConfig:
    """What a job copies besides the bytes.  Cloud names are already resolved to tenant ids."""

    properties: bool = True
    exclude_properties: tuple[str, ...] = ()
    tags: bool = True
    protected: bool = False
    visibility: bool = True
    members: bool = True
    accept: bool = True
    default_os_type: str = "linux"
    share_with: tuple[str, ...] = ()  # tenant ids every target is shared with
    member_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def excluded(self, key: str) -> bool:
        """Whether a property is never copied (nor removed on the target)."""
        return any(fnmatch.fnmatchcase(key, glob) for glob in self.exclude_properties)


@dataclass(frozen=True)
class Backoff:
    """How long one image waits before its next attempt: exponential from ``first`` seconds,
    at most ``cap``, with full jitter (a uniform draw below that bound), and never less than a
    ``Retry-After`` the last error carried (``retry_backoff = "2s..60s"``); a stop or the
    job's ``max_duration`` cuts any wait short."""

    first: float = 2.0
    cap: float = 60.0

    def delay(self, failures: int, draw: float, retry_after: float | None = None) -> float:
        """The wait after the ``failures``-th failed attempt (1, 2, ...); ``draw`` in [0, 1)."""
        bound = min(self.cap, self.first * 2.0 ** max(0, failures - 1))
        return float(max(bound * draw, retry_after or 0.0))

    def __str__(self) -> str:
        return f"{self.first:g}s..{self.cap:g}s"


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    name: str
    source: Endpoint
    targets: tuple[Endpoint, ...]
    transfers: int = 4
    checkers: int = 8
    retries: int = 3
    retry_backoff: Backoff = field(default_factory=Backoff)  # between one image's attempts
    #: Seconds to wait for Glance to take a target out of saving/uploading/importing by itself.
    settle_timeout: float = 120.0
    verify: VerifyMode = VerifyMode.AUTO
    on_mismatch: MismatchAction = MismatchAction.DELETE
    spool: SpoolMode = SpoolMode.OFF
    spool_dir: Path | None = None  # default: "spool" beside the journal
    bwlimit: Timetable | None = None  # None: no limit
    max_duration: float | None = None  # seconds; after it no new image starts
    request_rate: float | None = None  # API requests per second per cloud session
    prune: bool = False  # delete this job's targets whose source is gone or superseded
    max_delete: int | None = None  # refuse a run that would delete more than this
    select: SelectConfig = field(default_factory=SelectConfig)
    copy: CopyConfig = field(default_factory=CopyConfig)


@dataclass(frozen=True, kw_only=True)
class Config:
    path: Path
    journal: JournalConfig
    log: LogConfig
    clouds: Mapping[str, Credentials]
    jobs: Mapping[str, JobConfig]
    spool_reserve: int = DEFAULT_SPOOL_RESERVE  # bytes kept free beside spool files
    warnings: tuple[str, ...] = ()

    def job(self, name: str) -> JobConfig:
        """The job of that name; a ConfigError naming the defined ones otherwise."""
        try:
            return self.jobs[name]
        except KeyError:
            defined = ", ".join(self.jobs) or "none"
            hint = suggestion(name, self.jobs)
            message = f"{self.path}: no job named {name!r}{hint} (defined: {defined})"
            raise ConfigError(message) from None

    def cloud_for_tenant(self, tenant_id: str) -> Credentials | None:
        """The first cloud whose credentials belong to that tenant (to accept memberships)."""
        for creds in self.clouds.values():
            if creds.tenant_id == tenant_id:
                return creds
        return None


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """How the client talks HTTP: timeouts (seconds), pool size, retry budget, read size."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # idle time between two reads, not a whole-body deadline
    pool_per_host: int = 16
    attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_total: float = 300.0
    chunk_size: int = 1 << 20
    #: At most this many requests per second through one session (None: no cap), for tenants
    #: whose API is rate-limited.  Each attempt counts, retries included.
    requests_per_second: float | None = None

    def __post_init__(self) -> None:
        positive = ("connect_timeout", "read_timeout", "pool_per_host", "attempts", "chunk_size")
        problems = [
            f"http setting {name!r} must be positive, got {getattr(self, name)!r}"
            for name in positive
            if getattr(self, name) <= 0
        ]
        problems += [
            f"http setting {name!r} must not be negative, got {getattr(self, name)!r}"
            for name in ("backoff_base", "backoff_cap", "retry_total")
            if getattr(self, name) < 0
        ]
        if self.requests_per_second is not None and not self.requests_per_second > 0:
            problems.append(
                f"http setting 'requests_per_second' must be positive, "
                f"got {self.requests_per_second!r}"
            )
        if problems:
            raise ConfigError(problems[0], problems=problems)


def suggestion(key: str, known: Collection[str]) -> str:
    import difflib  # only for a key that is misspelt

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
