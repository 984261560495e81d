"""`envcheck explain` (issue 12): the cause of a GPU machine's log, measured on real logs users posted.

tests/data/explain_corpus.yaml holds excerpts users posted in public issue threads, each with the cause the thread
established; explain must name that cause first for at least 90% of them. The same reading feeds the probe's own
diagnosis, tested here on a recorded container run with users' lines added.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATA, load_json, run_cli
from envcheck.diagnosis.diagnose import diagnose
from envcheck.diagnosis.explain import READ_BYTES, ExplainOptions, explain, lines_of
from envcheck.diagnosis.logread import Known, hides_all_gpus, read_log
from envcheck.diagnosis.plan import PlannedHost, plan
from envcheck.diagnosis.probe_facts import Facts
from envcheck.inputs.matrix import parse_matrix
from envcheck.knowledge import Knowledge, Version

K = Knowledge.load()
CORPUS = yaml.safe_load((DATA / "explain_corpus.yaml").read_text())
LOG_LINES = yaml.safe_load((DATA / "framework_log_lines.yaml").read_text())

# Cases of the corpus explain gets wrong, with why.
WRONG: dict[str, str] = {
    "https://github.com/jax-ml/jax/issues/11967": "XLA's 'no kernel image is available' with nothing else in the log "
    "but prose: the cause (driver 470 too old for the PTX jaxlib's CUDA 11.6 made) needs the jaxlib's CUDA, which the "
    "log does not print and envcheck's data does not hold for JAX 0.3; explain says compute-capability-unsupported",
}


def explained(case: dict) -> list[str]:
    return _explained(CORPUS.index(case))


@functools.cache
def _explained(index: int) -> list[str]:
    """Each case explained once a session (the per-case and the overall test read the same answers)."""
    case = CORPUS[index]
    framework, version, driver, gpus = (*case["args"][:3], tuple(case["args"][3])) if "args" in case else (None,) * 4
    options = ExplainOptions(framework, version, driver, gpus or ())
    found = explain(case["log"].splitlines(keepends=True), options)
    return [d.code for d in found.diagnoses]


def case_id(case: dict) -> str:
    return case["source"].split("github.com/")[1]


def test_the_corpus_is_real_and_large_enough():
    assert len(CORPUS) >= 40 and set(WRONG) <= {c["source"] for c in CORPUS}
    assert len({c["source"] for c in CORPUS}) == len(CORPUS)
    for case in CORPUS:
        assert case["source"].startswith("https://github.com/") and case["thread"] and case["log"].strip()
        assert case["cause"] in VOCABULARY, case["source"]


VOCABULARY = {
    "no-gpu-runtime",
    "tensorflow-missing",
    "framework-missing",
    "python-unsupported",
    "cpu-only-build",
    "no-driver",
    "driver-library-mismatch",
    "gpus-hidden",
    "driver-too-old",
    "cuda-libs-missing",
    "cuda-libs-not-on-path",
    "cuda-mismatch",
    "cudnn-mismatch",
    "compute-capability-unsupported",
    "gpu-too-new",
    "ptx-jit",
    "xla-toolchain-missing",
    "ptxas-too-old",
    "jax-plugin-mismatch",
    "shm-too-small",
    "wsl-libcuda",
    "fabric-manager-missing",
    "nvidia-uvm-broken",
    "torch-abi-mismatch",
    "gpu-oom",
    "placement-forced-cpu",
}


def corpus_cases() -> list:
    """Every case of the corpus; those in WRONG are expected to fail, strictly: one explain gets right passes
    unexpectedly and fails the run until it leaves WRONG."""
    return [
        pytest.param(
            case,
            id=case_id(case),
            marks=[pytest.mark.xfail(strict=True, reason=WRONG[case["source"]])] if case["source"] in WRONG else [],
        )
        for case in CORPUS
    ]


@pytest.mark.parametrize("case", corpus_cases())
def test_explain_names_the_cause_the_thread_established(case: dict):
    codes = explained(case)
    assert codes and codes[0] == case["cause"], codes


def test_explain_is_right_on_at_least_90_percent_of_the_corpus():
    right = sum(1 for case in CORPUS if explained(case)[:1] == [case["cause"]])
    assert right / len(CORPUS) >= 0.9, f"{right}/{len(CORPUS)}"


def test_evidence_is_the_lines_of_the_log_that_prove_it():
    case = next(c for c in CORPUS if c["source"].endswith("tensorflow/issues/22525"))
    found = explain(case["log"].splitlines(), ExplainOptions())
    (mismatch,) = found.diagnoses
    assert mismatch.evidence[0].startswith("line 3: ") and "CUDA_ERROR_NO_DEVICE" in mismatch.evidence[0]
    assert any("libcuda reported version is: 375.66.0" in e for e in mismatch.evidence)
    assert any("kernel version 384.130.0 does not match DSO version 375.66.0" in e for e in mismatch.evidence)
    assert found.verdict.startswith("TensorFlow does not use the GPU: The NVIDIA user-space driver")
    assert found.uses_gpu is False


def test_what_the_log_reveals_and_the_flags_decide_together():
    """A Blackwell GPU named on the command line, TF's release from the flag: gpu-too-new from the knowledge alone,
    and the user's INVALID_PTX line as its evidence."""
    case = next(c for c in CORPUS if c["source"].endswith("tensorflow/issues/99592"))
    options = ExplainOptions("tensorflow", "2.19.0", "575.51.03", ("NVIDIA GeForce RTX 5090",))
    found = explain(case["log"].splitlines(), options)
    assert [d.code for d in found.diagnoses] == ["gpu-too-new"]
    evidence = found.diagnoses[0].evidence
    assert evidence[0].startswith(
        "NVIDIA GeForce RTX 5090 (compute capability 12.0) has no native kernels in TensorFlow 2.19"
    )
    assert "CUDA_ERROR_INVALID_PTX" in evidence[1]
    assert found.read["gpus"] == [{"name": "NVIDIA GeForce RTX 5090", "compute_capability": "12.0"}]
    # The same GPU on a release that runs on it natively: no cause.
    assert explain([], ExplainOptions("torch", "2.9.1", "580.65.06", ("NVIDIA GeForce RTX 5090",))).diagnoses == []
    unknown = explain([], ExplainOptions("tensorflow", "2.99.0", None, ("Radeon 7900",))).to_dict()
    assert unknown["notes"] == [
        "--gpu 'Radeon 7900' is not a GPU envcheck knows: its compute capability is unknown",
        "TensorFlow 2.99.0 is not in envcheck's data (it knows 2.10–2.21): what it was built with is unknown, so only "
        "the log's own messages count",
    ]
    assert unknown["verdict"] == "No known cause in this log (0 lines read)."


