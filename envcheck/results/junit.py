"""Results as JUnit XML, for CI systems that show test reports: one test case per stack × host, what its image needs
from a host as the case's properties."""

from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape, quoteattr

from envcheck.diagnosis.requirements import needs_of
from envcheck.results.model import Result

# Characters XML 1.0 does not allow (control codes such as the ESC of colour codes in build logs, surrogates).
NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: str) -> str:
    """A value as XML character data: ANSI colour sequences dropped, other characters XML forbids replaced."""
    return NOT_XML.sub("\ufffd", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", value))


def properties(result: Result) -> str:
    """What the stack's image needs from a host, as the test case's properties (CI systems list them with the case):
    `needs` in words, then the figures one by one; empty where no probe ran."""
    found = needs_of(result.probe)
    if found is None:
        return ""
    data = found.to_dict()
    gpus = data["gpus"]
    named = {
        "needs": data["said"],
        "needs.cuda": data["cuda"],
        "needs.min_driver": data["min_driver"],
        "needs.min_driver_minor_compat": data["min_driver_minor_compat"],
        "needs.min_driver_for_ptx": data["min_driver_for_ptx"],
        "needs.gpus_native": ", ".join(gpus["native"]),
        "needs.gpus_ptx_jit": ", ".join(gpus["ptx_jit"]),
    }
    items = "".join(
        f"<property name={quoteattr(name)} value={quoteattr(text(value))}/>" for name, value in named.items() if value
    )
    return f"<properties>{items}</properties>"


def render_junit(results: list[Result]) -> str:
    """A stack that did not build and run is a failure; its message names the status and the cause."""
    cases = []
    for r in results:
        name = quoteattr(text(r.stack))
        classname = quoteattr(text(f"envcheck.{r.host.label}"))
        seconds = (r.build.seconds if r.build else 0) + (r.run.seconds if r.run else 0)
        said: dict[str, object] = {"status": r.status.value, "codes": r.codes, "gpu_tflops": r.best_tflops("gpu")}
        if r.kind != "rendered":  # an image people already run: which one, and what the probe found in it
            found = [{"name": name, "version": version} for name, version in r.frameworks_found]
            said.update(image=r.image, digest=r.digest, frameworks_found=found)
        body = escape(json.dumps(said))
        head = f'  <testcase classname={classname} name={name} time="{seconds:.1f}">{properties(r)}'
        if r.status.ran:
            cases.append(f"{head}<system-out>{body}</system-out></testcase>")
        else:
            message = quoteattr(text(f"{r.status}: {r.error or ', '.join(r.codes)}"[:500]))
            cases.append(f'{head}<failure message={message} type="{r.status}">{body}</failure></testcase>')
    failures = sum(not r.status.ran for r in results)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="envcheck" tests="{len(results)}" '
        f'failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )
