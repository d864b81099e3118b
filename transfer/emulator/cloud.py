"""``Emulator``: one emulated NHN cloud in this process: an identity service (with the admin
endpoint) on one port and one Image API server per region on ports of their own, sharing
tenants, tokens and faults; plus the in-process controls tests and benchmarks use.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from transfer.emulator import schema
from transfer.emulator.admin import AdminService
from transfer.emulator.faults import FaultInjector, Faults
from transfer.emulator.flavours import flavour_named
from transfer.emulator.identity import DEFAULT_TENANTS, IdentityService, TenantSpec, TokenBook
from transfer.emulator.images import RegionService
from transfer.emulator.middleware import Counters, RouteTable, request_middleware
from transfer.emulator.responses import HttpError
from transfer.emulator.store import RegionStore
from transfer.emulator.streams import CHUNK, fill_pieces, write_pieces

# Seconds the servers give requests still running at close before cancelling them.
_SHUTDOWN_GRACE = 0.5


class Emulator:
    """The emulated cloud.  ``async with Emulator() as emu:`` starts it on loopback.

    ``port=0`` picks free ports; ``port=N`` puts identity on N and the regions on N+1, N+2, ...
    in the given order.  Image bytes live under ``state_dir`` (a temporary directory removed at
    close when None); with a ``state_dir`` the metadata is kept there too, across restarts.
    ``flavour`` is ``nhn`` (NHN Cloud's documented rules) or ``glance`` (upstream Glance 33's);
    ``identity_versions`` defaults to the flavour's (``v2.0`` for nhn, ``v3`` for glance).
    """

    def __init__(
        self,
        regions: Sequence[str] = ("KR1", "KR2"),
        tenants: Sequence[TenantSpec] = DEFAULT_TENANTS,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        token_ttl: float = 43200.0,
        seed: int = 0,
        default_page_size: int = 25,
        max_page_size: int = 1000,
        image_size_cap: int | None = None,
        faults: Faults | None = None,
        identity_versions: Sequence[str] | None = None,
        flavour: str = "nhn",
    ) -> None:
        self._flavour = flavour_named(flavour)
        region_names = tuple(regions)
        if not region_names:
            raise ValueError("regions: at least one region is needed")
        if len(set(region_names)) != len(region_names):
            raise ValueError("regions: names must be unique")
        for name in region_names:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"regions: {name!r} is not a usable region name")
        tenant_specs = tuple(tenants)
        if not tenant_specs:
            raise ValueError("tenants: at least one tenant is needed")
        if len({t.tenant_id for t in tenant_specs}) != len(tenant_specs) or len(
            {t.name for t in tenant_specs}
        ) != len(tenant_specs):
            raise ValueError("tenants: names and ids must be unique")
        if not 0 <= port <= 65535 - len(region_names):
            raise ValueError(f"port: {port} leaves no room for {len(region_names)} region ports")
        if token_ttl <= 0:
            raise ValueError("token_ttl: expected a positive number of seconds")
        if not 1 <= default_page_size <= max_page_size:
            raise ValueError("page sizes: expected 1 <= default_page_size <= max_page_size")
        if image_size_cap is not None and image_size_cap < 0:
            raise ValueError("image_size_cap: expected a non-negative number of bytes")
        self._region_names = region_names
        self._tenants = tenant_specs
        self._host = host
        self._port = port
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._token_ttl = float(token_ttl)
        self._seed = seed
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size
        self._image_size_cap = image_size_cap
        self._faults = faults if faults is not None else Faults()
        self._identity_versions = tuple(
            self._flavour.identity_versions if identity_versions is None else identity_versions
        )

        self._tokens = TokenBook(self._token_ttl)
        self._injector = FaultInjector(self._faults, seed)
        self._identity_counters = Counters()
        self._services: dict[str, RegionService] = {}
        self._identity: IdentityService | None = None
        self._runners: list[web.AppRunner] = []
        self._executor: ThreadPoolExecutor | None = None
        self._temp_dir: Path | None = None
        self._identity_root: str | None = None
        self._identity_url: str | None = None
        self._region_urls: dict[str, str] = {}
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the emulator is already started")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-io")
        if self._state_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="image-transfer-emulator-"))
            root = self._temp_dir
        else:
            root = self._state_dir
            root.mkdir(parents=True, exist_ok=True)
        for name in self._region_names:
            store = RegionStore(
                name, root / name, persist=self._state_dir is not None, executor=self._executor
            )
            await loop.run_in_executor(self._executor, store.load)
            self._services[name] = RegionService(
                name,
                store,
                self._tokens,
                self._injector,
                executor=self._executor,
                identity_url=lambda: self.identity_url,
                default_page_size=self._default_page_size,
                max_page_size=self._max_page_size,
                image_size_cap=self._image_size_cap,
                flavour=self._flavour,
            )

        sockets = self._bind()
        identity_sock, region_socks = sockets[0], sockets[1:]
        base = _base_url(self._host, identity_sock.getsockname()[1])
        self._identity_root = base
        # The auth URL a client is given: v2.0's when served (NHN's), else v3's.
        self._identity_url = base + ("/v2.0" if "v2.0" in self._identity_versions else "/v3")
        self._region_urls = {
            name: _base_url(self._host, sock.getsockname()[1])
            for name, sock in zip(self._region_names, region_socks, strict=True)
        }
        await self._serve(self._identity_app(), identity_sock)
        for name, sock in zip(self._region_names, region_socks, strict=True):
            await self._serve(self._services[name].build_app(), sock)

    def _bind(self) -> list[socket.socket]:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sockets: list[socket.socket] = []
        try:
            for offset in range(len(self._region_names) + 1):
                port = self._port + offset if self._port else 0
                sockets.append(socket.create_server((self._host, port), family=family))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    async def _serve(self, app: web.Application, sock: socket.socket) -> None:
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE, read_bufsize=CHUNK
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.SockSite(runner, sock)
        await site.start()

    def _identity_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        table = RouteTable(app)
        identity = IdentityService(
            self._tenants,
            self._tokens,
            lambda: (self.identity_root, self.regions),
            versions=self._identity_versions,
        )
        self._identity = identity
        identity.add_routes(table)
        self._admin().add_routes(app)
        app.middlewares.append(
            request_middleware(table, self._identity_counters, self._injector, keystone_errors=True)
        )
        return app

    def _admin(self) -> AdminService:
        return AdminService(
            self._faults,
            self.expire_tokens,
            {name: s.counters for name, s in self._services.items()},
            self._identity_counters,
        )

    async def close(self) -> None:
        """Stop the servers, write the metadata, remove a temporary state directory."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        for service in self._services.values():
            await service.store.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # -- addresses -----------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._identity_url is None:
            raise RuntimeError("the emulator is not started: use 'async with Emulator()'")

    @property
    def identity_url(self) -> str:
        """The auth URL: ``.../v2.0`` when v2.0 is served, else ``.../v3``."""
        self._require_started()
        assert self._identity_url is not None
        return self._identity_url

    @property
    def identity_root(self) -> str:
        """The identity service's address without a version (its version discovery)."""
        self._require_started()
        assert self._identity_root is not None
        return self._identity_root

    @property
    def identity_v3_url(self) -> str:
        """The Keystone v3 address (``.../v3``) beside v2.0's ``identity_url``."""
        return self.identity_root + "/v3"

    @property
    def regions(self) -> dict[str, str]:
        """Region name -> image endpoint (no ``/v2`` suffix, like NHN's catalog)."""
        self._require_started()
        return dict(self._region_urls)

    @property
    def admin_url(self) -> str:
        return self.identity_root + "/admin"

    @property
    def flavour(self) -> str:
        """``nhn`` or ``glance``: whose rules the image regions follow."""
        return self._flavour.name

    @property
    def identity_versions(self) -> tuple[str, ...]:
        return self._identity_versions

    @property
    def tenants(self) -> tuple[TenantSpec, ...]:
        return self._tenants

    def tenant(self, name: str) -> TenantSpec:
        """The tenant of this name (KeyError if none)."""
        for spec in self._tenants:
            if spec.name == name:
                return spec
        raise KeyError(name)

    # -- faults and tokens ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> None:
        """Change fault fields at once, all or nothing (ValueError/TypeError if invalid)."""
        self._faults.update(**changes)

    def expire_tokens(self) -> None:
        self._tokens.expire_all()

    def issue_token(self, tenant_id: str) -> str:
        if tenant_id not in {t.tenant_id for t in self._tenants}:
            raise ValueError(f"unknown tenant id {tenant_id!r}")
        token_id, _ = self._tokens.issue(tenant_id)
        return token_id

    def create_application_credential(self, tenant_id: str, name: str) -> tuple[str, str]:
        """A Keystone v3 application credential of the tenant's user, scoped to the tenant:
        its (id, secret), as ``openstack application credential create`` gives them."""
        self._require_started()
        assert self._identity is not None
        return self._identity.create_application_credential(tenant_id, name)

    def counters(self, region: str) -> dict[str, Any]:
        return self._service(region).counters.snapshot()

    def identity_counters(self) -> dict[str, Any]:
        return self._identity_counters.snapshot()

    def reset_counters(self) -> None:
        for service in self._services.values():
            service.counters.reset()
        self._identity_counters.reset()

    # -- images, directly ----------------------------------------------------------------

    def _service(self, region: str) -> RegionService:
        try:
            return self._services[region]
        except KeyError:
            raise KeyError(f"unknown region {region!r}") from None

    async def seed_image(
        self,
        region: str,
        owner_tenant_id: str,
        data: bytes | None = None,
        size: int | None = None,
        fill_seed: int = 0,
        **fields: Any,
    ) -> str:
        """Make an image without HTTP; returns its id.

        Bytes come from ``data``, or are ``size`` deterministic pseudo-random bytes from
        ``fill_seed`` (see ``streams.fill_pieces``) streamed to disk.  With neither, the image
        stays ``queued`` (no data).  ``fields`` are as on create, and ``visibility`` may also
        be ``public`` or ``community``; ``visibility``, ``disk_format``, ``container_format``
        and ``os_type`` default to private, qcow2, bare and linux (``os_type`` on the nhn
        flavour only).
        """
        self._require_started()
        service = self._service(region)
        if data is not None and size is not None:
            raise ValueError("give data or size, not both")
        if size is not None and size < 0:
            raise ValueError("size: expected a non-negative number of bytes")
        body = dict(fields)
        if self._flavour.os_type_required:
            body.setdefault("os_type", "linux")
        # An operator's own image, unshared (the glance flavour's create defaults to "shared").
        body.setdefault("visibility", "private")
        body.setdefault("disk_format", "qcow2")
        body.setdefault("container_format", "bare")
        try:
            record = service.new_record(
                owner_tenant_id, body, visibilities=schema.ALL_VISIBILITIES, seeding=True
            )
        except HttpError as exc:
            raise ValueError(exc.message) from None
        if data is None and size is None:
            service.store.add(record)
            return str(record["id"])
        pieces: Iterable[bytes]
        if data is not None:
            view = memoryview(data)
            pieces = (bytes(view[i : i + CHUNK]) for i in range(0, len(view), CHUNK))
        else:
            assert size is not None
            pieces = fill_pieces(fill_seed, size)
        path = service.store.data_path(record["id"])
        assert self._executor is not None
        digest = await write_pieces(path, pieces, self._executor)
        schema.mark_active(record, digest)
        service.store.add(record)
        return str(record["id"])

    def image_record(self, region: str, image_id: str) -> dict[str, Any]:
        """The stored image as the API would show it, any status (KeyError if none/deleted)."""
        record = self._service(region).store.get(image_id)
        if record is None:
            raise KeyError(f"no image {image_id} in region {region}")
        return schema.view(record)

    def list_all(self, region: str) -> list[dict[str, Any]]:
        """Every image of a region that is not deleted, whoever owns it."""
        return [schema.view(r) for r in self._service(region).store.images.values()]

    def image_path(self, region: str, image_id: str) -> Path | None:
        """Where an image's bytes are on disk (None if it has none)."""
        store = self._service(region).store
        record = store.get(image_id)
        if record is None or record["status"] != "active":
            return None
        path = store.data_path(image_id)
        return path if path.exists() else None


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
