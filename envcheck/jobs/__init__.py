"""The matrix as jobs of the engines teams already run: GitHub Actions and GitLab CI workflows (ci.py), Kubernetes
Jobs (k8s.py) and Slurm job arrays (slurm/), generated from matrix.yaml, and the records those jobs leave collected
into the table (what the collectors check alike: untrusted.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Parts shared by several jobs (steps, labels) are written out in each: no &anchors, which CI readers and
    people do not expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings (scripts, path lists) as literal blocks, as people write them."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _text)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def dump_yaml_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def first_repeated(values: Sequence[str]) -> str | None:
    """The first value (in sort order) a flag was given more than once: each value names one column of the table,
    so a repeated one would run every stack twice there."""
    twice = sorted({v for v in values if values.count(v) > 1})
    return twice[0] if twice else None
