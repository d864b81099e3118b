"""The emulated NHN cloud: Keystone v2.0 identity and Glance v2 image regions over real
sockets, with fault injection.  Tests, the demo and the benchmarks run against it.

Modules: ``cloud`` (the ``Emulator`` and its in-process controls), ``identity`` (tenants,
tokens, catalog), ``images`` (one region's Image API: its routes, images and tags), ``access``
(who may see and change which image; reading a request), ``data`` (image uploads and
downloads), ``members`` (image sharing), ``listing`` (list filters, sorting and paging),
``schema`` (image field rules, how a record is shown), ``store`` (records, members, bytes on
disk, persistence), ``streams`` (writing, hashing and pacing bytes, ranges, seeded bytes),
``faults`` (what goes wrong and when), ``middleware`` (counting, injected latency and errors,
JSON errors), ``responses`` (JSON and error bodies, timestamps), ``admin`` (the HTTP
controls), ``cli`` (the ``image-transfer emulator`` command).
"""

from transfer.emulator.cloud import Emulator
from transfer.emulator.faults import ROUTES, Faults
from transfer.emulator.identity import (
    DEFAULT_TENANTS,
    TenantSpec,
    derive_tenant_id,
    tenant_from_name,
)
from transfer.emulator.streams import fill_bytes, fill_pieces

__all__ = [
    "DEFAULT_TENANTS",
    "ROUTES",
    "Emulator",
    "Faults",
    "TenantSpec",
    "derive_tenant_id",
    "fill_bytes",
    "fill_pieces",
    "tenant_from_name",
]
