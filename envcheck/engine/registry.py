"""Images to and from a registry, so one build serves every host: pushed as REGISTRY/NAME:<content hash>, pulled
by digest. Same content hash ⇒ same image, so a tag the registry already has is not pushed again and an image a
host already has is not pulled again. Credentials are the docker SDK's (the docker config's `auths`, as after
`docker login`); they are sent by the daemon and never printed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envcheck.engine.client import docker_errors
from envcheck.errors import EXIT_STACK_FAILED, EnvcheckError
from envcheck.inputs.hosts import scrub
from envcheck.render.dockerfile import BuildContext

Progress = Callable[[str], None]


class RegistryError(EnvcheckError):
    """A push or pull the registry or daemon refused; the message names the image and the registry's reason."""

    exit_code = EXIT_STACK_FAILED


def repository(registry: str, ctx: BuildContext) -> str:
    return f"{registry}/{ctx.stack.name}"


def _explain(exc: BaseException) -> str:
    """The daemon's or registry's reason in one line, without a password or token a URL in it carries."""
    text = scrub(str(getattr(exc, "explanation", None) or exc))
    return " ".join(text.split())[:300]


def pushed_digest(api: Any, registry: str, ctx: BuildContext) -> str | None:
    """REPO@sha256:… if the registry already holds this content hash's tag (asked through the daemon, with its
    credentials), else None."""
    reference = f"{repository(registry, ctx)}:{ctx.content_hash}"
    try:
        found = api.inspect_distribution(reference)
    except docker_errors():
        return None
    digest = (found.get("Descriptor") or {}).get("digest")
    return f"{repository(registry, ctx)}@{digest}" if digest else None


def push(api: Any, registry: str, ctx: BuildContext, progress: Progress) -> str:
    """Push ctx's image (unless the registry has it) and return its reference by digest, REPO@sha256:…."""
    already = pushed_digest(api, registry, ctx)
    if already:
        progress(f"{registry} already has it ({already.rsplit('@', 1)[1][:19]}): not pushed")
        return already
    repo = repository(registry, ctx)
    digest = None
    try:
        api.tag(ctx.tag, repo, ctx.content_hash)
        progress(f"pushing to {registry}")
        for chunk in api.push(repo, tag=ctx.content_hash, stream=True, decode=True):
            if "error" in chunk:
                raise RegistryError(f"push of {repo}:{ctx.content_hash[:12]}… refused: {scrub(str(chunk['error']))}")
            digest = (chunk.get("aux") or {}).get("Digest") or digest
    except docker_errors() as exc:
        raise RegistryError(f"push of {repo} to {registry} failed: {_explain(exc)}") from None
    if not digest:
        raise RegistryError(f"push of {repo} to {registry} reported no digest")
    return f"{repo}@{digest}"


def pull(api: Any, reference: str, ctx: BuildContext, progress: Progress) -> bool:
    """Make the image REPO@sha256:… present on this daemon (pulled unless already there) and tag it as the build
    host tags it, so the probe and later reruns find it by content hash. True if it was pulled."""
    pulled = False
    try:
        api.inspect_image(reference)
    except docker_errors():
        progress(f"pulling {reference.rsplit('/', 1)[-1][:60]}")
        try:
            for chunk in api.pull(reference, stream=True, decode=True):
                if "error" in chunk:
                    raise RegistryError(f"pull of {reference} refused: {scrub(str(chunk['error']))}")
        except docker_errors() as exc:
            raise RegistryError(f"pull of {reference} failed: {_explain(exc)}") from None
        pulled = True
    repo, tag = ctx.tag.rsplit(":", 1)
    try:
        api.tag(reference, repo, tag)
    except docker_errors() as exc:
        raise RegistryError(f"cannot tag {reference} as {ctx.tag}: {_explain(exc)}") from None
    return pulled
