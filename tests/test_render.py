"""Rendering: the Dockerfile a stack gets, the CA-bundle stage, and the content hash."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from envcheck.inputs.matrix import Stack, load_matrix
from envcheck.render.dockerfile import CA_BUNDLE_NAME, SHARED_MARK, UV_VERSION, content_hash, context_files, render
from envcheck.render.shared import shared_layers

REPO = Path(__file__).resolve().parents[1]

STACK = Stack(
    name="tf-2.15-cuda12",
    version="2.15.1",
    variant="and-cuda",
    cuda="12.2",
    cudnn="8.9",
    base="debian:bookworm-slim",
    python="3.11",
    env=(("CUDA_VISIBLE_DEVICES", "-1"),),
    pip=("numpy<2",),
)


def test_dockerfile_installs_the_stack():
    dockerfile = context_files(STACK, ca_bundle=False)["Dockerfile"]
    assert dockerfile.startswith("# syntax: classic builder")
    assert "FROM debian:bookworm-slim AS envcheck-python" in dockerfile
    assert "python3.11 python3.11-venv" in dockerfile
    assert "'tensorflow[and-cuda]==2.15.1' nvidia-ml-py" in dockerfile
    assert "'numpy<2'" in dockerfile  # quoted for the shell
    assert 'ENV CUDA_VISIBLE_DEVICES="-1"' in dockerfile
    assert "COPY probe.py /opt/envcheck/probe.py" in dockerfile
    # Without a CA bundle there is one stage and no bundle anywhere.
    assert "envcheck-venv" not in dockerfile and "PIP_CERT" not in dockerfile


def test_layer_order_puts_shared_layers_first():
    dockerfile = context_files(STACK, ca_bundle=True)["Dockerfile"]
    order = [
        dockerfile.index("apt-get install"),
        dockerfile.index("nvidia-cudnn-cu12==8.9.4.25"),
        dockerfile.index("tensorflow[and-cuda]"),
        dockerfile.index("'numpy<2'"),
        dockerfile.index("ENV CUDA_VISIBLE_DEVICES"),
    ]
    assert order == sorted(order)


def test_releases_with_the_same_pins_share_the_nvidia_layer():
    def layers(tensorflow: str) -> list[str]:
        stack = replace(STACK, version=tensorflow, env=(), pip=())
        return context_files(stack, ca_bundle=False)["Dockerfile"].split("\nRUN ")

    tf216, tf217, tf219 = layers("2.16.2"), layers("2.17.1"), layers("2.19.1")
    nvidia = next(i for i, layer in enumerate(tf217) if "nvidia-cublas-cu12==12.3.4.1" in layer)
    assert tf216[: nvidia + 1] == tf217[: nvidia + 1]  # everything up to and with the pinned wheels
    assert "tensorflow[and-cuda]==2.17.1" in tf217[nvidia + 1] and "tensorflow" not in tf217[nvidia]
    assert tf219[nvidia] != tf217[nvidia] and "nvidia-nccl-cu12==2.23.4" in tf219[nvidia]
    # 2.18's set is 2.19's but for NCCL (2.21.5): a layer of its own, not 2.19's.
    tf218 = layers("2.18.1")
    assert "nvidia-nccl-cu12==2.21.5" in tf218[nvidia] and tf218[nvidia] != tf219[nvidia]
    # With ranges instead of pins (2.20 on) or without [and-cuda] there is no separate layer.
    assert "nvidia-cublas" not in context_files(replace(STACK, version="2.20.0"), False)["Dockerfile"]
    assert "nvidia-cublas" not in context_files(replace(STACK, variant="cpu"), False)["Dockerfile"]


def test_ca_bundle_lives_only_in_the_venv_stage():
    dockerfile = context_files(STACK, ca_bundle=True)["Dockerfile"]
    stages = dockerfile.split("\nFROM ")
    assert len(stages) == 4  # comment header, python, venv, final
    venv_stage, final_stage = stages[2], stages[3]
    assert f"COPY {CA_BUNDLE_NAME} /tmp/envcheck-ca.pem" in venv_stage
    assert "PIP_CERT" in venv_stage
    assert final_stage.startswith("envcheck-python\nCOPY --from=envcheck-venv /opt/venv /opt/venv")
    assert "envcheck-ca" not in final_stage and "PIP_CERT" not in final_stage
    assert "SSL_CERT_FILE=/tmp/envcheck-ca.pem" in venv_stage  # uv's way to the bundle
    assert "/opt/envcheck/uv" not in final_stage  # the installer stays in the stage too


def test_uv_installs_by_default_and_pip_on_request():
    """uv (pinned, in a venv of its own) unpacks the wheels, compileall writes the .pyc files pip would; with
    `installer: pip` the Dockerfile is pip's as before. The installer is part of the content hash."""
    uv = context_files(STACK, ca_bundle=False)["Dockerfile"]
    assert STACK.installer == "uv"
    assert "/opt/envcheck/uv/bin/pip install" in uv and f"uv=={UV_VERSION}" in uv
    installs = [layer for layer in uv.split("\nRUN ") if "tensorflow[and-cuda]" in layer or "numpy<2" in layer]
    assert len(installs) == 2
    for layer in installs:
        assert "/opt/envcheck/uv/bin/uv pip install --python /opt/venv/bin/python" in layer
        assert '${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"}' in layer  # the package cache, when it runs
        assert "/opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib" in layer
        assert "/opt/venv/bin/pip install" not in layer
    pip_stack = replace(STACK, installer="pip")
    pip = context_files(pip_stack, ca_bundle=False)["Dockerfile"]
    assert "uv" not in "".join(line for line in pip.splitlines() if not line.startswith("#"))
    assert "/opt/venv/bin/pip install --no-cache-dir" in pip and "'tensorflow[and-cuda]==2.15.1' nvidia-ml-py" in pip
    assert content_hash(context_files(pip_stack, False)) != content_hash(context_files(STACK, False))


