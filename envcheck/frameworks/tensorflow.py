"""TensorFlow: tensorflow[and-cuda], tensorflow or tensorflow-cpu; its release facts are knowledge.yaml's
`tensorflow` entries (Knowledge.tf_build), and its build info lists the GPU code it carries."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from envcheck.frameworks.base import Framework, InstallOption
from envcheck.knowledge.facts import Build, GpuCode, Knowledge, Version

if TYPE_CHECKING:
    from envcheck.inputs.matrix import Stack

RELEASE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+((a|b|rc)[0-9]+)?(\.post[0-9]+)?\Z")


class TensorFlow(Framework):
    """The [and-cuda] extra's exact NVIDIA pins get a layer of their own; its cuDNN rule is its own."""

    def build(self, k: Knowledge, version: str, variant: str, index: str | None = None) -> Build | None:
        """Its variants share one build; the [and-cuda] pins are the build's `and_cuda`."""
        return k.tf_build(version)

    def known(self, k: Knowledge) -> tuple[str, str]:
        releases = k.releases()
        return releases[0], releases[-1]

    def install_options(self, k: Knowledge) -> list[InstallOption]:
        """Per series, its newest release: [and-cuda] where the extra exists (2.14 on), else plain tensorflow with
        the CUDA and cuDNN it was built with installed on the machine."""
        options = []
        for series in reversed(k.releases()):
            versions = k.release_versions(self.name, series)
            build = k.tf_build(series)
            if not versions or build is None:
                continue
            version = versions[-1]
            if build.and_cuda:
                command = f"pip install 'tensorflow[and-cuda]=={version}'"
                options.append(InstallOption(version, "and-cuda", None, command, "tensorflow[and-cuda]"))
            else:
                what = f"tensorflow with CUDA {build.cuda} and cuDNN {build.cudnn} installed on the machine"
                options.append(InstallOption(version, "plain", None, f"pip install tensorflow=={version}", what))
        return options

    def cudnn_fits(self, loaded: Version, built: Version, known_release: bool) -> bool:
        """TF's own rule: the build's major and an equal or higher minor (where the release is unknown, `built`
        is only what the probe read, so the major alone is judged)."""
        if not known_release:
            return loaded.major == built.major
        return loaded.major == built.major and loaded.prefix(2) >= built.prefix(2)

    def code_from_build_info(self, entries: list[str]) -> GpuCode | None:
        return GpuCode.from_build_info(entries)

    def pinned_libraries(self, stack: Stack) -> list[str]:
        """For [and-cuda], the exact NVIDIA wheels the extra pins, when the knowledge data has the full set."""
        build = Knowledge.load().tf_build(stack.version) if stack.variant == "and-cuda" else None
        return [shlex.quote(p) for p in build.and_cuda.packages] if build and build.and_cuda else []


TENSORFLOW = TensorFlow(
    name="tensorflow",
    display_name="TensorFlow",
    variants={"and-cuda": "tensorflow[and-cuda]", "plain": "tensorflow", "cpu": "tensorflow-cpu"},
    gpu_variant_name="and-cuda",
    version_pattern=RELEASE,
    version_example="2.15.1",
    install_note="(Linux, GPU)",
    with_libraries_note="",
    cpu_only_what="is_built_with_cuda() is False",
    cpu_only_fix="`pip uninstall tensorflow-cpu && pip install 'tensorflow[and-cuda]'` (the old `tensorflow-gpu` "
    "package no longer exists); on native Windows no TensorFlow after 2.10 has a GPU build: use WSL2, or 2.10 with "
    "CUDA 11.2 and cuDNN 8.1 (https://www.tensorflow.org/install/pip#windows-native)",
    cpu_only_evidence="tf.test.is_built_with_cuda() = False",
    cpu_package="tensorflow-cpu",
    cudnn_rule="needs the same major and an equal or higher minor",
    oom_advice="set TF_FORCE_GPU_ALLOW_GROWTH=true so TensorFlow does not reserve all memory up front.",
    forced_cpu_fix="Remove tf.device('/CPU:0') scopes, CUDA_VISIBLE_DEVICES=''/-1 assignments and "
    "tf.config.set_visible_devices([], 'GPU') calls",
    log_markers=("tensorflow", "tf-trt", "tf2xla"),
    log_version=re.compile(
        r"\b(?:tensorflow(?:-gpu)?|tf)(?:\[and-cuda\])?(?:\s+version)?(?:\s*\([^)]*\))?\s*(?:==?|:|\s)\s*"
        r"(?:tf-nightly\s*\(|v)?(\d+\.\d+(?:\.\d+)?)",
        re.IGNORECASE,
    ),
    log_strong_markers=("import tensorflow", "tensorflow/python/", "tf.config.", "tf.test.", "tf.__version__"),
    log_version_hints=("tf ",),  # "TF 2.15": the version, though "tf" alone does not say the log is TensorFlow's
    cpu_variants=frozenset({"cpu"}),
    variants_without_cuda_libraries=frozenset({"plain"}),
    missing_code="tensorflow-missing",  # the code of probe schema 1, kept for TensorFlow
)
