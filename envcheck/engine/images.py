"""Images people already run (`image:` stacks, `envcheck probe IMAGE`): made present on a daemon as they are (the
local image if there is one, else pulled), recorded by digest, and checked against the daemon's platform before
anything runs. Nothing here changes an image.

Pulls go through the docker SDK, which sends the credentials the docker CLI would (~/.docker/config.json or
$DOCKER_CONFIG, its `auths`, `credsStore` and `credHelpers`); the registry's and daemon's words come back scrubbed
of any URL's user, password or token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envcheck.engine.client import docker_errors
from envcheck.errors import EXIT_STACK_FAILED, EnvcheckError
from envcheck.inputs.hosts import scrub

Progress = Callable[[str], None]
MESSAGE_CHARS = 300  # of the daemon's or registry's own words kept in a message
HUB = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


class ImageUnusable(EnvcheckError):
    """An image that cannot be probed here (not found, pull refused, another platform): the stack's status says why,
    the matrix goes on."""

    exit_code = EXIT_STACK_FAILED


@dataclass(frozen=True)
class Fetched:
    """An image present on a daemon: how it was asked for, its id, the digest results record (REPO@sha256:… as a
    registry knows it, else the image id for an image only this daemon has), and whether it was pulled just now."""

    reference: str
    image_id: str
    digest: str
    pulled: bool


def name_of(reference: str) -> str:
    """A reference without its tag and digest, as written (a registry's port stays)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def repository(reference: str) -> str:
    """The repository of a reference as Docker lists it in RepoDigests (Docker Hub's prefixes dropped)."""
    name = name_of(reference)
    return next((name[len(prefix) :] for prefix in HUB if name.startswith(prefix)), name)


def digest_of(reference: str, attrs: dict[str, Any]) -> str:
    """The reference's own REPO@sha256:… when the daemon knows the image by it, else the image id (an image built or
    loaded here: a digest it got by being pushed elsewhere, to envcheck's registry for --on say, names that other
    repository, not the image the stack names)."""
    if "@" in reference:
        return f"{repository(reference)}@{reference.split('@', 1)[1]}"
    digests = [d for d in attrs.get("RepoDigests") or [] if isinstance(d, str) and "@" in d]
    own = [d for d in digests if d.split("@", 1)[0] == repository(reference)]
    return (own or [str(attrs.get("Id") or "")])[0]


def platform_of(attrs: dict[str, Any]) -> str:
    """os/architecture[/variant], as `docker image inspect` and `--platform` spell it."""
    parts = [attrs.get("Os") or "linux", attrs.get("Architecture") or "unknown", attrs.get("Variant")]
    return "/".join(str(p) for p in parts if p)


def other_platform(api: Any, attrs: dict[str, Any]) -> str | None:
    """Why the image cannot run natively on this daemon (another OS or CPU architecture), or None. Checked before a
    container is made: an arm64 image on an amd64 host fails with `exec format error`, or runs emulated where QEMU
    is registered, which would be measured as if it were native."""
    version = api.version()
    host = f"{version.get('Os') or 'linux'}/{version.get('Arch') or 'unknown'}"
    image = (attrs.get("Os") or "linux", attrs.get("Architecture"))
    if not image[1] or image == tuple(host.split("/", 1)):
        return None
    return f"image is for {platform_of(attrs)}, this Docker host runs {host}"


def said(exc: BaseException) -> str:
    """The daemon's or registry's reason in one line, without the user, password or token a URL in it carries."""
    text = scrub(str(getattr(exc, "explanation", None) or exc))
    return " ".join(text.split())[:MESSAGE_CHARS]


def fetch(api: Any, reference: str, progress: Progress) -> Fetched:
    """The image `reference` names on api's daemon: the local one if present, else pulled (with the docker CLI's
    credentials); ImageUnusable with the registry's exact words when it cannot be had."""
    try:
        return _fetched(reference, api.inspect_image(reference), pulled=False)
    except docker_errors():
        pass
    progress(f"pulling {reference}")
    reason = None
    try:
        for chunk in api.pull(reference, stream=True, decode=True):
            if isinstance(chunk, dict) and "error" in chunk:
                reason = said(Exception(chunk["error"]))
                break
        else:
            return _fetched(reference, api.inspect_image(reference), pulled=True)
    except docker_errors() as exc:
        reason = said(exc)
    raise ImageUnusable(f"image {reference} is not on this Docker host and cannot be pulled: {reason}")


def _fetched(reference: str, attrs: dict[str, Any], pulled: bool) -> Fetched:
    return Fetched(reference, str(attrs.get("Id") or ""), digest_of(reference, attrs), pulled)


def by_digest(api: Any, reference: str) -> str:
    """The reference pinned to what its registry holds now, REPOSITORY@sha256:… (asked through the daemon, with its
    credentials; nothing is pulled), so every node runs the same image; ImageUnusable when the registry cannot say."""
    if "@" in reference:
        return reference
    try:
        digest = (api.inspect_distribution(reference).get("Descriptor") or {}).get("digest")
    except docker_errors() as exc:
        raise ImageUnusable(f"cannot ask the registry for the digest of {reference}: {said(exc)}") from None
    if not digest:
        raise ImageUnusable(f"the registry named no digest for {reference}")
    return f"{name_of(reference)}@{digest}"
