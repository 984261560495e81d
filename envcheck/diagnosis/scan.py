"""What forces TensorFlow, PyTorch or JAX onto the CPU in user code: `envcheck doctor --script FILE|DIR`.

Reads Python files and Jupyter notebooks (code cells, magics included) and reports the statements that hide GPUs
or place work on the CPU, each with the framework it affects ("any" for all):
- any: CUDA_VISIBLE_DEVICES set to ''/-1 (by assignment, setdefault, putenv, update or %env);
- tensorflow: tf.config.set_visible_devices([], 'GPU'), TF1's ConfigProto(device_count={'GPU': 0}), CPU
  placement with tf.device, OneDeviceStrategy or a strategy over CPUs;
- jax: JAX_PLATFORMS / JAX_PLATFORM_NAME = cpu, jax.config.update('jax_platforms'|'jax_platform_name', 'cpu'),
  jax.default_device(<a CPU device>) and numpyro.set_platform('cpu');
- torch: a name bound to a hard-wired torch.device('cpu') (or to "cpu" and then used as a device),
  torch.set_default_device('cpu'), `.to("cpu")`/`.cpu()` of a model that is then run, and library arguments that
  place the work: Lightning `Trainer(accelerator="cpu")` (also through a dict, or a helper's default a call relies
  on), stable-baselines3 `PPO(..., device="cpu")`, `use_cpu=True`.
Keys, values and device strings are followed through simple data flow (a constant or a variable holding one). Not
reported: a CPU fallback that applies only when no GPU exists (`torch.device("cuda" if torch.cuda.is_available()
else "cpu")`, the widely copied try_gpu()/cpu() helpers) or only on MPS; a CPU chosen by a command-line option or
behind a constant that makes it dead; a CPU default that a later line replaces; moving results to the CPU
(`.cpu()`, map_location, jax.device_put); a TF CPU scope that only gathers what nested GPU scopes computed; a JAX
platform set after the backend started. Files that cannot be read or parsed are named, not silently skipped; the
part of a file before a syntax error is still read.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDING_VALUES = {"", "-1", "none", "void", "nodevfiles"}
CPU_DEVICE = re.compile(r"/?(job:[^/]*/)?(replica:\d+/)?(task:\d+/)?(device:)?cpu(:\d+)?", re.IGNORECASE)
MAGIC_ENV = re.compile(
    r"^\s*%(set_)?env\s+(?P<name>CUDA_VISIBLE_DEVICES|JAX_PLATFORMS|JAX_PLATFORM_NAME)\s*[= ]\s*(?P<value>\S*)\s*$"
)
JAX_PLATFORM_KEYS = {"jax_platforms", "jax_platform_name"}  # jax.config options; JAX_* environment variables
JAX_ACCELERATORS = {"cuda", "gpu", "rocm", "tpu", "metal"}
# Calls whose result tells whether a GPU exists: code that tests one of these chooses the CPU only without a GPU.
AVAILABILITY = {
    "list_physical_devices",
    "list_logical_devices",
    "is_gpu_available",
    "gpu_device_name",
    "num_gpus",
    "is_built_with_cuda",
    "is_available",
    "device_count",
    "get_available_gpus",
    "default_backend",  # jax: `if jax.default_backend() != "cpu":`
}
MAX_SOURCE = 2_000_000  # characters of code (a notebook's code cells, not its outputs): more is data, not a script
MAX_FILE = 200_000_000  # bytes read at all: a notebook's stored outputs may be large, its code rarely is
# Keyword arguments and dict keys that place a library's work on a device (Lightning's Trainer(accelerator=...),
# stable-baselines3's PPO(device=...), Hugging Face's from_pretrained(device_map=...)), and flags that ask a library
# for the CPU (HF/levanter `use_cpu=True`).
PLACING_KEYWORDS = {"device", "accelerator", "device_map"}
CPU_FLAG_KEYWORDS = {"use_cpu", "no_cuda", "force_cpu"}
# Parameters whose CPU default in a helper counts where a call relies on it (Lightning test helpers'
# `accelerator="cpu"`); `device="cpu"` defaults are the convention of PyTorch-style signatures, not a choice.
PLACING_DEFAULTS = {"accelerator"}
# Callees whose device= places no work: buffers only store data, safetensors/torch loaders read a file, tensor
# factories make data that code moves on, argparse defaults are the command line's choice; `.to` is read apart.
NOT_PLACING = re.compile(
    r"buffer|^(safe_open|load_file|add_argument|set_defaults|to|zeros|ones|empty|full|tensor|as_tensor|arange|"
    r"linspace|rand|randn|randint|eye|Generator)$",
    re.IGNORECASE,
)
# Keyword arguments whose dict holds defaults the command line overrides (LightningCLI(trainer_defaults={...})).
CLI_DEFAULTS = {"trainer_defaults"}
# Names that usually hold parsed command-line options, and the calls that parse them: a CPU chosen in a branch on
# them is the user's choice at run time, which a scan of the code cannot see.
OPTION_NAMES = {"args", "opt", "opts", "options", "flags", "FLAGS", "hparams", "cli_args", "cfg", "config"}
OPTION_PARSERS = {"parse_args", "parse_known_args", "cli", "parse_flags", "parse_args_into_dataclasses"}
# Methods that run a model: an object moved to the CPU and then used so does its work there.
WORK_METHODS = {"generate", "forward", "predict", "learn", "fit", "sample", "predict_step"}
# Platforms whose known problems have the CPU as workaround: `if model.device.type == "mps": model.cpu()`.
WORKAROUND_PLATFORMS = {"mps"}
# jax.<call>s that start JAX's backend: a platform chosen after one of them takes no effect.
JAX_BACKEND_STARTERS = {"devices", "local_devices", "device_count", "local_device_count", "process_index", "initialize"}
# Top-level modules that say which framework a library argument (device=, use_cpu=) belongs to.
JAX_MODULES = {"jax", "flax", "numpyro", "optax", "equinox", "haiku", "levanter", "haliax", "netket", "diffrax"}


@dataclass
class Scan:
    """Findings ({file, line, text, framework[, cell]}) and the files that could not be scanned ({file, reason})."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """Python text to scan and where each of its lines came from (a notebook cell's line, or the file's)."""

    text: str
    origin: list[tuple[int | None, int]]  # per line: (cell number or None, line number in that cell or file)
    magics: list[tuple[int, str]]  # (line in text, magic line as written)


def python_source(text: str) -> Source:
    """A .py file; IPython magics in it (jupytext and %run scripts keep them) are read like a notebook's."""
    lines, magics, _ = _unit(text.splitlines(), 0)
    return Source("\n".join(lines) + "\n", [(None, n) for n in range(1, len(lines) + 1)], magics)


