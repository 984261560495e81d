"""The contract of a framework on envcheck's host side: everything lint, plan, render, diagnose, explain, doctor and
the table ask of TensorFlow, PyTorch or JAX, in one object per framework.

The facts about releases stay in knowledge.yaml: a framework only knows which Knowledge lookup describes its
releases. Its probe adapter (envcheck/probe/fw_NAME.py) stays apart, standard library only, since it runs alone
inside images.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envcheck.knowledge.facts import Build, GpuCode, Knowledge, Version

if TYPE_CHECKING:
    from envcheck.inputs.matrix import Stack


@dataclass(frozen=True)
class InstallOption:
    """One way pip installs one exact release (PyPI's wheel, an extra, a wheel index): what `envcheck pick` weighs
    with the same rules as plan, and the command it prints when this is the one that works."""

    version: str
    variant: str
    index: str | None
    command: str
    what: str  # how people read it: "PyPI's default wheel", "PyTorch's cu126 index", "jax[cuda12]"


@dataclass(frozen=True, eq=False)
class Framework:
    """One framework: its names, install variants, knowledge lookups, diagnosis wording, log markers, Dockerfile
    hooks and probe adapter. A subclass overrides the methods where its framework differs (repo2docker's
    buildpacks are the model)."""

    name: str  # the matrix key, the probe's --framework, the module it is imported as
    display_name: str  # how people read it, everywhere
    variants: Mapping[str, str]  # each install variant → its pip requirement, without the version
    gpu_variant_name: str  # the variant a GPU install of unknown origin most likely is ({major}: the CUDA major)
    version_pattern: re.Pattern[str]  # an exact release as matrix files name it
    version_example: str
    # Diagnosis wording: each rule of envcheck.diagnosis.diagnose says the framework's own fix in its own words.
    install_note: str  # after the install command, in framework-missing's fix
    with_libraries_note: str  # after the pinned install command, in cuda-libs-missing's fix
    cpu_only_what: str  # why this build is CPU-only, as the probe tells
    cpu_only_fix: str
    cpu_only_evidence: str
    cpu_package: str  # what a CPU-only stack installs (lint, plan)
    cudnn_rule: str  # how it judges the cuDNN it loads against the one it was built with
    oom_advice: str
    forced_cpu_fix: str
    log_markers: tuple[str, ...]  # a log line holding one (lower case) is a vote for this framework
    log_version: re.Pattern[str]  # the version a line of its log states
    log_version_hints: tuple[str, ...] = ()  # more words (lower case) after which log_version is tried, no vote
    # Words (lower case) only this framework's logs hold: a line with one votes for it alone, and outweighs the
    # plain markers (JAX's XLA lines carry tensorflow/ paths; a JAX log is not TensorFlow's for them).
    log_strong_markers: tuple[str, ...] = ()
    default_variant: str | None = None  # what a stack naming no variant gets (None: it must name one)
    cpu_variants: frozenset[str] = frozenset()  # variants built without CUDA
    variants_without_cuda_libraries: frozenset[str] = frozenset()  # GPU builds that need the image's CUDA
    index_variant: str | None = None  # the variant installed from the wheel index a stack's `index:` names
    index_url: str = ""  # that index ({index}: its name)
    missing_code: str = "framework-missing"  # the diagnosis code when it cannot be imported

    @property
    def adapter(self) -> str:
        """Its probe adapter, beside probe.py in envcheck/probe/ and in every image."""
        return f"fw_{self.name}.py"

    def gpu_variant(self, cuda_major: str = "12") -> str:
        """The variant a GPU install most likely is when nothing says how it was installed."""
        return self.gpu_variant_name.format(major=cuda_major)

    def requirement(self, variant: str, version: str) -> str:
        """The pip requirement string of one variant of one release."""
        return f"{self.variants[variant]}=={version}"

    def install_command(self, version: str | None = None) -> str:
        """`pip install ...` of its GPU build, pinned to `version` when it is known (a log may not say it)."""
        requirement = self.variants[self.gpu_variant()] + (f"=={version}" if version else "")
        return f"`pip install {shlex.quote(requirement)}`"

    # -- knowledge lookups: which Knowledge method describes a release -------------------------------------------

    def build(self, k: Knowledge, version: str, variant: str, index: str | None = None) -> Build | None:
        """What a release brings when installed as `variant` (None when the data does not know it)."""
        raise NotImplementedError

    def known(self, k: Knowledge) -> tuple[str, str]:
        """The oldest and newest release the data knows."""
        raise NotImplementedError

    def install_options(self, k: Knowledge) -> list[InstallOption]:
        """Every GPU install of every release the data names exactly, newest release first and, within a release,
        the one to prefer first (`pick` takes the first that works)."""
        return []

    def cudnn_fits(self, loaded: Version, built: Version, known_release: bool) -> bool:
        """Whether the cuDNN it loads works with the one it was built with (known_release: the data knows the
        release, so `built` is exact)."""
        return loaded.major == built.major

    def code_from_build_info(self, entries: list[str]) -> GpuCode | None:
        """The GPU code its build info lists (None where it lists none)."""
        return None

    # -- Dockerfile hooks (images/Dockerfile.j2, filled by envcheck.render.dockerfile) ------------------------------

    def pinned_libraries(self, stack: Stack) -> list[str]:
        """Exact wheels that get a layer of their own before the framework (shared by stacks that pin alike)."""
        return []

    def requirements(self, stack: Stack) -> list[str]:
        """pip's arguments that install the framework as the stack's variant, quoted for the shell."""
        return [shlex.quote(stack.requirement)]
