"""The tuned part of a log corpus as test cases, shared by the explain tests of each framework's corpora: every case
expects the cause its thread settled, and the ones explain still gets wrong are listed (WRONG) with why, strictly,
so a case it gets right fails the run until it leaves the list."""

from __future__ import annotations

from typing import Any

import pytest
from explain_accuracy import file_cases, held_aside


def parameters(cases: list[dict[str, Any]], wrong: dict[str, str]) -> list[Any]:
    """One parameter per case, named by its thread; a known miss is a strict xfail with its reason."""
    return [
        pytest.param(
            case,
            id=case["source"].split("://", 1)[1],
            marks=[pytest.mark.xfail(strict=True, reason=wrong[case["source"]])] if case["source"] in wrong else [],
        )
        for case in cases
    ]


def check_material(files: list[str], wrong: dict[str, str], at_least: int, frameworks: tuple[str, ...]) -> None:
    """The files hold at least `at_least` distinct threads of these frameworks, each with a log and how it was
    settled; WRONG names only tuned cases of them (the held part is measured, never listed)."""
    everything = file_cases(files)
    sources = [c["source"] for c in everything]
    assert len(sources) == len(set(sources)) >= at_least and set(wrong) <= set(sources)
    assert not any(held_aside({"source": s}) for s in wrong)
    assert all(c["framework"] in frameworks and c["log"].strip() and c["thread"] for c in everything)