def notebook_source(text: str) -> Source:
    """A notebook's code cells as one program (later cells see earlier cells' constants). Magics become `pass`
    so the cell parses, and are read on their own; a cell that is still not Python (IPython syntax such as
    `x = !ls`) is left out, and only that cell."""
    data = json.loads(text)
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise ValueError("not a Jupyter notebook (no cells)")
    out: list[str] = []
    origin: list[tuple[int | None, int]] = []
    magics: list[tuple[int, str]] = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source") or ""
        cell_lines = ("".join(source) if isinstance(source, list) else str(source)).splitlines()
        if cell_lines and cell_lines[0].lstrip().startswith("%%"):  # a cell in another language (%%bash, ...)
            continue
        lines, found, parses = _unit(cell_lines, len(out))
        magics += found
        out += lines if parses else ["pass"] * len(lines)
        origin += [(number, n) for n in range(1, len(lines) + 1)]
    return Source("\n".join(out) + "\n", origin, magics)


def _unit(lines: list[str], offset: int) -> tuple[list[str], list[tuple[int, str]], bool]:
    """One cell or file: lines starting with % or ! are IPython magics (replaced by `pass`), unless they continue
    a Python expression (`% (a, b)` on a continuation line). Returns the lines, the magics and whether it parses."""
    candidates = [n for n, line in enumerate(lines) if line.lstrip().startswith(("%", "!"))]

    def replaced(keep: set[int]) -> list[str]:
        return [
            line[: len(line) - len(line.lstrip())] + "pass" if n in candidates and n not in keep else line
            for n, line in enumerate(lines)
        ]

    for keep in [set(), *({n} for n in candidates)]:
        attempt = replaced(keep)
        try:
            ast.parse("\n".join(attempt))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        return attempt, [(offset + n + 1, lines[n]) for n in candidates if n not in keep], True
    return replaced(set()), [(offset + n + 1, lines[n]) for n in candidates], False


