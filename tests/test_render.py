"""Rendering: the Dockerfile a stack gets, the CA-bundle stage, and the content hash."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from envcheck.matrix import Stack
from envcheck.render import CA_BUNDLE_NAME, content_hash, context_files, render

STACK = Stack(
    name="tf-2.15-cuda12",
    tensorflow="2.15.1",
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
        stack = replace(STACK, tensorflow=tensorflow, env=(), pip=())
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
    assert "nvidia-cublas" not in context_files(replace(STACK, tensorflow="2.20.0"), False)["Dockerfile"]
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


def test_content_hash_follows_content_not_the_bundle(tmp_path: Path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("first")
    first = render(STACK, tmp_path / "build", bundle)
    assert (first.directory / CA_BUNDLE_NAME).read_text() == "first"
    bundle.write_text("second")
    assert render(STACK, tmp_path / "build", bundle).content_hash == first.content_hash
    assert first.tag == f"envcheck/tf-2.15-cuda12:{first.content_hash[:12]}"
    changed = render(replace(STACK, tensorflow="2.15.0"), tmp_path / "build", bundle)
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
        "fw_jax.py",  # the probe's framework adapters (issue 11) travel with it
        "fw_tensorflow.py",
        "fw_torch.py",
        "probe.py",
    ]


def test_hash_is_stable_and_order_independent():
    files = context_files(STACK, ca_bundle=False)
    assert content_hash(files) == content_hash(dict(reversed(list(files.items()))))
    files["probe.py"] += "\n"
    assert content_hash(files) != content_hash(context_files(STACK, ca_bundle=False))