def test_the_driver_read_from_the_log_against_the_cuda_stated():
    """conda's cudatoolkit 10.0 on driver 388.73: no error line, yet the versions decide (CUDA 10.0 needs 410.48)."""
    case = next(c for c in CORPUS if c["source"].endswith("tensorflow/issues/37978"))
    (found,) = explain(case["log"].splitlines(), ExplainOptions()).diagnoses
    assert found.code == "driver-too-old" and "410.48" in found.fix


def test_a_library_of_another_major_on_disk_is_a_mismatch_and_the_same_major_is_off_the_path():
    failure = (
        "W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic library "
        "'libcudnn.so.8'; dlerror: libcudnn.so.8: cannot open shared object file: No such file or directory"
    )
    assert list(read_log([failure], K).codes) == ["cuda-libs-missing"]  # the line's source: tensorflow/issues/45200
    assert list(read_log([failure], K, Known(on_disk={"cudnn": {8}})).codes) == ["cuda-libs-not-on-path"]
    assert list(read_log([failure], K, Known(on_disk={"cudnn": {9}})).codes) == ["cudnn-mismatch"]


def test_cuda_visible_devices_that_leaves_no_gpu():
    assert hides_all_gpus("", 2) and hides_all_gpus("-1", None) and hides_all_gpus("$0", None)
    assert hides_all_gpus("2", 1) and hides_all_gpus("5,6", 4)
    assert not hides_all_gpus("0", 1) and not hides_all_gpus("1,5", 4) and not hides_all_gpus("2", None)
    assert not hides_all_gpus("GPU-8f6e1a4c-1b2d-4e0f-9a7b-3c5d6e7f8a9b", None)


@pytest.mark.parametrize("entry", LOG_LINES, ids=[e["source"].split("github.com/")[1] for e in LOG_LINES])
def test_pytorch_and_jax_lines_users_posted(entry: dict):
    assert list(read_log([entry["line"]], K).codes) == [entry["code"]]