class Scanner(ast.NodeVisitor):
    """One pass over a module: constants and TensorFlow aliases first, then the statements that force the CPU."""

    def __init__(self, tree: ast.AST) -> None:
        self.constants: dict[str, str] = {}
        self.assigned: dict[str, int] = {}  # how often each name is bound: a name bound twice is no constant
        self.gpu_names: set[str] = set()  # names bound to the answer of an availability call
        # Names bound to the tensorflow module (tf, tensorflow, tf.compat.v1). `tf` means TensorFlow unless the
        # code binds it to something else: snippets and notebook cells often use it without the import.
        self.tf_names: set[str] = set()
        self.tf_device_names: set[str] = set()  # `device` imported from tensorflow
        self.found: list[tuple[int, str]] = []  # (line, framework it affects)
        self.cpu_devices: set[str] = set()  # names bound to a JAX CPU device (jax.devices("cpu")[0]) or None
        self.not_cpu_devices: set[str] = set()  # names also bound to something else
        self.flags: dict[str, bool] = {}  # names bound to a True/False/number constant (`USE_CPU = False`)
        self.stores: dict[str, int] = {}  # how often each name is bound in any way (for, with, +=, ...)
        self.option_names: set[str] = set(OPTION_NAMES)  # names bound to parsed command-line options
        self.device_uses: set[str] = set()  # names passed where a device goes (.to(x), device=x, torch.device(x))
        self.calls: list[ast.Call] = []
        self.modules: set[str] = set()  # top-level modules imported
        self.parents: dict[ast.AST, ast.AST] = {}
        self.bound: set[str] = set()  # every name the code binds, by import or assignment
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            self.learn(node)
        if "tf" not in self.bound:
            self.tf_names.add("tf")
        self.cpu_devices -= self.not_cpu_devices
        self.library = "jax" if self.modules & JAX_MODULES and not self.modules & {"torch", "lightning"} else "torch"

    # -- what the module binds ---------------------------------------------------------------------------------

    def learn(self, node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.bound.update((a.asname or a.name).split(".")[0] for a in node.names)
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            self.modules.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.Call):
            self.calls.append(node)
            self.learn_device_use(node)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            self.bound.add(node.id)
            self.stores[node.id] = self.stores.get(node.id, 0) + 1
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorflow" or alias.name.startswith("tensorflow."):
                    self.tf_names.add(alias.asname or "tensorflow")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tensorflow":
            for alias in node.names:
                if alias.name == "device":
                    self.tf_device_names.add(alias.asname or "device")
                elif alias.name in ("v1", "v2", "compat"):
                    self.tf_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            self.assigned[name] = self.assigned.get(name, 0) + 1
            value = self.text(node.value)
            if value is not None and self.constants.get(name, value) == value:
                self.constants[name] = value
            else:
                self.constants.pop(name, None)
                self.assigned[name] += 1  # never a constant again
            if _calls_availability(node.value) or any(
                isinstance(n, ast.Name) and n.id in self.gpu_names for n in ast.walk(node.value)
            ):
                self.gpu_names.add(name)
            if self.is_jax_cpu_device(node.value):
                self.cpu_devices.add(name)
            elif not (isinstance(node.value, ast.Constant) and node.value.value is None):
                self.not_cpu_devices.add(name)
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            if isinstance(value, (bool, int)):
                self.flags[name] = bool(value)
            if isinstance(node.value, ast.Call) and _attr(node.value.func) in OPTION_PARSERS:
                self.option_names.add(name)

    def learn_device_use(self, call: ast.Call) -> None:
        """Names handed over as a device: `.to(x)`, `device=x`/`accelerator=x`, torch.device(x)."""
        name = _attr(call.func)
        used = [k.value for k in call.keywords if k.arg in PLACING_KEYWORDS]
        if name in ("to", "device", "set_default_device") and call.args:
            used.append(call.args[0])
        self.device_uses.update(n.id for n in used if isinstance(n, ast.Name))

    def text(self, node: ast.AST | None) -> str | None:
        """The string a node stands for: a literal, a name bound to one, or an f-string of such parts."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
            return str(node.value)
        if isinstance(node, ast.Name):
            return self.constants.get(node.id) if self.assigned.get(node.id, 0) <= 1 else None
        if isinstance(node, ast.JoinedStr):
            parts = [self.text(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
            return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
        return None

    def is_tf(self, node: ast.AST) -> bool:
        """An expression rooted at the tensorflow module (tf.config, tf.compat.v1, tensorflow)."""
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self.tf_names

    def hides_gpus(self, key: ast.AST | None, value: ast.AST | None) -> str | None:
        """The framework an environment assignment keeps off the GPU: "any" for CUDA_VISIBLE_DEVICES=''/-1,
        "jax" for JAX_PLATFORMS=cpu; None when it does not."""
        return hiding_variable(self.text(key), self.text(value))

    def is_jax_cpu_device(self, node: ast.AST | None) -> bool:
        """jax.devices("cpu")[i], jax.local_devices(backend="cpu")[i], or a name bound to one."""
        if isinstance(node, ast.Name):
            return node.id in self.cpu_devices
        if isinstance(node, ast.Subscript):
            node = node.value
        if not isinstance(node, ast.Call) or _attr(node.func) not in ("devices", "local_devices"):
            return False
        backend = (node.args[0] if node.args else None) or _keyword(node, "backend")
        return (self.text(backend) or "").lower() == "cpu"

    def is_cpu(self, node: ast.AST | None) -> bool:
        found = self.text(node)
        return found is not None and CPU_DEVICE.fullmatch(found.strip()) is not None

    # -- the statements that force the CPU -----------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript) and _is_environ(target.value):
                framework = self.hides_gpus(target.slice, node.value)
                if framework and not (framework == "jax" and self.after_jax_started(node)):
                    self.report(node, framework)
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and self.names_cpu_device(node):
            self.report(node, "torch")  # DEVICE = torch.device("cpu"), or DEVICE = "cpu" later used as a device
        self.generic_visit(node)

    def names_cpu_device(self, node: ast.Assign) -> bool:
        """A name bound to torch.device("cpu"), or to "cpu" and passed as a device, and not replaced later in the
        same function (`device = torch.device("cpu")` then `if cuda: device = ...` is a default)."""
        name = node.targets[0].id  # type: ignore[attr-defined]
        torch_cpu = isinstance(node.value, ast.Call) and self.is_torch_cpu(node.value)
        plain_cpu = isinstance(node.value, ast.Constant) and self.is_torch_cpu_text(node.value)
        if not (torch_cpu or (plain_cpu and name in self.device_uses)):
            return False
        scope = self.scope_of(node)
        return not any(
            isinstance(later, ast.Assign)
            and later.lineno > node.lineno
            and any(isinstance(t, ast.Name) and t.id == name for t in later.targets)
            and not self.is_cpu_value(later.value)
            and not self.exclusive(node, later)
            for later in ast.walk(scope)
        )

    def exclusive(self, first: ast.AST, second: ast.AST) -> bool:
        """Two statements in different branches of one `if`: never both run."""
        ancestors = {}
        child, parent = first, self.parents.get(first)
        while parent is not None:
            ancestors[parent] = child
            child, parent = parent, self.parents.get(parent)
        child, parent = second, self.parents.get(second)
        while parent is not None and parent not in ancestors:
            child, parent = parent, self.parents.get(parent)
        if not isinstance(parent, ast.If):
            return False
        return (ancestors[parent] in parent.body) != (child in parent.body)

    def visit_Call(self, node: ast.Call) -> None:
        framework = self.forces_cpu(node)
        if framework:
            self.report(node, framework)
        for keyword in node.keywords:
            framework = self.placing_keyword(node, keyword)
            if framework:
                self.report(keyword.value, framework)
        if self.moves_worker_to_cpu(node):
            self.report(node, "torch")
        self.generic_visit(node)

    def placing_keyword(self, call: ast.Call, keyword: ast.keyword) -> str | None:
        """`Trainer(accelerator="cpu")`, `PPO(..., device="cpu")`, `dict(device="cpu")` handed on, `use_cpu=True`:
        the framework whose work the argument puts on the CPU. A name holding "cpu" is reported where it is bound."""
        if NOT_PLACING.search(_attr(call.func)) or isinstance(keyword.value, ast.Name):
            return None
        if keyword.arg in PLACING_KEYWORDS and self.is_cpu_value(keyword.value):
            return self.library
        if keyword.arg in CPU_FLAG_KEYWORDS and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
            return self.library
        return None

    def visit_Dict(self, node: ast.Dict) -> None:
        """{"accelerator": "cpu", ...} handed to Trainer(**kwargs); not LightningCLI's trainer_defaults, which the
        command line overrides."""
        parent = self.parents.get(node)
        if not (isinstance(parent, ast.keyword) and parent.arg in CLI_DEFAULTS):
            for key, value in zip(node.keys, node.values, strict=True):
                if self.text(key) in PLACING_KEYWORDS and not isinstance(value, ast.Name) and self.is_cpu_value(value):
                    self.report(value, self.library)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        """A helper's `accelerator="cpu"` default, where a call in the same file relies on it."""
        positional = node.args.posonlyargs + node.args.args
        pairs = list(zip(positional[len(positional) - len(node.args.defaults) :], node.args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            if arg.arg in PLACING_DEFAULTS and self.is_cpu_value(default) and self.relied_on(node, arg.arg):
                self.report(default, self.library)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def relied_on(self, function: ast.FunctionDef | ast.AsyncFunctionDef, parameter: str) -> bool:
        """Some call of this function in the file leaves `parameter` to its default (`__init__` and other
        special methods are called by other names)."""
        if function.name.startswith("__"):
            return False
        names = [a.arg for a in function.args.posonlyargs + function.args.args]
        index = names.index(parameter) if parameter in names else len(names)
        return any(
            _attr(call.func) == function.name
            and len(call.args) <= index - (1 if names[:1] in (["self"], ["cls"]) else 0)
            and not any(isinstance(a, ast.Starred) for a in call.args)
            and all(k.arg not in (parameter, None) for k in call.keywords)
            for call in self.calls
        )

    def moves_worker_to_cpu(self, call: ast.Call) -> bool:
        """`model = model.to("cpu")` / `pipe.cpu()` of an object that is run afterwards (called, or asked to
        generate/predict/learn) and not moved again: the work runs on the CPU. Results moved back are not."""
        func = call.func
        if not isinstance(func, ast.Attribute):
            return False
        target = call.args[0] if call.args else _keyword(call, "device")
        if not (func.attr == "cpu" or (func.attr == "to" and target is not None and not isinstance(target, ast.Name)
                                       and self.is_cpu_value(target))):  # fmt: skip
            return False
        parent = self.parents.get(call)
        if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
            name = parent.targets[0].id
        elif isinstance(parent, ast.Expr):
            name = _root_name(func.value)
        else:
            return False
        later = [c for c in ast.walk(self.scope_of(call)) if isinstance(c, ast.Call) and c.lineno > call.lineno]
        run = any(
            (isinstance(c.func, ast.Name) and c.func.id == name)
            or (isinstance(c.func, ast.Attribute) and c.func.attr in WORK_METHODS and _root_name(c.func.value) == name)
            for c in later
        )
        moved_again = any(
            isinstance(c.func, ast.Attribute) and c.func.attr in ("to", "cuda") and _root_name(c.func.value) == name
            for c in later
        )
        return bool(name) and run and not moved_again

    def is_cpu_value(self, node: ast.AST | None) -> bool:
        """ "cpu"/"cpu:0" (or a name holding it), or torch.device("cpu")."""
        if isinstance(node, ast.Call):
            return self.is_torch_cpu(node)
        return node is not None and self.is_torch_cpu_text(node)

    def is_torch_cpu_text(self, node: ast.AST) -> bool:
        return (self.text(node) or "").lower() in ("cpu", "cpu:0")

    def scope_of(self, node: ast.AST) -> ast.AST:
        """The function (or module) a node is in."""
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
            parent = self.parents.get(parent)
        return parent or node

    def is_torch_cpu(self, call: ast.Call) -> bool:
        """torch.device("cpu") (or "cpu:0"), spelled through the torch module."""
        func = call.func
        return (
            isinstance(func, ast.Attribute)
            and func.attr == "device"
            and isinstance(func.value, ast.Name)
            and func.value.id == "torch"
            and bool(call.args)
            and self.is_torch_cpu_text(call.args[0])
        )

    def forces_cpu(self, node: ast.Call) -> str | None:
        """The framework this call keeps on the CPU, or None."""
        name = _attr(node.func)
        first = node.args[0] if node.args else None
        count = _keyword(node, "device_count")  # TF1: ConfigProto(device_count={'GPU': 0})
        if isinstance(count, ast.Dict) and any(
            (self.text(k) or "").upper() == "GPU" and self.text(v) == "0"
            for k, v in zip(count.keys, count.values, strict=True)
        ):
            return "tensorflow"
        environ_call = name == "putenv" or (
            name == "setdefault" and isinstance(node.func, ast.Attribute) and _is_environ(node.func.value)
        )  # .setdefault on any other dict sets no environment variable
        if environ_call:
            return self.hides_gpus(first, node.args[1]) if len(node.args) >= 2 else None
        if name == "update" and isinstance(node.func, ast.Attribute) and _is_environ(node.func.value):
            pairs = list(zip(first.keys, first.values, strict=True)) if isinstance(first, ast.Dict) else []
            pairs += [(ast.Constant(k.arg), k.value) for k in node.keywords if k.arg]
            hidden = [found for k, v in pairs if (found := self.hides_gpus(k, v))]
            return hidden[0] if hidden else None
        if name == "update" and (self.text(first) or "") in JAX_PLATFORM_KEYS and len(node.args) >= 2:
            cpu = cpu_only_platforms(self.text(node.args[1]))  # jax.config.update(...)
            return "jax" if cpu and not self.after_jax_started(node) else None
        if name == "update" and self.text(first) == "jax_default_device" and len(node.args) >= 2:
            return "jax" if self.is_jax_cpu_device(node.args[1]) else None
        if name == "default_device" and self.is_jax_cpu_device(first):
            return "jax"
        if name == "set_platform":  # numpyro.set_platform("cpu")
            return "jax" if cpu_only_platforms(self.text(first or _keyword(node, "platform"))) else None
        if name == "set_default_device" and (self.text(first) or "").lower() in ("cpu", "cpu:0"):
            return "torch"
        if name == "device":
            tf_cpu = self.is_tf_device(node.func) and self.is_cpu(first) and not self.returned(node)
            return "tensorflow" if tf_cpu and not self.gathers_gpu_work(node) else None
        if name == "OneDeviceStrategy":
            return "tensorflow" if self.is_cpu(first or _keyword(node, "device")) else None
        if name in ("MirroredStrategy", "CentralStorageStrategy"):  # a strategy over CPUs only
            devices = first or _keyword(node, "devices") or _keyword(node, "compute_devices")
            over_cpus = (
                isinstance(devices, (ast.List, ast.Tuple))
                and bool(devices.elts)
                and all(map(self.is_cpu, devices.elts))
            )
            return "tensorflow" if over_cpus else None
        if name == "set_visible_devices" and self.is_tf(node.func) and _empty(first or _keyword(node, "devices")):
            kinds = [self.text(a) for a in node.args[1:]] + [self.text(_keyword(node, "device_type"))]
            return "tensorflow" if any((k or "").upper() == "GPU" for k in kinds) else None
        return None

    def gathers_gpu_work(self, call: ast.Call) -> bool:
        """`with tf.device("/cpu:0"):` around `with tf.device(f"/gpu:{i}"):` scopes (the multi-GPU parameter-server
        pattern): the CPU only holds variables and averages what the GPUs computed."""
        item = self.parents.get(call)
        scope = self.parents.get(item) if isinstance(item, ast.withitem) else None
        return isinstance(scope, ast.With) and any(
            isinstance(inner, ast.With)
            and any(
                isinstance(i.context_expr, ast.Call)
                and _attr(i.context_expr.func) == "device"
                and i.context_expr.args
                and not self.is_cpu(i.context_expr.args[0])
                for i in inner.items
            )
            for stmt in scope.body
            for inner in ast.walk(stmt)
        )

    def after_jax_started(self, node: ast.AST) -> bool:
        """A JAX platform set after a call that started JAX's backend (jax.devices(), jax.distributed.initialize())
        in the same block or an enclosing one: JAX keeps the platform it started with."""
        child, parent = node, self.parents.get(node)
        while parent is not None:
            for body in (getattr(parent, f, None) for f in ("body", "orelse", "finalbody")):
                if isinstance(body, list) and child in body:
                    for earlier in body[: body.index(child)]:
                        if any(
                            isinstance(c, ast.Call)
                            and _attr(c.func) in JAX_BACKEND_STARTERS
                            and _root_name(c.func) == "jax"
                            for c in ast.walk(earlier)
                        ):
                            return True
            child, parent = parent, self.parents.get(parent)
        return False

    def is_tf_device(self, func: ast.AST) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self.tf_device_names
        return isinstance(func, ast.Attribute) and self.is_tf(func.value)

    def returned(self, node: ast.AST) -> bool:
        """tf.device(...) handed back by a helper (d2l's cpu(), try_all_gpus()) places nothing by itself."""
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.stmt):
            if isinstance(parent, ast.Lambda):
                return True
            parent = self.parents.get(parent)
        return isinstance(parent, ast.Return)

    def report(self, node: ast.AST, framework: str) -> None:
        if not self.in_fallback(node):
            self.found.append((node.lineno, framework))

    def in_fallback(self, node: ast.AST) -> bool:
        """Code that runs only where no GPU exists: the else of `if <there is a GPU>:` (or the body of
        `if not ...`), or what follows `if <there is a GPU>: return ...` in the same function, as in d2l's
        try_gpu(). A CPU there is the fallback for a machine without a GPU, not a forced CPU."""
        child, parent = node, self.parents.get(node)
        while parent is not None:
            if isinstance(parent, ast.ExceptHandler) and self.rebinds_tried(node, self.parents.get(parent)):
                return True
            if isinstance(parent, (ast.If, ast.IfExp)) and self.chosen_elsewhere(parent, child):
                return True
            if isinstance(parent, (ast.If, ast.IfExp)) and self.asks_for_gpus(parent.test) is not None:
                gpu_first = self.asks_for_gpus(parent.test)
                in_body = child is parent.body or (isinstance(parent.body, list) and child in parent.body)
                if in_body != gpu_first:
                    return True
            body = getattr(parent, "body", None)
            if isinstance(body, list) and child in body:
                for earlier in body[: body.index(child)]:
                    if (
                        isinstance(earlier, ast.If)
                        and self.asks_for_gpus(earlier.test)
                        and any(isinstance(n, ast.Return) for n in ast.walk(earlier))
                    ):
                        return True
            child, parent = parent, self.parents.get(parent)
        return False

    def chosen_elsewhere(self, branch: ast.If | ast.IfExp, child: ast.AST) -> bool:
        """A branch the code does not hard-wire: one on a command-line option (`if args.accel: ... else: cpu`), an
        MPS workaround, or the dead side of a constant (`USE_CPU = False` then `if USE_CPU:`)."""
        test = branch.test
        names = [n for n in ast.walk(test) if isinstance(n, ast.Name)]
        if any(n.id in self.option_names for n in names):
            return True
        if any(
            (isinstance(n, ast.Constant) and n.value in WORKAROUND_PLATFORMS)
            or (isinstance(n, ast.Attribute) and n.attr in WORKAROUND_PLATFORMS)
            for n in ast.walk(test)
        ):
            return True
        truth = self.truth(test)
        if truth is None:
            return False
        in_body = child is branch.body or (isinstance(branch.body, list) and child in branch.body)
        return in_body != truth

    def truth(self, test: ast.AST) -> bool | None:
        """The value of a condition that is a constant (`False`, `USE_CPU` bound once to False, `not USE_GPU`)."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.truth(test.operand)
            return None if inner is None else not inner
        if isinstance(test, ast.Constant) and isinstance(test.value, (bool, int)):
            return bool(test.value)
        if isinstance(test, ast.Name) and self.stores.get(test.id) == 1:
            return self.flags.get(test.id)
        return None

    @staticmethod
    def rebinds_tried(node: ast.AST, handler_of: ast.AST | None) -> bool:
        """`try: device = torch.device(args.device) except: device = torch.device("cpu")`: the CPU only when the
        device asked for does not work."""
        if not isinstance(node, ast.Assign) or not isinstance(handler_of, ast.Try):
            return False
        names = {t.id for t in node.targets if isinstance(t, ast.Name)}
        tried = {
            t.id
            for stmt in handler_of.body
            if isinstance(stmt, ast.Assign)
            for t in stmt.targets
            if isinstance(t, ast.Name)
        }
        return bool(names & tried)

    def asks_for_gpus(self, test: ast.AST) -> bool | None:
        """Whether a condition asks if a GPU exists: True when it holds with a GPU (`if gpus:`), False when it
        holds without one (`if not gpus:`, `len(gpus) == 0`), None when it does not ask."""
        asks = _calls_availability(test) or any(
            isinstance(n, ast.Name) and n.id in self.gpu_names for n in ast.walk(test)
        )
        if not asks:
            return None
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return False
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            limit = test.comparators[0]
            if isinstance(limit, ast.Constant) and isinstance(limit.value, int):
                op = test.ops[0]
                return not (
                    (isinstance(op, ast.Eq) and limit.value == 0)
                    or (isinstance(op, ast.Lt) and limit.value <= 1)
                    or (isinstance(op, ast.LtE) and limit.value == 0)
                )
        return True


def _attr(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _root_name(node: ast.AST) -> str:
    """The name an attribute or method chain starts from: `model` for model.eval().cpu()."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _empty(node: ast.AST | None) -> bool:
    return isinstance(node, (ast.List, ast.Tuple)) and not node.elts


def _is_environ(node: ast.AST) -> bool:
    """os.environ, or environ imported from os."""
    return _attr(node) == "environ"


def _calls_availability(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and (_attr(n.func) in AVAILABILITY or _asks_jax_gpus(n)) for n in ast.walk(node))


def _asks_jax_gpus(call: ast.Call) -> bool:
    """jax.devices("gpu") / jax.devices(backend="cuda"): JAX's GPUs, or an error when there are none."""
    backend = (call.args[0] if call.args else None) or _keyword(call, "backend")
    return (
        _attr(call.func) in ("devices", "local_devices")
        and isinstance(backend, ast.Constant)
        and str(backend.value).lower() in ("gpu", "cuda")
    )


def cpu_only_platforms(value: str | None) -> bool:
    """A JAX platform list that names the CPU and no accelerator ("cpu"; not "cuda,cpu")."""
    if value is None:
        return False
    names = {part.strip().lower() for part in value.split(",") if part.strip()}
    return "cpu" in names and not names & JAX_ACCELERATORS


def hiding_variable(name: str | None, value: str | None) -> str | None:
    """The framework an environment variable's value keeps off the GPU ("any", "jax") or None."""
    if name is None or value is None:
        return None
    if name == "CUDA_VISIBLE_DEVICES":
        return "any" if value.strip().lower() in HIDING_VALUES else None
    if name.upper() in ("JAX_PLATFORMS", "JAX_PLATFORM_NAME"):
        return "jax" if cpu_only_platforms(value) else None
    return None


def analyse(text: str, filename: str, notebook: bool = False) -> tuple[list[dict[str, Any]], str | None]:
    """Places in one file's source that force a framework onto the CPU, as {file, line, text, framework[, cell]},
    and why the Python in it could not be parsed, if it could not (magics are still read then)."""
    source = notebook_source(text) if notebook else python_source(text)
    if len(source.text) > MAX_SOURCE:
        raise ValueError(f"more than {MAX_SOURCE:,} characters of code")
    lines = source.text.splitlines()
    found: dict[int, tuple[str, str]] = {}  # line → (text, framework)
    problem = None
    try:
        tree = ast.parse(source.text, filename=filename)
    except SyntaxError as exc:
        problem = f"not Python: {exc.msg} (line {exc.lineno})"
        tree = _prefix_tree(lines, exc.lineno or 1)
    except (RecursionError, MemoryError):
        problem, tree = "too deeply nested to parse", None
    if tree is not None:
        scanner = Scanner(tree)
        scanner.visit(tree)
        found.update((line, (lines[line - 1], framework)) for line, framework in scanner.found)
    for line, magic in source.magics:
        match = MAGIC_ENV.match(magic)
        framework = hiding_variable(match["name"], match["value"].strip("\"'")) if match else None
        if framework:
            found[line] = (magic, framework)
    findings = []
    for line in sorted(found):
        cell, number = source.origin[line - 1]
        code, framework = found[line]
        finding: dict[str, Any] = {"file": filename, "line": number, "text": code.strip()[:200], "framework": framework}
        if cell is not None:
            finding["cell"] = cell
        findings.append(finding)
    return findings, problem


def _prefix_tree(lines: list[str], error_line: int) -> ast.Module | None:
    """The file up to the top-level statement a syntax error is in (an unfinished `try:` at the end of a test
    script): what runs before it still forces the CPU."""
    cut = error_line
    for _ in range(10):  # each try drops the top-level statement the error was found in
        cut = min(cut, len(lines)) - 1
        while cut > 0 and (not lines[cut].strip() or lines[cut][:1].isspace()):
            cut -= 1
        if cut <= 0:
            return None
        try:
            return ast.parse("\n".join(lines[:cut]))
        except SyntaxError as exc:
            cut = min(cut, exc.lineno or cut)
        except (ValueError, RecursionError, MemoryError):
            return None
    return None


def scan_source(text: str, filename: str, notebook: bool = False) -> list[dict[str, Any]]:
    return analyse(text, filename, notebook)[0]


def scan_paths(paths: list[Path]) -> Scan:
    """Every .py file and notebook under the given files and folders."""
    result = Scan()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.suffix in (".py", ".ipynb")) if path.is_dir() else [path]
        for file in files:
            try:
                if file.stat().st_size > MAX_FILE:
                    raise ValueError(f"larger than {MAX_FILE:,} bytes")
                text = file.read_text(encoding="utf-8", errors="replace")
                findings, problem = analyse(text, str(file), notebook=file.suffix == ".ipynb")
            except OSError as exc:
                findings, problem = [], exc.strerror or str(exc)
            except ValueError as exc:  # a notebook that is not JSON, or a file too large to be a script
                findings, problem = [], str(exc)
            result.findings += findings
            if problem:
                result.unreadable.append({"file": str(file), "reason": problem})
    return result


def where(finding: dict[str, Any]) -> str:
    """FILE:LINE, or FILE[cell N]:LINE for a notebook."""
    cell = f"[cell {finding['cell']}]" if finding.get("cell") else ""
    return f"{finding['file']}{cell}:{finding['line']}"
