"""Every error envcheck reports on purpose, each with the exit code the CLI returns for it.

One place for exit codes keeps them a stable contract: 0 every stack met its expectation, 1 some did not,
2 configuration error, 3 Docker unavailable, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_STACK_FAILED = 1
EXIT_CONFIG = 2
EXIT_DOCKER = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class EnvcheckError(Exception):
    """An error with a one-paragraph message meant for the user; never shown as a traceback."""

    exit_code = EXIT_CONFIG


class ConfigError(EnvcheckError):
    """The matrix file or a command-line argument is wrong."""

    exit_code = EXIT_CONFIG


class DockerUnavailable(EnvcheckError):
    """The Docker daemon cannot be reached, or the docker SDK is not installed."""

    exit_code = EXIT_DOCKER


class HostUnreachable(DockerUnavailable):
    """One host's daemon (of several, --on) cannot be reached: its cells say so, the other hosts go on."""


class BaseImageMissing(EnvcheckError):
    """The stack's base image is not present locally and cannot be pulled."""

    exit_code = EXIT_STACK_FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI systems and Kubernetes send on cancel), raised where Ctrl-C would be, so the same cleanup
    runs: the running container and builds are removed, finished results kept."""