# -- the probe's own diagnosis reads its log the same way -----------------------------------------------------


def on_an_a100() -> dict:
    """The recorded TF 2.15 container run, as if NVML had seen one A100 with driver 550."""
    probe = copy.deepcopy(load_json("probe-tf2.15.1-and-cuda-no-gpu-runtime.json")["probe"])
    probe["nvml"].update(
        available=True,
        driver="550.54.15",
        error=None,
        gpus=[{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}],
    )
    return probe


def test_the_probe_diagnosis_uses_the_reading():
    """A recorded TF 2.15 container run, given a GPU, with a user's library failure in its log: libcudnn.so.8 is on
    disk (the probe found it), so the line means off the loader path, not missing."""
    probe = on_an_a100()
    probe["tf_log"].append(
        "2022-07-10 15:08:09.276131: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load "
        "dynamic library 'libcudnn.so.8'; dlerror: libcudnn.so.8: cannot open shared object file: No such file or "
        "directory; LD_LIBRARY_PATH: /usr/local/nvidia/lib:/usr/local/nvidia/lib64"
    )  # from https://github.com/JdeRobot/BehaviorMetrics/issues/385
    found = {d.code: d for d in diagnose(Facts(probe=probe))}
    assert "cuda-libs-not-on-path" in found and "cuda-libs-missing" not in found
    assert any(e.startswith("log line ") and "libcudnn.so.8" in e for e in found["cuda-libs-not-on-path"].evidence)


def test_the_probe_sees_cuda_visible_devices_naming_a_gpu_nvml_does_not_list():
    probe = on_an_a100()
    probe["env"]["CUDA_VISIBLE_DEVICES"] = "1"
    found = {d.code: d for d in diagnose(Facts(probe=probe))}
    assert found["gpus-hidden"].evidence == ["CUDA_VISIBLE_DEVICES='1' names no GPU of the 1 NVML lists"]
    probe["env"]["CUDA_VISIBLE_DEVICES"] = "0"
    assert "gpus-hidden" not in {d.code for d in diagnose(Facts(probe=probe))}


def test_plan_says_gpu_too_new_for_a_blackwell_gpu_on_tensorflow():
    matrix = parse_matrix(
        "stacks:\n  - {name: tf-2.19, tensorflow: '2.19.0', variant: and-cuda}\n"
        "  - {name: torch-2.9, torch: '2.9.1'}\n",
        Path("m.yaml"),
    )
    host = PlannedHost(Version("575.51.03"), (("NVIDIA GeForce RTX 5090", K.gpu_compute_capability("RTX 5090")),))
    verdicts = {v.stack: v for v in plan(matrix.stacks, host, K)}
    assert verdicts["tf-2.19"].codes == ["gpu-too-new"] and verdicts["torch-2.9"].codes == []


# -- the command: a pipe, a file, huge and hostile input -----------------------------------------------------


def corpus_log(suffix: str) -> str:
    return next(c["log"] for c in CORPUS if c["source"].endswith(suffix))


def test_explain_reads_a_pipe_and_a_file(tmp_path: Path):
    log = corpus_log("pytorch/examples/issues/115")
    piped = run_cli("explain", "-", "--json", input=log)
    assert piped.returncode == 1, piped.stderr
    doc = json.loads(piped.stdout)
    assert doc["verdict"] == "PyTorch does not use the GPU: GPUs are hidden from CUDA by an environment variable."
    assert doc["diagnoses"][0]["code"] == "gpus-hidden" and doc["read"]["env"] == {"CUDA_VISIBLE_DEVICES": "2"}
    assert set(doc["diagnoses"][0]) == {"code", "severity", "summary", "evidence", "fix"}
    path = tmp_path / "docker-logs.txt"
    path.write_text(log)
    text = run_cli("explain", str(path))
    assert text.returncode == 1 and text.stdout.splitlines()[0] == doc["verdict"]
    assert "[error] gpus-hidden: GPUs are hidden" in text.stdout and "fix: Unset it" in text.stdout


