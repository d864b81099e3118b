"""The differences between real Glance and the emulator that are meant, each with its reason,
per flavour: the ``glance`` flavour has only the harness's; the ``nhn`` flavour adds the seed's
rules, each entry quoting the guide.

Every other difference the differential tour finds is a fault of the emulator (fix it there) or
of the tour.  An entry that no longer matches anything fails the suite too: drop it.  Keep
``interop/README.md``'s table in step (a test checks that each step pattern is named there).
"""

from __future__ import annotations

from tests.interop.compare import Allowed

NHN_VISIBILITY = (
    "NHN rule: users may set visibility only to private or shared (guide: 'private, shared 중 "
    "하나'); Glance 33 lets a project member make its image community."
)
NHN_UNDERSCORE = (
    "NHN rule: tags starting with '_' are refused (guide: '_로 시작하는 태그는 사용할 수 "
    "없습니다'); Glance accepts them."
)
NHN_OS_TYPE = (
    "NHN rule: os_type is required and is linux or windows (guide: create, os_type 'O'); "
    "Glance has no rule for it."
)
NHN_DOWNLOAD = (
    'NHN rule: only images whose nhncloud_allow_download is "true" can be downloaded; upstream '
    "Glance has no such property."
)
NHN_PROTECTED = (
    "NHN rule: protected=true blocks changes as well as deletion (guide: 'protected=true인 경우 "
    "수정 및 삭제 불가'); Glance's protected flag only blocks deletion."
)
GLANCE_500 = (
    "Glance 33 bug: a JSON list as the create body fails in its deserializer (TypeError, 500); "
    "400 is what it means, and what the emulator answers."
)
STORES = (
    "Harness: Glance runs here with multiple stores (enabled_backends), so it names the store an "
    "image lives in; NHN's documented responses have no 'stores'."
)

NHN_NAME = (
    "NHN rule: name is required on create (guide: create, name 'O'); Glance makes a nameless image."
)
NHN_PRIVATE = (
    "NHN rule: an image created without visibility is private (guide: the create example's "
    "answer, 'visibility': 'private'); Glance 33 makes it shared."
)
NHN_SCHEMA = (
    "NHN rule: the image schema has NHN's properties (guide: os_type 'windows, linux 중 하나', "
    "os_distro, os_version, nhncloud_product 'compute, gpu', ...) and the visibilities the "
    "guide lists ('public, private, shared 중 하나')."
)
NHN_ACTIONS = (
    "NHN rule: the guide documents no image actions (deactivate, reactivate): on nhn they are "
    "unknown routes (404), so the image stays active."
)

GLANCE_ALLOWED: tuple[Allowed, ...] = (
    Allowed("create: body a list", "status", GLANCE_500),
    Allowed("*", "body*.stores", STORES),
)

NHN_ALLOWED: tuple[Allowed, ...] = (
    Allowed("create: visibility community", "status", NHN_VISIBILITY),
    Allowed("create: tag starting with underscore", "status", NHN_UNDERSCORE),
    Allowed("tags: add starting with underscore", "status", NHN_UNDERSCORE),
    Allowed("create: os_type missing", "status", NHN_OS_TYPE),
    Allowed("create: os_type unknown", "status", NHN_OS_TYPE),
    Allowed("download: nhncloud_allow_download false", "status", NHN_DOWNLOAD),
    Allowed("update: property of a protected image", "status", NHN_PROTECTED),
    Allowed("tags: add on a protected image", "status", NHN_PROTECTED),
    Allowed("create: without name", "status", NHN_NAME),
    Allowed("create: without visibility", "body.visibility", NHN_PRIVATE),
    Allowed("schemas: image*", "body.properties.*", NHN_SCHEMA),
    Allowed("schemas: images", "body.properties.images.items.properties.*", NHN_SCHEMA),
    Allowed("actions: *", "*", NHN_ACTIONS),
    *GLANCE_ALLOWED,
)

ALLOWED: dict[str, tuple[Allowed, ...]] = {"glance": GLANCE_ALLOWED, "nhn": NHN_ALLOWED}
