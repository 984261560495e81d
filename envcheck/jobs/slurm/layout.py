"""The names render, submit, accounting and collect share: the rendered directory's files, a row of its
tasks.tsv (render writes it, collect reads it back), and the shapes of Slurm's own names (partitions, nodes, job
ids) that every step checks what it writes or reads against."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from envcheck.errors import ConfigError

# Slurm's names: partitions and accounts are plain words in slurm.conf and sacctmgr; refusing anything else keeps
# them safe in #SBATCH lines, which sbatch parses itself (no shell quoting applies there).
SLURM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
JOB_ID = re.compile(r"[0-9]{1,12}")
TABLE = "tasks.tsv"
# A task without --partition (the cluster's default) says so with "-", never an empty cell: tab is whitespace to
# `read`, so an empty cell would vanish and shift the cells after it.
NO_PARTITION = "-"
MANIFEST = "jobs.json"
SUBMITTED = "submitted.json"
TASK_SCRIPT = "probe.sbatch"
MERGE_SCRIPT = "merge.sbatch"
PROBE_FILES_DIR = "probe"


@dataclass(frozen=True)
class Task:
    """One row of tasks.tsv: a stack on a partition (None: the cluster's default partition)."""

    index: int
    stack: str
    partition: str | None
    image: str
    framework: str
    python: str
    mounted: bool  # the probe's files come from probe/ (an image envcheck did not render)

    def row(self) -> str:
        cells = [
            str(self.index),
            self.stack,
            self.partition or NO_PARTITION,
            self.image,
            self.framework,
            self.python,
            "mounted" if self.mounted else "baked",
        ]
        for cell in cells:  # the table is read with `read -r`: one line, tab-separated
            if re.search(r"[\x00-\x1f\x7f]", cell):
                raise ConfigError(f"stack {self.stack}: {cell!r} has a control character and cannot be a task's value")
        return "\t".join(cells)


def json_value(data: Any, key: str) -> Any:
    """data[key] where data is a JSON object, else None (jobs.json and submitted.json are read, not trusted)."""
    return data.get(key) if isinstance(data, dict) else None
