"""envcheck's probe, started by any Python an image has:

    PYTHON /opt/envcheck/boot.py --framework tensorflow|torch|jax|auto [the probe's flags]
    PYTHON /opt/envcheck/boot.py --require gpu [--framework NAME|auto] [--min-tflops X] [--json]

An image's interpreter may be older than the probe (Python >= 3.8): this file is written so that Python 2.7 and
every 3.x parse it (no f-strings, no annotations, no print statement or function), and answers an older one with
one JSON line, {"probe_schema", "error": "python-too-old", "python", "executable", "message"}, and exit code 3,
instead of a SyntaxError from probe.py. A newer one runs probe.py's main() with the same arguments; probe.py and
its files lie beside this one (a directory, or the preflight's zip).
"""

import json
import os
import sys

MINIMUM = (3, 8)  # probe.py's: importlib.metadata and the walrus of fw_jax.py
PROBE_SCHEMA = 2  # probe.py's PROBE_SCHEMA, which this Python may not be able to import (a test holds them equal)
TOO_OLD = 3  # the exit code for an interpreter older than MINIMUM, the gate's too


def too_old(args):
    """The one JSON line (and, for a gate, its paragraph on stderr) that says this Python cannot run the probe."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    needs = ".".join(str(part) for part in MINIMUM) + "+"
    short = ".".join(str(part) for part in sys.version_info[:2])
    document = {
        "probe_schema": PROBE_SCHEMA,
        "error": "python-too-old",
        "python": version,
        "executable": sys.executable,
        "message": "Python " + short + " is too old for envcheck's probe (needs " + needs + "); name another "
        "interpreter with `python:` in the stack",
    }
    gate = any(arg.split("=")[0] == "--require" for arg in args)
    if gate:
        reason = "Python " + version + " (" + str(sys.executable) + ") is too old for envcheck's probe (needs "
        reason += needs + "): run the check with a Python " + needs
        document["gate"] = {"passed": False, "code": "python-too-old", "reason": reason}
        sys.stderr.write("envcheck: GPU check failed (python-too-old): " + reason + ".\n")
    if not gate or "--json" in args:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()
    return TOO_OLD


def main(argv=None):
    """The probe (or its gate) on this Python, or the answer that it is too old; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if sys.version_info < MINIMUM:
        return too_old(args)
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    import probe

    return probe.main(args)


if __name__ == "__main__":
    sys.exit(main())
