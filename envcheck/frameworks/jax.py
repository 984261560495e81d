"""JAX: jax[cuda12] / jax[cuda13] (the CUDA plugin and pip's CUDA libraries), jax[cuda12-local] (the plugin, CUDA
from the image) or jax[cpu]; its release facts are knowledge.yaml's `jax` rows (Knowledge.jax_build)."""

from __future__ import annotations

import re

from envcheck.frameworks.base import Framework
from envcheck.knowledge.facts import Build, Knowledge, Version

RELEASE = re.compile(r"0\.[0-9]+\.[0-9]+(\.[0-9]+)?((a|b|rc)[0-9]+)?\Z")


class Jax(Framework):
    """The base template's hooks as they are; its cuDNN rule is its own."""

    def build(self, k: Knowledge, version: str, variant: str, index: str | None = None) -> Build | None:
        return k.jax_build(version, variant)

    def known(self, k: Knowledge) -> tuple[str, str]:
        return k.jax_releases()

    def cudnn_fits(self, loaded: Version, built: Version, known_release: bool) -> bool:
        return loaded.major == built.major and loaded >= built


JAX = Jax(
    name="jax",
    display_name="JAX",
    variants={"cuda12": "jax[cuda12]", "cuda12-local": "jax[cuda12-local]", "cuda13": "jax[cuda13]", "cpu": "jax[cpu]"},
    gpu_variant_name="cuda{major}",
    version_pattern=RELEASE,
    version_example="0.4.35",
    install_note="(or jax[cuda13] with driver >= 580)",
    with_libraries_note=", not jax[cuda12-local]",
    cpu_only_what="no CUDA plugin (jax-cuda12-plugin / jax-cuda13-plugin) is installed",
    cpu_only_fix="`pip install 'jax[cuda12]'` (or jax[cuda13] with driver >= 580); plain `jax` and jax[cpu] run on "
    "the CPU only",
    cpu_only_evidence="no jax-cuda12/13 plugin installed",
    cpu_package="jax[cpu]",
    cudnn_rule="needs the same major and at least that version",
    oom_advice="set XLA_PYTHON_CLIENT_PREALLOCATE=false (JAX reserves 75% of GPU memory up front by default).",
    forced_cpu_fix="Remove JAX_PLATFORMS=cpu, jax.config.update('jax_platforms'|'jax_platform_name', 'cpu'), "
    "jax.default_device(CPU) and numpyro.set_platform('cpu') calls",
    log_markers=("jax",),
    # jaxlib vendored TensorFlow's XLA as external/org_tensorflow, later XLA as external/xla: TF's own logs have
    # neither (they say tensorflow/compiler/xla or external/local_xla).
    log_strong_markers=(
        "jaxlib",
        "jax._src",
        "import jax",
        "jax.devices",
        "jax.numpy",
        "jax.config",
        "jax_plugins",
        "jax_platforms",
        "xlaruntimeerror",
        "xla_bridge",
        "xla_extension",
        "external/org_tensorflow",
        "external/xla/xla",
    ),
    log_version=re.compile(
        r"\bjax(?:lib)?(?:\[\w+\])?(?:\s+version)?\s*(?:==?|:|\s)\s*(\d+\.\d+(?:\.\d+)?)", re.IGNORECASE
    ),
    default_variant="cuda12",
    cpu_variants=frozenset({"cpu"}),
    variants_without_cuda_libraries=frozenset({"cuda12-local"}),
)
