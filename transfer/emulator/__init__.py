"""The emulated cloud: Keystone identity (v2.0 as NHN serves it, and v3) and Glance v2 image
regions over real sockets, in one of two flavours (``nhn``: the seed guide's rules; ``glance``:
upstream Glance 33's), with fault injection.  Tests, the demo and the benchmarks run against it,
and so can the standard OpenStack clients.

Modules: ``cloud`` (the ``Emulator`` and its in-process controls), ``flavours`` (the rules that
differ between NHN and upstream Glance), ``identity`` (a subpackage: tenants, tokens, catalogs,
application credentials, the v2.0 and v3 routes), ``images`` (one region's Image API: its
routes, images and tags), ``actions`` (deactivate and reactivate), ``documents`` (version
documents and schemas; ``glance_schemas.json``), ``access`` (who may see and change which image;
reading a request), ``data`` (image uploads and downloads), ``members`` (image sharing),
``listing`` (list filters, sorting and paging), ``schema`` (image field rules, how a record is
shown), ``store`` (records, members, bytes on disk, persistence), ``streams`` (writing, hashing
and pacing bytes, ranges, seeded bytes), ``faults`` (what goes wrong and when), ``middleware``
(counting, version negotiation, injected latency and errors, error bodies), ``responses``
(JSON and error bodies negotiated as Glance's webob does, timestamps), ``admin`` (the HTTP
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
