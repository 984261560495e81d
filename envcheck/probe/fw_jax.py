"""JAX for envcheck's probe: its build (jaxlib and the CUDA plugin), the GPUs it sees, placement, its matmul.

An adapter of probe.py (standard library + JAX only). JAX says why it falls back to the CPU in its log ("An
NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed", "Unable to initialize
backend 'cuda'"), which the probe captures.
"""

from __future__ import annotations

import importlib
import time
from importlib import metadata

NAME = "jax"
DISTRIBUTIONS = ("jax",)  # its distribution, for the version the probe reads without importing it
PACKAGE = "jax_plugins"  # the namespace of the CUDA PJRT plugin (jax-cuda12-pjrt); jaxlib itself has no CUDA
# Relative to jax_plugins/: the PJRT plugin (jax-cuda12-pjrt), and the plugin's kernels beside it
# (jax-cuda12-plugin), whose RPATH reaches cuSOLVER.
OBJECTS = (
    "xla_cuda12/xla_cuda_plugin.so",
    "../jax_cuda12_plugin/_solver.so",
    "xla_cuda13/xla_cuda_plugin.so",
    "../jax_cuda13_plugin/_solver.so",
)
CODE_OBJECTS = ("xla_cuda12/xla_cuda_plugin.so", "xla_cuda13/xla_cuda_plugin.so")
LIBRARIES = ("cudart", "cublas", "cublasLt", "cufft", "cusolver", "cusparse", "cudnn", "nccl", "cupti", "cuda")
PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "jax-cuda13-pjrt")
# Installed with jax and read with it (versions, requirements) when `import jax` fails: its nvidia-* pins are the
# plugin's (jax-cuda12-plugin[with_cuda]).
COMPANIONS = ("jaxlib", *PLUGINS)
OWN_PACKAGES = ("jaxlib", "jax_plugins")  # top-level packages of JAX's own (jax_cuda12_plugin: by its jax_ prefix)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def load(facts: dict):
    import jax
    import jaxlib

    facts["framework_version"] = jax.__version__
    plugins = {name: version for name in PLUGINS if (version := _installed(name))}
    facts["build_info"] = {"jaxlib": getattr(jaxlib, "__version__", None), "plugins": plugins}
    majors = sorted({name.split("-")[1][4:] for name in plugins})  # jax-cuda12-plugin → "12"
    facts["is_cuda_build"] = bool(plugins)
    if majors:
        facts["build_cuda"] = majors[-1]
        try:  # the CUDA and cuDNN the plugin was built with, as it reports them (no GPU needed)
            versions = importlib.import_module(f"jax_cuda{majors[-1]}_plugin._versions")
            cuda, cudnn = versions.cuda_runtime_build_version(), versions.cudnn_build_version()
            facts["build_cuda"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
            facts["build_cudnn"] = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}"
        except Exception as exc:
            facts["log"].append(f"plugin versions: {type(exc).__name__}: {exc}")
    try:
        facts["matmul_precision"] = jax.config.jax_default_matmul_precision
    except Exception:
        facts["matmul_precision"] = None
    # JAX's default precision lets XLA run float32 dots as TF32 on Ampere and newer unless it is "highest"/"float32".
    facts["tf32_enabled"] = facts["matmul_precision"] in (None, "default", "bfloat16", "tensorfloat32")
    facts["backend"] = jax.default_backend()
    for device in jax.devices():
        if device.platform != "gpu":
            continue
        facts["gpus"].append(
            {
                "name": str(device),
                "device_name": getattr(device, "device_kind", None),
                "compute_capability": getattr(device, "compute_capability", None),
            }
        )
    return jax


def placement(jax) -> dict:
    gpu = jax.devices("gpu")[0]
    c = jax.device_put(jax.numpy.ones((64, 64)), gpu) @ jax.device_put(jax.numpy.ones((64, 64)), gpu)
    where = next(iter(c.devices()))
    return {"requested": str(gpu), "placed_on": str(where), "on_gpu": where.platform == "gpu"}


def matmul(jax, device: str, dtype_name: str, n: int):
    import jax.numpy as jnp

    target = jax.devices(device)[0]
    dtype = getattr(jnp, dtype_name)
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.uniform(key_a, (n, n), dtype=jnp.float32).astype(dtype), target)
    b = jax.device_put(jax.random.uniform(key_b, (n, n), dtype=jnp.float32).astype(dtype), target)
    step = jax.jit(jnp.matmul)

    def run(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            c = step(a, b)
        c.block_until_ready()  # the device has finished every queued matmul
        return time.perf_counter() - start

    return run, str(next(iter(step(a, b).devices())))
