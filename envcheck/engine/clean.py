"""`envcheck clean`: remove what no current stack of this matrix needs — outdated images, stopped containers, contexts.

Only what was made for the matrix given is removed: images and probe containers carry the matrix file's identity
(labels.MATRIX), so `clean -m a.yaml` on a host where another project (b.yaml) or a test session builds too keeps
their images, and says what it kept. An image of this matrix is current when its hash label matches a stack's
content hash as rendered now (the hash is the same with or without a CA bundle or the package cache); otherwise it
is stale. Images from before images were labelled with their matrix are kept and counted. TF images are gigabytes
each, so --dry-run lists what would go, with sizes, before anything is removed. A dockerfile stack's image is current
by its content hash like any built one; an image stack's image is not envcheck's to remove, even where envcheck made
it (an envcheck/NAME:HASH the stack names), so it is kept.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck import labels
from envcheck.engine.client import docker_errors
from envcheck.inputs.matrix import Matrix
from envcheck.inputs.options import DEFAULTS
from envcheck.render.dockerfile import content_hash, context_files, user_content_hash


@dataclass(frozen=True)
class Item:
    kind: str  # image, container, build-context
    name: str
    size: int
    ref: str

    def __str__(self) -> str:
        return f"{self.kind:<13} {self.name}  ({self.size / 1e9:.2f} GB)"


@dataclass
class Kept:
    """envcheck's images that clean leaves, by why: made for another matrix file, or unlabelled (older envcheck)."""

    other_matrices: Counter[str] = field(default_factory=Counter)  # matrix id -> images
    other_bytes: int = 0
    unlabelled: int = 0
    unlabelled_bytes: int = 0

    def lines(self) -> list[str]:
        said = []
        if self.other_matrices:
            said.append(
                f"kept {sum(self.other_matrices.values())} images of {len(self.other_matrices)} other matrix files "
                f"({self.other_bytes / 1e9:.2f} GB): `envcheck clean -m THAT_FILE` cleans each"
            )
        if self.unlabelled:
            said.append(
                f"kept {self.unlabelled} envcheck images made before images were labelled with their matrix "
                f"({self.unlabelled_bytes / 1e9:.2f} GB): `docker rmi` removes them"
            )
        return said


def current_hashes(matrix: Matrix) -> set[str]:
    """The content hashes of the matrix's stacks as they are now: their images are current."""
    return {
        content_hash(context_files(s, False)) if s.kind == "rendered" else user_content_hash(s)
        for s in matrix.stacks
        if s.kind != "image"
    }


def normalized(reference: str) -> str:
    """An image reference as the daemon lists it (RepoTags, RepoDigests): Docker Hub's implied registry and
    library/ dropped, :latest where it names no tag or digest."""
    name = reference.removeprefix("docker.io/").removeprefix("index.docker.io/").removeprefix("library/")
    repository, at, digest = name.partition("@")
    directory, slash, last = repository.rpartition("/")
    if at:  # listed by digest without its tag
        return f"{directory}{slash}{last.partition(':')[0]}@{digest}"
    return repository if ":" in last else f"{repository}:latest"


def named_by_stacks(image: dict[str, Any], referenced: set[str]) -> bool:
    """Whether an image listed by the daemon is one an image stack names (by tag or digest)."""
    listed = [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]
    return any(normalized(ref) in referenced for ref in listed)


def stale(api: Any, matrix: Matrix) -> tuple[list[Item], Kept]:
    """What clean removes for this matrix, and what it keeps of envcheck's."""
    keep = current_hashes(matrix)
    referenced = {normalized(s.image) for s in matrix.stacks if s.image}
    ours = labels.matrix_id(matrix.path)
    names = {s.name for s in matrix.stacks}
    items: list[Item] = []
    kept = Kept()
    for image in api.images(filters={"label": labels.OWNER}):
        found = image.get("Labels") or {}
        size = image.get("Size", 0) or 0
        made_for = found.get(labels.MATRIX)
        if made_for is None:
            kept.unlabelled += 1
            kept.unlabelled_bytes += size
        elif made_for != ours:
            kept.other_matrices[made_for] += 1
            kept.other_bytes += size
        elif found.get(labels.HASH) not in keep and not named_by_stacks(image, referenced):
            name = ", ".join(image.get("RepoTags") or []) or image["Id"][:19]
            items.append(Item("image", name, size, image["Id"]))
    # Intermediate images of the CA-bundle build stage (the venv before it is copied out), which a build removes
    # when it ends; one killed mid-build leaves its stage. A fresh one may belong to a build running right now, so
    # only those older than the longest a build may run go, and only of this matrix's stacks (the stage is labelled
    # with its stack).
    for image in api.images(filters={"label": labels.STAGE, "dangling": True}):
        if (image.get("Labels") or {}).get(labels.STAGE) not in names:
            continue
        if time.time() - image.get("Created", 0) < DEFAULTS.stale_stage_age:
            continue
        items.append(Item("image", f"{image['Id'][:19]} (build stage)", image.get("Size", 0), image["Id"]))
    for container in api.containers(all=True, filters={"label": f"{labels.MATRIX}={ours}"}):
        if container.get("State") != "running":
            items.append(
                Item("container", container["Names"][0].lstrip("/"), container.get("SizeRw", 0) or 0, container["Id"])
            )
    build_root = matrix.layout.build
    for directory in sorted(build_root.iterdir()) if build_root.is_dir() else []:
        if directory.is_dir() and directory.name not in names:
            size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
            items.append(Item("build-context", str(directory), size, str(directory)))
    return items, kept


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
