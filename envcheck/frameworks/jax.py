"""JAX: jax[cuda12] / jax[cuda13] (the CUDA plugin and pip's CUDA libraries), jax[cuda12-local] (the plugin, CUDA
from the image) or jax[cpu]; its release facts are knowledge.yaml's `jax` rows (Knowledge.jax_build)."""

from __future__ import annotations

import re

from envcheck.frameworks.base import Framework, InstallOption
from envcheck.knowledge.facts import Build, JaxExtra, Knowledge, Version

RELEASE = re.compile(r"0\.[0-9]+\.[0-9]+(\.[0-9]+)?((a|b|rc)[0-9]+)?\Z")


class Jax(Framework):
    """The base template's hooks as they are; its cuDNN rule is its own."""

    def build(self, k: Knowledge, version: str, variant: str, index: str | None = None) -> Build | None:
        return k.jax_build(version, variant)

    def known(self, k: Knowledge) -> tuple[str, str]:
        return k.jax_releases()

    def install_options(self, k: Knowledge) -> list[InstallOption]:
        """Per row, its newest release: jax[cuda13] first (newer CUDA), then jax[cuda12]; jax[cuda12-local] needs
        CUDA from elsewhere, so it is not an install that works by itself. Then the row's extras of the releases
        before PyPI's plugins (jaxlib+cudaNN from Google's find-links page): pip extras first, newest CUDA first,
        then those that need CUDA and cuDNN installed on the machine."""
        options = []
        for row in reversed(k.jax_rows()):
            versions = k.release_versions(self.name, row)
            if not versions:
                continue
            version = versions[-1]
            for variant in ("cuda13", "cuda12"):
                build = k.jax_build(version, variant)
                if build is not None and not build.unavailable:
                    command = f"pip install '{self.variants[variant]}=={version}'"
                    options.append(InstallOption(version, variant, None, command, self.variants[variant]))
            for extra in _extra_order(list(k.jax_extras(version).values())):
                command = f"pip install 'jax[{extra.name}]=={version}' -f {extra.find_links}"
                options.append(InstallOption(version, extra.name, None, command, _extra_what(extra)))
        return options

    def cudnn_fits(self, loaded: Version, built: Version, known_release: bool) -> bool:
        return loaded.major == built.major and loaded >= built


def _extra_order(extras: list[JaxExtra]) -> list[JaxExtra]:
    """pip extras before local ones; within each, the newest CUDA (then cuDNN) first."""
    newest_first = sorted(extras, key=lambda e: (_rank(e.cuda), _rank(e.cudnn), e.name), reverse=True)
    return sorted(newest_first, key=lambda e: e.local)  # stable: keeps newest first within each


def _rank(version: Version | None) -> Version:
    return version if version is not None else Version(0)


def _extra_what(extra: JaxExtra) -> str:
    """How `pick` names an old extra: where its CUDA comes from."""
    if not extra.local:
        cuda = f"CUDA {extra.cuda.major}" if extra.cuda else "CUDA"
        return f"jax[{extra.name}] (jaxlib from Google's find-links page, {cuda} from pip)"
    needs = " and ".join(f"{what} {v}+" for what, v in (("CUDA", extra.cuda), ("cuDNN", extra.cudnn)) if v is not None)
    return (
        f"jax[{extra.name}] (jaxlib from Google's find-links page; {needs or 'CUDA and cuDNN'} must be installed on "
        "the machine)"
    )


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