def test_stacks_that_begin_alike_get_their_shared_beginning_built_first(tmp_path: Path):
    """benchmarks/layer_sharing.yaml: all four share base + Python, the installer and the NVIDIA pins (TF 2.16.2
    and 2.17.1 pin alike); the three 2.17.1 stacks also share the framework's layer. Each stack waits for the
    longest beginning it shares; comments (the header names the stack) do not count."""
    matrix = load_matrix(REPO / "benchmarks" / "layer_sharing.yaml")
    contexts = [render(stack, tmp_path) for stack in matrix.stacks]
    layers, waits = shared_layers(contexts)
    names = [s.name for s in matrix.stacks]
    assert [len(layer.stacks) for layer in layers] == [4, 4, 4, 3]
    assert layers[0].after is None and [layer.after for layer in layers[1:]] == [x.key for x in layers[:-1]]
    assert layers[0].dockerfile.endswith("fi\n" + SHARED_MARK)  # base + Python
    assert layers[1].dockerfile.endswith(f"uv=={UV_VERSION}\n" + SHARED_MARK)
    assert "nvidia-cudnn-cu12==8.9.7.29" in layers[2].dockerfile and "tensorflow" not in layers[2].dockerfile
    assert "'tensorflow[and-cuda]==2.17.1' nvidia-ml-py" in layers[3].dockerfile
    assert set(layers[3].stacks) == {n for n in names if n.startswith("share-tf-2.17")}
    assert waits == {name: (layers[3] if "2.17" in name else layers[2]).key for name in names}
    # Written out, a beginning is a Dockerfile of its own (the first stack's comments, any stack's instructions).
    written = layers[1].write(tmp_path)
    assert (written / "Dockerfile").read_text() == layers[1].dockerfile
    # A stack alone shares nothing; with the CA bundle's per-stack stage, only base + Python is shared.
    assert shared_layers(contexts[:1]) == ([], {})
    bundle = tmp_path / "ca.pem"
    bundle.write_text("ca")
    staged = [render(stack, tmp_path / "ca", bundle) for stack in matrix.stacks]
    (python_only,), _ = shared_layers(staged)
    assert python_only.key == layers[0].key


def test_content_hash_follows_content_not_the_bundle(tmp_path: Path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("first")
    first = render(STACK, tmp_path / "build", bundle)
    assert (first.directory / CA_BUNDLE_NAME).read_text() == "first"
    bundle.write_text("second")
    assert render(STACK, tmp_path / "build", bundle).content_hash == first.content_hash
    assert first.tag == f"envcheck/tf-2.15-cuda12:{first.content_hash[:12]}"
    changed = render(replace(STACK, version="2.15.0"), tmp_path / "build", bundle)
    assert changed.content_hash != first.content_hash
    without_bundle = render(STACK, tmp_path / "build")
    # One stage instead of the CA stage, the same image: a build through the package cache (no bundle) and one
    # with the bundle reuse each other's image (issue 13).
    assert "envcheck-venv" not in (without_bundle.directory / "Dockerfile").read_text()
    assert without_bundle.content_hash == first.content_hash
    assert not (first.directory / CA_BUNDLE_NAME).exists()
    assert sorted(p.name for p in first.directory.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "boot.py",  # what any Python starts: it answers one too old for the probe (issue 26)
        "fw_jax.py",  # the probe's framework adapters (issue 11) travel with it
        "fw_tensorflow.py",
        "fw_torch.py",
        "probe.py",
        "reader_elf.py",  # the readers the probe shares with the host (envcheck/readers/)
        "reader_nvml.py",
    ]


def test_hash_is_stable_and_order_independent():
    files = context_files(STACK, ca_bundle=False)
    assert content_hash(files) == content_hash(dict(reversed(list(files.items()))))
    files["probe.py"] += "\n"
    assert content_hash(files) != content_hash(context_files(STACK, ca_bundle=False))
