"""The openstacksdk side of the tour, run by the clients' environment's python (not ours).

One process per cloud: it reads one JSON request per line on stdin (``{"op": ..., "as":
"owner"|"member"|"outsider", ...}``), does it with openstacksdk, connected by the cloud name in
the clouds.yaml that ``OS_CLIENT_CONFIG_FILE`` names (auth URL, project, user, password,
region: as a user configures it), and answers one JSON line: ``{"ok": true, "out": TEXT}`` or
``{"ok": false, "error": CLASS, "out": MESSAGE}`` for an exception of openstacksdk's own
(``openstack.exceptions``).  Any other exception is a crash: it goes to stderr with its
traceback and the process exits.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openstack  # type: ignore[import-not-found]
from openstack import exceptions

_connections: dict[str, Any] = {}


def connection(who: str) -> Any:
    if who not in _connections:
        prefix = sys.argv[1]
        _connections[who] = openstack.connect(cloud=f"{prefix}-{who}")
    return _connections[who]


def do(request: dict[str, Any]) -> str:
    image = connection(request["as"]).image
    op = request["op"]
    image_id = request.get("id", "")
    if op == "list":
        return json.dumps([i.id for i in image.images(limit=int(request["limit"]))])
    if op == "create":
        made = image.create_image(
            name=request["name"],
            filename=request["path"],
            disk_format="raw",
            container_format="bare",
            wait=True,
            **request["properties"],
        )
        return str(made.id)
    if op == "show":
        return json.dumps(image.get_image(image_id).to_dict(computed=False), default=str)
    if op == "download":
        image.download_image(image_id, output=request["path"])
        return "saved"
    if op == "update":
        image.update_image(image_id, **request["fields"])
        return "updated"
    if op == "tag-add":
        image.add_tag(image_id, request["tag"])
        return "tagged"
    if op == "tag-remove":
        image.remove_tag(image_id, request["tag"])
        return "untagged"
    if op == "member-add":
        return str(image.add_member(image_id, member_id=request["member"]).status)
    if op == "member-accept":
        member = request["member"]
        return str(image.update_member(member, image_id, status="accepted").status)
    if op == "member-list":
        return json.dumps([[m.member_id, m.status] for m in image.members(image_id)])
    if op == "member-remove":
        image.remove_member(request["member"], image_id)
        return "removed"
    if op == "delete":
        image.delete_image(image_id)
        return "deleted"
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "out": do(request)}
        except exceptions.SDKException as exc:
            answer = {"ok": False, "error": type(exc).__name__, "out": str(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
