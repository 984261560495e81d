"""`envcheck clean`: remove what no current stack needs — outdated images, stopped containers, old contexts.

An image is current when its hash label matches a stack's content hash as rendered now (the hash is the same
with or without a CA bundle or the package cache); anything else labelled by envcheck is stale. TF images are gigabytes
each, so --dry-run lists what would go, with sizes, before anything is removed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envcheck import labels
from envcheck.engine.client import docker_errors
from envcheck.matrix import Matrix
from envcheck.render import content_hash, context_files

STAGE_MIN_AGE = 3600


@dataclass(frozen=True)
class Item:
    kind: str  # image, container, build-context
    name: str
    size: int
    ref: str

    def __str__(self) -> str:
        return f"{self.kind:<13} {self.name}  ({self.size / 1e9:.2f} GB)"


def current_hashes(matrix: Matrix) -> set[str]:
    return {content_hash(context_files(s, False)) for s in matrix.stacks}


def stale(api: Any, matrix: Matrix) -> list[Item]:
    keep = current_hashes(matrix)
    items = []
    for image in api.images(filters={"label": labels.OWNER}):
        if (image.get("Labels") or {}).get(labels.HASH) not in keep:
            name = ", ".join(image.get("RepoTags") or []) or image["Id"][:19]
            items.append(Item("image", name, image.get("Size", 0), image["Id"]))
    # Intermediate images of the CA-bundle build stage (the venv before it is copied out). A fresh one may
    # belong to a build running right now, so only those older than an hour go.
    for image in api.images(filters={"label": labels.STAGE, "dangling": True}):
        if time.time() - image.get("Created", 0) < STAGE_MIN_AGE:
            continue
        items.append(Item("image", f"{image['Id'][:19]} (build stage)", image.get("Size", 0), image["Id"]))
    for container in api.containers(all=True, filters={"label": labels.OWNER}):
        if container.get("State") != "running":
            items.append(
                Item("container", container["Names"][0].lstrip("/"), container.get("SizeRw", 0) or 0, container["Id"])
            )
    names = {s.name for s in matrix.stacks}
    build_root = matrix.layout.build
    for directory in sorted(build_root.iterdir()) if build_root.is_dir() else []:
        if directory.is_dir() and directory.name not in names:
            size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
            items.append(Item("build-context", str(directory), size, str(directory)))
    return items


def remove(api: Any, items: list[Item]) -> list[str]:
    """Remove the items; returns the errors (an image still used by a container stays, with its reason)."""
    errors = []
    for item in sorted(items, key=lambda i: i.kind != "container"):  # containers first: they pin images
        try:
            if item.kind == "container":
                api.remove_container(item.ref, force=True)
            elif item.kind == "image":
                api.remove_image(item.ref, force=True)
            else:
                shutil.rmtree(Path(item.ref))
        except (*docker_errors(), OSError) as exc:
            errors.append(f"{item.name}: {exc}")
    return errors
