"""The Docker labels envcheck puts on what it makes, in one place: images, containers and build stages.

`envcheck clean`, the test fixtures that clean up, and the Dockerfile template all find envcheck's objects by
these names, so they are a public contract like the matrix keys.
"""

from __future__ import annotations

OWNER = "envcheck"  # on every image and container envcheck makes (value "1")
HASH = "envcheck.hash"  # an image's full content hash: the image is current when it matches the stack's
STACK = "envcheck.stack"  # the stack an image or probe container belongs to
STAGE = "envcheck.stage"  # an intermediate build stage (not a stack's final image)
