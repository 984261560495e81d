"""PyTorch: PyPI's wheel (a CUDA build with pinned nvidia-* wheels) or a wheel from PyTorch's own index; its
release facts are knowledge.yaml's `torch` entries (Knowledge.torch_build)."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from envcheck.frameworks.base import Framework, InstallOption
from envcheck.knowledge.facts import Build, Knowledge, Version, index_cuda

if TYPE_CHECKING:
    from envcheck.inputs.matrix import Stack

RELEASE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+((a|b|rc)[0-9]+)?(\.post[0-9]+)?\Z")


class Torch(Framework):
    """An index stack names its wheel exactly by its local version (torch==2.5.1+cu121), so pip cannot take
    PyPI's instead."""

    def build(self, k: Knowledge, version: str, variant: str, index: str | None = None) -> Build | None:
        return k.torch_build(version, variant, index)

    def known(self, k: Knowledge) -> tuple[str, str]:
        releases = k.torch_releases()
        return releases[0], releases[-1]

    def install_options(self, k: Knowledge) -> list[InstallOption]:
        """Per series, its newest release: PyPI's default wheel first (no index to name), then PyTorch's indexes,
        newest CUDA first. An index wheel is named by its local version, as in the images envcheck builds."""
        options = []
        for series in reversed(k.torch_releases()):
            versions = k.release_versions(self.name, series)
            build = k.torch_build(series, "pypi")
            if not versions or build is None:
                continue
            version = versions[-1]
            options.append(InstallOption(version, "pypi", None, f"pip install torch=={version}", "PyPI's wheel"))
            for index in sorted(build.indexes or (), key=lambda i: index_cuda(i) or Version(0), reverse=True):
                where = (
                    f"-f {build.find_links}"  # 1.x: one find-links page for every CUDA
                    if build.find_links
                    else f"--extra-index-url {self.index_url.format(index=index)}"
                )
                command = f"pip install torch=={version}+{index} {where}"
                options.append(InstallOption(version, "index", index, command, f"PyTorch's {index} wheels"))
        return options

    def requirements(self, stack: Stack) -> list[str]:
        if stack.index_url:
            return [
                "--extra-index-url",
                shlex.quote(stack.index_url),
                shlex.quote(f"{self.name}=={stack.version}+{stack.index}"),
            ]
        return super().requirements(stack)


TORCH = Torch(
    name="torch",
    display_name="PyTorch",
    variants={"pypi": "torch", "index": "torch"},  # index: PyTorch's own wheel index named by `index:`
    gpu_variant_name="pypi",
    version_pattern=RELEASE,
    version_example="2.5.1",
    install_note="(its default Linux wheel is a CUDA build)",
    with_libraries_note=" from PyPI, whose nvidia-* dependencies bring them",
    cpu_only_what="torch.version.cuda is None",
    cpu_only_fix="`pip install torch` from PyPI (a CUDA build on Linux x86_64) or from a CUDA index such as "
    "https://download.pytorch.org/whl/cu128, not from the cpu index",
    cpu_only_evidence="torch.version.cuda = None",
    cpu_package="torch from the cpu index",
    cudnn_rule="needs the same major",
    oom_advice="set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True against fragmentation.",
    forced_cpu_fix="Remove hard-wired torch.device('cpu') / .to('cpu') placements and CUDA_VISIBLE_DEVICES=''/-1 "
    "assignments; pick the device with torch.cuda.is_available()",
    log_markers=("torch", "cudagetdevicecount"),
    log_strong_markers=("import torch", "torch.cuda", "torch/", "torch.__version__", "pytorch", "c10/cuda", "libtorch"),
    log_version=re.compile(
        r"\b(?:torch|pytorch)(?:\s+version)?(?:\s*\([^)]*\))?\s*(?:==?|:|\s)\s*(?:nightly\s*\()?'?(\d+\.\d+(?:\.\d+)?)",
        re.IGNORECASE,
    ),
    default_variant="pypi",
    index_variant="index",
    index_url="https://download.pytorch.org/whl/{index}",
)
