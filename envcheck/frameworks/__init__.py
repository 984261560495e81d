"""The frameworks envcheck knows, as one registry: everything on the host side that differs between TensorFlow,
PyTorch and JAX is asked of these objects (envcheck.frameworks.base is their contract), so adding a framework is
adding its module here, its facts to knowledge.yaml and its probe adapter, not editing a table in every stage.

The order is the matrix's, the probe's and every listing's. A stack, probe document, record or log that names no
framework is TensorFlow's (DEFAULT): that is what they were before PyTorch and JAX came.
"""

from __future__ import annotations

from envcheck.frameworks.base import Framework
from envcheck.frameworks.jax import JAX
from envcheck.frameworks.tensorflow import TENSORFLOW
from envcheck.frameworks.torch import TORCH

FRAMEWORKS: tuple[Framework, ...] = (TENSORFLOW, TORCH, JAX)
NAMES = tuple(fw.name for fw in FRAMEWORKS)
DEFAULT = TENSORFLOW
_BY_NAME = {fw.name: fw for fw in FRAMEWORKS}


def framework(name: str) -> Framework:
    """The framework of this name (its matrix key); KeyError for any other."""
    return _BY_NAME[name]


def find(name: object) -> Framework | None:
    """The framework a value names, or None (records and probe documents may hold anything)."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


__all__ = ["DEFAULT", "FRAMEWORKS", "JAX", "NAMES", "TENSORFLOW", "TORCH", "Framework", "find", "framework"]
