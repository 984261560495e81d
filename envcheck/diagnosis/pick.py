"""`envcheck pick`: the newest release of a framework that will use this GPU with this driver and this Python, the
exact command that installs it, and why each newer one does not.

Each install of each release (framework.install_options) goes through the checks plan makes of a stack: can pip
install it for this Python, does the driver run the CUDA runtime it brings, does each GPU get native kernels or PTX
the driver can JIT-compile. An installer that looks only at the driver (uv's automatic torch backend) hands a
GTX 1650 or a P100 a wheel without kernels for it; the GPU's architecture is checked here like the driver.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

from envcheck.diagnosis.plan import FULL_VERSION, PlannedHost, host_from_args, host_from_nvml
from envcheck.errors import ConfigError
from envcheck.frameworks import Framework
from envcheck.frameworks.base import InstallOption
from envcheck.inputs.options import PickOptions
from envcheck.knowledge import Knowledge, Version
from envcheck.knowledge.rules import Check, Level, driver_support, gpu_check, python_support, runtime_cuda
from envcheck.results.model import Diagnosis

VERSION_PROBLEMS = frozenset(
    {
        "driver-too-old",
        "compute-capability-unsupported",
        "gpu-too-new",
        "python-unsupported",
        "ptx-jit",
        "variant-unavailable",
    }
)  # diagnosis codes another release or install fixes: doctor and explain add pick's command to their fix


UNCHECKED = frozenset({"unverified", "unknown"})  # what the data could not check: picked only when nothing checked is
MAX_UNCHECKED_NOTES = 3


@dataclass
class Weighed:
    """One install option on this host: the worst of its checks, and what they said."""

    option: InstallOption
    cuda: Version | None = None
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> None:
        self.checks.append(check)

    @property
    def level(self) -> Level:
        return max((c.level for c in self.checks), default=Level.OK)

    @property
    def codes(self) -> list[str]:
        return list(dict.fromkeys(c.code for c in self.checks))

    @property
    def reasons(self) -> list[str]:
        return list(dict.fromkeys(c.message for c in self.checks))

    @property
    def why_not(self) -> str:
        """What rules it out here: its failing checks only."""
        return "; ".join(dict.fromkeys(c.message for c in self.checks if c.level == Level.FAILS))

    @property
    def works(self) -> bool:
        return self.level < Level.FAILS

    @property
    def checked(self) -> bool:
        """Every check could be made: the data holds its GPU code and its CUDA's minimum driver."""
        return not set(self.codes) & UNCHECKED

    def to_dict(self) -> dict[str, Any]:
        o = self.option
        return {
            "version": o.version,
            "variant": o.variant,
            "index": o.index,
            "install": o.what,
            "command": o.command,
            "cuda": str(self.cuda) if self.cuda else None,
            "verdict": "fails" if not self.works else "warn" if self.level == Level.WARN else "ok",
            "checked": self.checked,
            "codes": self.codes,
            "reasons": self.reasons,
        }


@dataclass
class Pick:
    framework: Framework
    host: PlannedHost
    python: str | None  # None: not known (a log that does not say), so not checked
    chosen: Weighed | None
    newer: list[Weighed]  # every option of a release newer than the chosen one (all of them when none works)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework.name,
            "driver": str(self.host.driver),
            "gpus": [{"name": name, "compute_capability": str(cc)} for name, cc in self.host.gpus],
            "python": self.python,
            "pick": self.chosen.to_dict() if self.chosen else None,
            "newer": [w.to_dict() for w in self.newer],
            "notes": self.notes,
        }


def pick_host(options: PickOptions, k: Knowledge) -> PlannedHost:
    """The host of the flags; what they leave out (the driver, the GPUs) is this host's, through NVML."""
    if options.python is not None and not FULL_VERSION.fullmatch(options.python):
        raise ConfigError(f"--python {options.python!r} is not a version (expected X.Y, for example 3.11)")
    nvml, why = (None, "") if options.driver else host_from_nvml()
    driver = options.driver or (str(nvml.driver) if nvml else None)
    if driver is None:
        raise ConfigError(f"{why}: name the driver to pick for with --driver VERSION (for example 535.54.03)")
    given = host_from_args(driver, list(options.compute_capabilities), list(options.gpus), k)
    assert given is not None  # a driver was given
    if not given.gpus and nvml is not None:
        return nvml
    return given


def weigh(option: InstallOption, fw: Framework, host: PlannedHost, python: str | None, k: Knowledge) -> Weighed:
    """The checks plan makes of a stack, made of one install option."""
    found = Weighed(option)
    build = fw.build(k, option.version, option.variant, option.index)
    if build is None:  # install_options names only releases the data holds; kept safe for hand-made options
        found.add(Check("unknown", Level.FAILS, f"{fw.display_name} {option.version} is not in envcheck's data"))
        return found
    if build.unavailable:
        found.add(Check("variant-unavailable", Level.FAILS, build.unavailable))
    for check in python_support(option.version, python, option.variant, build) if python else ():
        found.add(check)
    found.cuda = runtime_cuda(build, option.variant, k)
    support = driver_support(found.cuda, host.driver, k) if found.cuda else None
    floor = k.minor_compat_floor(found.cuda.major) if found.cuda else None
    if found.cuda and support is None and floor and host.driver < floor:  # below every runtime of that major
        found.add(
            Check(
                "driver-too-old",
                Level.FAILS,
                f"CUDA {found.cuda} needs at least driver {floor} (CUDA {found.cuda.major}.x's minor-version "
                f"compatibility floor); this host has {host.driver}",
            )
        )
    elif found.cuda and support is None:
        found.add(Check("unknown", Level.WARN, f"envcheck's data has no minimum driver for CUDA {found.cuda}"))
    driver = support.check() if support else None
    if driver:
        found.add(driver)
    if host.gpus and build.code is None:
        found.add(
            Check("unverified", Level.WARN, f"the GPU code of {option.what} is not in envcheck's data: GPU not checked")
        )
    for label, cc in host.gpus if build.code else ():
        check = gpu_check(build.code, build.label, label, cc, support, k, (build.framework, build.release))
        if check:
            found.add(check)
    return found