def test_explain_lists_error_lines_it_does_not_know():
    """TF's INVALID_HANDLE line (tensorflow/issues/99592) follows INVALID_PTX; alone it names no cause."""
    log = (
        "W tensorflow/compiler/mlir/tools/kernel_gen/tf_gpu_runtime_wrappers.cc:40] 'cuModuleGetFunction(&function, "
        "module, kernel_name)' failed with 'CUDA_ERROR_INVALID_HANDLE'\n"
    )
    result = run_cli("explain", "-", input=log)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No known cause in this log (1 lines read; 1 error line(s) not recognised")
    assert "line 1: W tensorflow/compiler/mlir/tools/kernel_gen" in result.stdout


def test_explain_refuses_what_it_cannot_read(tmp_path: Path):
    for args, words in (
        ((str(tmp_path / "nope.log"),), "cannot read the log"),
        ((str(tmp_path),), "is a directory"),
        (("-", "--tensorflow", "two"), "--tensorflow 'two' is not a version number"),
    ):
        result = run_cli("explain", *args, input="")
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_binary_junk_and_overlong_lines_do_not_break_it():
    rng = random.Random(12)
    junk = bytes(rng.randrange(256) for _ in range(200_000)) + b"\x00" * 1000
    line = (
        "2024-03-09 19:15:45.018171: W tensorflow/core/common_runtime/gpu/gpu_device.cc:2251] Cannot dlopen some "
        "GPU libraries."
    )  # from tensorflow/issues/65035
    long_line = b"x" * (3 * READ_BYTES + 17) + b"\n"
    data = junk + b"\n" + long_line + line.encode() + b"\n" + junk
    found = explain(lines_of(io.BytesIO(data)), ExplainOptions())
    assert [d.code for d in found.diagnoses] == ["cuda-libs-missing"]
    json.dumps(found.to_dict())  # every value serialisable
    result = run_cli("explain", "-", "--json", input=data.decode("latin-1"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["diagnoses"][0]["code"] == "cuda-libs-missing"


@pytest.mark.slow
def test_a_100_mb_log_streams_through(tmp_path: Path):
    """Real lines repeated to 100 MB, one cause in the middle: read in one pass (speed: benchmarks/explain_speed.py)."""
    filler = (
        "".join(corpus_log(s) for s in ("tensorflow/issues/8170", "tensorflow/issues/58859"))
        .replace("CUDA_ERROR_OUT_OF_MEMORY", "")
        .replace("libdevice", "lib")
    )
    path = tmp_path / "big.log"
    with path.open("w") as out:
        block = filler * 200
        for i in range(int(100e6 / len(block)) + 1):
            out.write(block)
            if i == 300:
                out.write(corpus_log("tensorflow/issues/4768"))
    assert path.stat().st_size >= 100e6
    result = run_cli("explain", str(path), "--json", timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert [d["code"] for d in doc["diagnoses"]] == ["driver-library-mismatch"]
    assert doc["lines"] > 1_000_000


def test_mutated_real_logs_never_raise():
    """2,000 logs cut, spliced and salted from the corpus: explain answers each (the shape of its JSON holds)."""
    rng = random.Random(2026)
    text = "".join(c["log"] for c in CORPUS)
    for _ in range(2000):
        start = rng.randrange(len(text))
        piece = text[start : start + rng.randrange(1, 3000)]
        cut = rng.randrange(len(piece) + 1)
        salt = "".join(
            chr(rng.randrange(0x110000)) if rng.random() < 0.5 else rng.choice("\n\r\t\x00'\"|=:.")
            for _ in range(rng.randrange(20))
        )
        log = piece[:cut] + salt + piece[cut:]
        found = explain(
            log.encode("utf-8", "surrogatepass").decode("utf-8", "replace").splitlines(),
            ExplainOptions(*rng.choice([(), ("tensorflow", "2.15.1"), ("torch", "2.9.1", "450.80.02")])),
        )
        doc = found.to_dict()
        assert isinstance(doc["verdict"], str) and all(isinstance(d["code"], str) for d in doc["diagnoses"])


def test_explain_needs_neither_docker_nor_a_framework(tmp_path: Path):
    """With the docker SDK and every framework made unimportable, explain still answers."""
    log = tmp_path / "log.txt"
    log.write_text(corpus_log("tensorflow/issues/60913"))
    code = (
        "import sys\n"
        "for name in ('docker', 'tensorflow', 'torch', 'jax', 'pynvml'):\n"
        "    sys.modules[name] = None\n"
        "from envcheck.cli import main\n"
        f"sys.exit(main(['explain', {str(log)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("TensorFlow does not use the GPU: The cuDNN found does not match")
