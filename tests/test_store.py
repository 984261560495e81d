"""The results store and the typed result: records read as untrusted input, the lock, the host fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import gpu_record, record, record_dict
from envcheck.results import store
from envcheck.results.model import Host, Result, Status


def test_a_result_survives_its_own_wire_format():
    for result in (record("a", "h", "2026-11-26T10:00:00+00:00"), gpu_record("b", "g", "2026-11-26T11:00:00+00:00")):
        again = Result.from_dict(json.loads(store.record_line(result)))
        assert again == result
    assert record("a", "h", "t").status is Status.CPU_ONLY and Status.CPU_ONLY.ran and not Status.FAILS.ran


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"stack": 42}, "stack is 42, not a stack name"),
        ({"host": "a"}, "host is str, not a mapping"),
        ({"timestamp": 1764150000}, "timestamp is int, not a string"),
        ({"status": "fine"}, "unknown status 'fine'"),
        ({"record_schema": 999}, "record_schema 999 is newer than this envcheck reads (1)"),
        ({"diagnoses": [{"severity": "error", "summary": "s"}]}, "diagnoses: a diagnosis has no code"),
        ({"benchmark": [{"device": "gpu", "dtype": "float16", "n": 8192, "tflops": "fast"}]}, "tflops is 'fast'"),
        ({"probe": ["not", "a", "mapping"]}, "probe is list, not a mapping"),
    ],
)
def test_malformed_records_are_named_and_skipped(tmp_path: Path, change: dict, problem: str):
    path = tmp_path / "records.jsonl"
    good = record_dict("good", "h", "2026-11-26T10:00:00+00:00")
    path.write_text(json.dumps(good) + "\n" + json.dumps({**record_dict("bad", "h", "t"), **change}) + "\n")
    results, problems = store.read([path])
    assert [r.stack for r in results] == ["good"]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: skipped: ") and problem in problems[0]


def test_unreadable_lines_never_stop_the_rest(tmp_path: Path):
    path = tmp_path / "records.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    good = json.dumps(record_dict("good", "h", "t"))
    path.write_bytes(b"\xff\xfe not utf-8\n" + deep.encode() + b"\n" + good.encode() + b"\n")
    results, problems = store.read([path])
    assert [r.stack for r in results] == ["good"]
    assert problems[0].startswith(f"{path}:1: skipped:")
    assert problems[1] == f"{path}:2: skipped: nested too deeply to be a record"


def test_unknown_keys_of_other_versions_are_kept(tmp_path: Path):
    data = {**record_dict("a", "h", "t"), "gpu_memory_peak_mib": 1234}
    result = Result.from_dict(data)
    assert result.extra == {"gpu_memory_peak_mib": 1234}
    assert json.loads(store.record_line(result))["gpu_memory_peak_mib"] == 1234


def test_importing_the_same_records_again_adds_nothing(tmp_path: Path):
    results = [record("a", "h1", "2026-11-26T10:00:00+00:00"), gpu_record("a", "h2", "2026-11-26T11:00:00+00:00")]
    for _ in range(3):
        store.import_records(tmp_path, results)
    assert len(store.own_records(tmp_path)[0]) == 2


def test_a_second_writer_waits_for_the_lock(tmp_path: Path, capsys: pytest.CaptureFixture):
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from envcheck.results import store
        with store.lock(Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(2)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with store.lock(tmp_path):
        waited = time.monotonic() - start
    process.wait(timeout=30)
    assert waited > 1.0
    assert f"another envcheck run is using {tmp_path}; waiting for it to finish" in capsys.readouterr().err


def test_host_fingerprint_follows_what_decides_a_result():
    base = Host(label="ci-1", hostname="ci-1", docker_version="20.10.24", runtimes=["runc"], kernel="6.1.0")
    same = Host(label="renamed", hostname="other", docker_version="26.1.5", runtimes=["runc"], kernel="6.1.0")
    assert base.decisive_fingerprint() == same.decisive_fingerprint()
    for changed in (
        Host(label="ci-1", runtimes=["runc", "nvidia"], kernel="6.1.0"),
        Host(label="ci-1", runtimes=["runc"], kernel="6.1.0", driver="550.54.15"),
        Host(label="ci-1", runtimes=["runc"], kernel="6.1.0", gpus=["NVIDIA H100 80GB HBM3"]),
        Host(label="ci-1", runtimes=["runc"], kernel="6.1.0", cdi_devices=["nvidia.com/gpu=0"]),
        Host(label="ci-1", runtimes=["runc"], kernel="6.8.0"),
    ):
        assert changed.decisive_fingerprint() != base.decisive_fingerprint(), changed
    # Results saved by earlier versions stay reusable: this host, as envcheck 0.1.0 recorded it in the table it
    # published (docs/compatibility.json of 2026-11-26), gets the fingerprint it was saved with.
    recorded = {
        "cdi_devices": [],
        "cuda_driver": None,
        "docker_version": "20.10.24+dfsg1",
        "driver": None,
        "fingerprint": "46ac37ad29d4fd41",
        "gpus": [],
        "hostname": "vm",
        "kernel": "6.18.44-fc-v595",
        "label": "vm",
        "nvidia_runtime": False,
        "runtimes": ["io.containerd.runc.v2", "io.containerd.runtime.v1.linux", "runc"],
    }
    assert Host.from_dict(recorded).decisive_fingerprint() == recorded["fingerprint"]
