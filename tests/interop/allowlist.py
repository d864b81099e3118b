"""The differences between real Glance and the emulator that are meant, each with its reason.

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

ALLOWED: tuple[Allowed, ...] = (
    Allowed("create: visibility community", "status", NHN_VISIBILITY),
    Allowed("create: tag starting with underscore", "status", NHN_UNDERSCORE),
    Allowed("tags: add starting with underscore", "status", NHN_UNDERSCORE),
    Allowed("create: os_type missing", "status", NHN_OS_TYPE),
    Allowed("create: os_type unknown", "status", NHN_OS_TYPE),
    Allowed("download: nhncloud_allow_download false", "status", NHN_DOWNLOAD),
    Allowed("update: property of a protected image", "status", NHN_PROTECTED),
    Allowed("tags: add on a protected image", "status", NHN_PROTECTED),
    Allowed("create: body a list", "status", GLANCE_500),
    Allowed("*", "body*.stores", STORES),
)
