"""The Docker labels envcheck puts on what it makes, in one place: images, containers and build stages.

`envcheck clean`, the test fixtures that clean up, and the Dockerfile template all find envcheck's objects by
these names, so they are a public contract like the matrix keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

OWNER = "envcheck"  # on every image and container envcheck makes (value "1")
HASH = "envcheck.hash"  # an image's full content hash: the image is current when it matches the stack's
STACK = "envcheck.stack"  # the stack an image or probe container belongs to
STAGE = "envcheck.stage"  # an intermediate build stage (not a stack's final image)
MATRIX = "envcheck.matrix"  # the matrix file an image or container was made for (matrix_id); clean keeps others


def matrix_id(path: Path) -> str:
    """A matrix file's identity on this host: 16 hex digits of its absolute path's SHA-256 (the same file after
    edits; the path itself stays out of images that are pushed to registries)."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