def pick(fw: Framework, host: PlannedHost, python: str | None = None, k: Knowledge | None = None) -> Pick:
    """The first option, newest release first, that works here by every check the data can make. One that passes
    only because the data cannot check something (a wheel's GPU code, a CUDA's minimum driver) is named in a note;
    it is the answer only where no fully checked option works, and then says what was not checked."""
    k = k or Knowledge.load()
    weighed = [weigh(option, fw, host, python, k) for option in fw.install_options(k)]
    working = [w for w in weighed if w.works]
    chosen = next((w for w in working if w.checked), None) or next(iter(working), None)
    newer = [w for w in weighed if chosen is None or Version(w.option.version) > Version(chosen.option.version)]
    unchecked = [w for w in newer if w.works]
    notes = [
        f"{fw.display_name} {w.option.version} ({w.option.what}) may work too, unchecked: "
        + "; ".join(c.message for c in w.checks if c.code in UNCHECKED)
        for w in unchecked[:MAX_UNCHECKED_NOTES]
    ]
    if len(unchecked) > MAX_UNCHECKED_NOTES:
        notes.append(f"and {len(unchecked) - MAX_UNCHECKED_NOTES} more newer options the data cannot check (--json)")
    if python is None:
        notes.append("Python version not known: which releases have wheels for it was not checked")
    if not host.gpus:
        notes.append("no GPU given: the GPU's architecture was not checked (give --gpu NAME or --compute-capability)")
    if not weighed:
        notes.append(f"envcheck's data names no exact {fw.display_name} release")
    return Pick(fw, host, python, chosen, newer, notes)


def format_text(found: Pick) -> str:
    """The pick and its command first, then each newer release and why it does not work here."""
    fw, host = found.framework, found.host
    gpus = ", ".join(name if name.startswith("compute") else f"{name} ({cc})" for name, cc in host.gpus)
    python = f", Python {found.python}" if found.python else ""
    out = [f"{fw.display_name} for driver {host.driver}{', ' + gpus if gpus else ''}{python}:"]
    if found.chosen:
        c = found.chosen
        cuda = f", CUDA {c.cuda}" if c.cuda else ""
        said = "newest that works" if c.checked else "newest that may work (not every check could be made)"
        out += [f"  {said}: {fw.display_name} {c.option.version} ({c.option.what}{cuda})"]
        out += ["", f"    {c.option.command}", ""]
        out += [f"  note: {reason}" for reason in c.reasons]
    else:
        out.append(f"  no {fw.display_name} release in envcheck's data works here")
    failing = [w for w in found.newer if not w.works]
    if failing:
        out.append("  newer, and why not:" if found.chosen else "  every release, and why not:")
    for release in dict.fromkeys(w.option.version for w in failing):  # a line per release, options alike together
        said: dict[str, list[str]] = {}
        for w in failing:
            if w.option.version == release:
                said.setdefault(w.why_not, []).append(w.option.what)
        out.append(f"    {release}: " + "; ".join(f"{', '.join(whats)}: {why}" for why, whats in said.items()))
    out += [f"  note: {note}" for note in found.notes]
    return "\n".join(out)


def pick_command(fw: Framework, host: PlannedHost, python: str | None) -> str:
    """The `envcheck pick` command line that answers for this host."""
    ccs = dict.fromkeys(str(cc) for _, cc in host.gpus)
    return " ".join(
        [f"envcheck pick {fw.name} --driver {host.driver}", *(f"--compute-capability {cc}" for cc in ccs)]
        + ([f"--python {Version(python).prefix(2)}"] if python else [])
    )


def this_python() -> str:
    """The Python envcheck runs on: pick's default."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def with_install_hint(
    diagnoses: list[Diagnosis],
    fw: Framework,
    driver: str | None,
    gpus: list[tuple[str, Version | None]],
    python: str | None,
    k: Knowledge,
) -> list[Diagnosis]:
    """Doctor's and explain's diagnoses, where a cause is a version problem and the driver is known, with the
    install that works here added to the fix (what `envcheck pick` would answer)."""
    if not driver or not FULL_VERSION.fullmatch(driver) or not any(d.code in VERSION_PROBLEMS for d in diagnoses):
        return diagnoses
    host = PlannedHost(Version(driver), tuple((name, cc) for name, cc in gpus if cc is not None))
    found = pick(fw, host, python, k)
    if found.chosen is None or not found.chosen.checked:  # a fix names only what the data stands behind
        return diagnoses
    on = f"driver {host.driver}" + (f" and {', '.join(name for name, _ in host.gpus)}" if host.gpus else "")
    hint = (
        f"The newest {fw.display_name} that works with {on}: `{found.chosen.option.command}` "
        f"({found.chosen.option.what}; `{pick_command(fw, host, python)}` says why newer ones do not)."
    )
    return [
        replace(d, fix=f"{d.fix.rstrip()} {hint}") if d.code in VERSION_PROBLEMS and hint not in d.fix else d
        for d in diagnoses
    ]
