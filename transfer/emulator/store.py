"""One region's image store: image records, members, reserved (deleted) ids, where each
image's bytes live on disk, and persistence of the metadata.

Records are plain dicts shaped as the API shows them (custom properties as top-level keys).
With ``persist=True`` the metadata is written to ``<root>.json`` atomically (temporary file,
then rename), a moment after each change and once more on close, so a restart with the same
state directory finds every image again.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

_SAVE_DELAY = 0.2  # seconds: many changes in a burst become one write


class RegionStore:
    def __init__(self, name: str, root: Path, *, persist: bool, executor: Executor) -> None:
        self.name = name
        self.root = root
        self.data_dir = root / "images"
        self.metadata_path = root.with_name(root.name + ".json")
        self.persist = persist
        self.images: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        self._executor = executor
        self._save_handle: asyncio.TimerHandle | None = None
        self._save_task: asyncio.Task[None] | None = None

    # -- lookups -------------------------------------------------------------------------

    def get(self, image_id: str) -> dict[str, Any] | None:
        return self.images.get(image_id)

    def is_taken(self, image_id: str) -> bool:
        return image_id in self.images or image_id in self.deleted

    def data_path(self, image_id: str) -> Path:
        return self.data_dir / image_id

    def part_path(self, image_id: str) -> Path:
        return self.data_dir / f"{image_id}.part"

    def member_status(self, image_id: str, tenant: str) -> str | None:
        member = self.members.get(image_id, {}).get(tenant)
        return None if member is None else str(member["status"])

    # -- changes -------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        self.images[record["id"]] = record
        self.changed()

    def remove(self, image_id: str) -> Path:
        """Forget an image (its id stays reserved); returns the path of its bytes to delete."""
        self.images.pop(image_id, None)
        self.members.pop(image_id, None)
        self.deleted.add(image_id)
        self.changed()
        return self.data_path(image_id)

    def changed(self) -> None:
        """Note a change; the metadata file is rewritten shortly (when persisting)."""
        if not self.persist or self._save_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._save_handle = loop.call_later(_SAVE_DELAY, self._start_save)

    def _start_save(self) -> None:
        self._save_handle = None
        if self._save_task is not None and not self._save_task.done():
            self.changed()  # a write is under way: write again after it
            return
        self._save_task = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        text = self._serialize()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, text)

    # -- persistence ---------------------------------------------------------------------

    def _serialize(self) -> str:
        return json.dumps(
            {
                "region": self.name,
                "images": self.images,
                "members": self.members,
                "deleted": sorted(self.deleted),
            }
        )

    def _write(self, text: str) -> None:
        tmp = self.metadata_path.with_name(self.metadata_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fobj:
            fobj.write(text)
            fobj.flush()
            os.fsync(fobj.fileno())
        os.replace(tmp, self.metadata_path)

    def load(self) -> None:
        """Create the directories; read the metadata back when persisting and it exists."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.data_dir.glob("*.part"):
            leftover.unlink(missing_ok=True)  # an upload cut by a crash or a kill
        if not self.persist or not self.metadata_path.exists():
            return
        state = json.loads(self.metadata_path.read_text(encoding="utf-8"))
        self.images = dict(state.get("images", {}))
        self.members = dict(state.get("members", {}))
        self.deleted = set(state.get("deleted", []))

    async def close(self) -> None:
        """Write pending metadata now (called once the servers have stopped)."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._save_task is not None:
            await self._save_task
        if self.persist:
            self._write(self._serialize())
