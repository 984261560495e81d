"""JAX 0.2-0.4.25 before PyPI's CUDA plugins (issue 27): the GPU extras of jax's setup.py, each a jaxlib+cudaNN wheel
from Google's find-links page. Every expectation is written from its source, quoted in the comment above it (jax's
setup.py, README.md and CHANGELOG.md at the jax-vX tags of github.com/jax-ml/jax; https://pypi.org/pypi/jax/json),
not read back from knowledge.yaml."""

from __future__ import annotations

from envcheck import frameworks
from envcheck.diagnosis.pick import format_text, pick
from envcheck.diagnosis.plan import host_from_args
from envcheck.knowledge.facts import Knowledge, Version

K = Knowledge.load()
JAX_CUDA_RELEASES = "https://storage.googleapis.com/jax-releases/jax_cuda_releases.html"
JAX_RELEASES = "https://storage.googleapis.com/jax-releases/jax_releases.html"


def test_the_data_knows_jax_from_0_2_0():
    # https://pypi.org/pypi/jax/json: the 0.2 series starts at 0.2.0; 0.2.0-0.2.10 have no GPU extra in setup.py
    # (README 0.2.x: `pip install --upgrade jax jaxlib==0.1.64+cuda110 -f ...`)
    assert K.known("jax") == ("0.2.0", "0.12.0.1")
    assert K.series_of("jax", "0.2.5") == "0.2.0"
    assert K.jax_extras("0.2.10") == {}
    assert K.build("jax", "0.2.10", "cuda12").unavailable.endswith("(it exists from 0.4.23)")
    assert K.build("jax", "0.1.77", "cpu") is None


def test_every_pypi_release_from_0_2_0_is_in_a_row():
    # https://pypi.org/pypi/jax/json "releases" (files, no pre-releases), 0.2.0 ... 0.4.25 in order; 0.3 ends at 0.3.25
    listed = [v for row in K.jax_rows() for v in K.release_versions("jax", row)]
    expected = [f"0.2.{n}" for n in range(29)] + [f"0.3.{n}" for n in range(26)] + [f"0.4.{n}" for n in range(26)]
    assert listed[: len(expected)] == expected
    assert K.release_versions("jax", "0.2.18") == ["0.2.18", "0.2.19"]


def test_cuda_versions_of_the_0_2_extras():
    # setup.py at jax-v0.2.11: _available_cuda_versions = ['101', '102', '110', '111', '112'] and
    # **{f'cuda-{version}': f"jaxlib=={_current_jaxlib_version}+cuda{version}" ...}
    assert set(K.jax_extras("0.2.11")) == {"cuda-101", "cuda-102", "cuda-110", "cuda-111", "cuda-112"}
    # jax-v0.2.13: f'cuda{version}'; jax-v0.2.14: _available_cuda_versions = ['101', '102', '110', '111']
    assert set(K.jax_extras("0.2.13")) == {"cuda101", "cuda102", "cuda110", "cuda111", "cuda112"}
    assert set(K.jax_extras("0.2.14")) == {"cuda101", "cuda102", "cuda110", "cuda111"}
    # jax-v0.2.20: ['102', '111'] (CHANGELOG jaxlib 0.1.71: "Support for CUDA 11.0 and CUDA 10.1 has been dropped");
    # jax-v0.2.22: ['111'] (jaxlib 0.1.72: "Support for CUDA 10.2 and CUDA 10.1 has been dropped")
    assert set(K.jax_extras("0.2.21")) == {"cuda102", "cuda111"}
    assert set(K.jax_extras("0.2.22")) == {"cuda111"}
    # README 0.2.x: "The CUDA 10 JAX wheels require CuDNN 7, whereas the CUDA 11 wheels of JAX require CuDNN 8";
    # "with `cuda112` for CUDA 11.2, ... `cuda101` for CUDA 10.1", and installed as the machine's CUDA
    build = K.build("jax", "0.2.19", "cuda102")
    assert (build.cuda, build.cudnn, build.cuda_range, build.unavailable) == (Version("10.2"), Version("7"), False, "")
    assert build.code is None and build.confirmed is False  # cuDNN from the README, not setup.py
    assert K.jax_extras("0.2.19")["cuda111"].find_links == JAX_RELEASES


def test_cuda11_extras_and_their_cudnn():
    # jax-v0.2.24 setup.py: _available_cuda_versions = ['11'], _available_cudnn_versions = ['82', '805'],
    # 'cuda': [f"jaxlib==...+cuda{_default_cuda_version}.cudnn{_default_cudnn_version}"] (cudnn 82) and
    # f'cuda{cuda_version}_cudnn{cudnn_version}'; README: "For CUDA 11.1 or newer use `cuda11`"
    extras = K.jax_extras("0.3.5")
    assert set(extras) == {"cuda", "cuda11_cudnn82", "cuda11_cudnn805"}
    assert extras["cuda11_cudnn805"].cudnn == Version("8.0.5") and extras["cuda"].cudnn == Version("8.2")
    assert extras["cuda"].cuda == Version("11.1") and extras["cuda"].local
    # 0.2.23's f'cuda={cuda_version},cudnn={cudnn_version}' names are not valid extras: only jax[cuda]
    assert set(K.jax_extras("0.2.23")) == {"cuda"}
    # jax-v0.3.24 setup.py: "$ pip install jax[cuda] -f https://storage.googleapis.com/jax-releases/jax_cuda_releases.html"
    assert K.jax_extras("0.3.23")["cuda"].find_links == JAX_RELEASES
    assert K.jax_extras("0.3.24")["cuda"].find_links == JAX_CUDA_RELEASES
    # jax-v0.4.0: _available_cudnn_versions = ['82', '86'], default '86'; README "CUDA 11.4 or newer is *required*"
    build = K.build("jax", "0.4.6", "cuda")
    assert (build.cuda, build.cudnn, build.python) == (
        Version("11.4"),
        Version("8.6"),
        (Version("3.8"), Version("3.11")),
    )


def test_pip_and_local_extras_from_0_4_7():
    # jax-v0.4.7 setup.py adds 'cuda11_pip', 'cuda12_pip' (jaxlib + nvidia-*-cu11/cu12 wheels), 'cuda11_local' and
    # 'cuda12_local' ("for those who want to use a preinstalled CUDA")
    assert {"cuda11_pip", "cuda12_pip", "cuda11_local", "cuda12_local"} <= set(K.jax_extras("0.4.7"))
    assert "cuda11_pip" not in K.jax_extras("0.4.6")
    # jax-v0.4.11 setup.py: "nvidia-cuda-runtime-cu11>=11.8", "nvidia-cudnn-cu11>=8.8", "nvidia-cudnn-cu12>=8.9"
    pip11 = K.build("jax", "0.4.12", "cuda11_pip")
    assert (pip11.cuda, pip11.cudnn, pip11.cuda_range, pip11.confirmed) == (Version("11.8"), Version("8.8"), True, True)
    # CHANGELOG jax 0.4.8: "CUDA 11.4 support has been dropped. JAX GPU wheels only support CUDA 11.8 and CUDA 12"
    local = K.build("jax", "0.4.12", "cuda11_local")
    assert (local.cuda, local.cuda_range) == (Version("11.8"), False)
    assert K.build("jax", "0.4.7", "cuda11_local").cuda == Version("11.4")
    # jax-v0.4.13: _available_cuda11_cudnn_versions = ['86'] (cuda11_cudnn82 is gone), cuda12 cudnn '89'
    assert "cuda11_cudnn82" in K.jax_extras("0.4.12") and "cuda11_cudnn82" not in K.jax_extras("0.4.13")
    assert K.jax_extras("0.4.13")["cuda12_local"].cudnn == Version("8.9")
    # jax-v0.4.17 setup.py: "nvidia-cuda-runtime-cu12>=12.2.140"; CHANGELOG jaxlib 0.4.17: "Python 3.12 wheels were
    # added", "The CUDA 12 wheels now require CUDA 12.2 or newer and cuDNN 8.9.4 or newer"
    pip12 = K.build("jax", "0.4.19", "cuda12_pip")
    assert (pip12.cuda, pip12.cudnn, pip12.python[1]) == (Version("12.2"), Version("8.9"), Version("3.12"))
    assert K.build("jax", "0.4.19", "cuda12_local").cudnn == Version("8.9.4")
    # classifiers: jax-v0.4.14 "Programming Language :: Python :: 3.9" ... "3.11" (3.8 dropped)
    assert K.build("jax", "0.4.14", "cpu").python == (Version("3.9"), Version("3.11"))
    assert K.build("jax", "0.4.13", "cpu").python == (Version("3.8"), Version("3.11"))


def test_today_behaviour_of_the_pypi_variants_on_old_rows():
    # jax[cuda12] (the plugin) exists on PyPI from 0.4.23; jax[cuda12-local] from 0.4.30
    assert (
        K.build("jax", "0.4.19", "cuda12").unavailable
        == "JAX 0.4.19 has no jax[cuda12] on PyPI (it exists from 0.4.23)"
    )
    assert "Google's find-links page" in K.build("jax", "0.4.19", "cuda12-local").unavailable
    assert K.build("jax", "0.4.19", "cuda13").unavailable.endswith("(it exists from 0.7.2)")


def test_cuda_11_ends_with_0_4_25():
    # CHANGELOG jaxlib 0.4.26 (April 3, 2024): "JAX now supports CUDA 12.1 or newer only. Support for CUDA 11.8 has
    # been dropped." jax-v0.4.25 setup.py still has 'cuda11_pip' ("nvidia-cuda-runtime-cu11>=11.8")
    assert K.build("jax", "0.4.25", "cuda11_pip").cuda == Version("11.8")
    assert "cuda11_pip" not in K.jax_extras("0.4.26")
    # jax-v0.4.25 setup.py: "nvidia-cuda-runtime-cu12>=12.3.101", "nvidia-cudnn-cu12>=8.9.7.29"
    assert K.build("jax", "0.4.25", "cuda12_pip").cudnn == Version("8.9.7.29")


def test_install_options_put_pip_extras_first_then_local_ones():
    options = [o for o in frameworks.framework("jax").install_options(K) if o.version == "0.4.19"]
    assert [o.variant for o in options][:2] == ["cuda12_pip", "cuda11_pip"]
    assert options[-1].variant.startswith(("cuda11", "cuda")) and "installed on the machine" in options[-1].what
    first = options[0]
    assert first.command == f"pip install 'jax[cuda12_pip]==0.4.19' -f {JAX_CUDA_RELEASES}"
    assert "find-links" in first.what


def test_pick_for_driver_470_names_a_cuda_11_jax():
    # Driver 470.86 supports CUDA up to 11.4 (Table 3); CUDA 11.x minor-version compatibility from 450.80.02. Every
    # jax[cuda12]/[cuda13] needs >= 525.60.13, so the pick is a CUDA 11 extra of a release before 0.4.26, which
    # dropped CUDA 11 (CHANGELOG jaxlib 0.4.26). Python 3.10: jax 0.4.14-0.4.25 support 3.9-3.11/3.12.
    host = host_from_args("470.86", [], [], K)
    found = pick(frameworks.framework("jax"), host, "3.10", K)
    assert found.chosen is not None
    assert found.chosen.cuda is not None and found.chosen.cuda.major == 11
    assert Version(found.chosen.option.version) < Version("0.4.26")
    assert found.chosen.option.variant == "cuda11_pip"
    assert "-f https://storage.googleapis.com/jax-releases/jax_cuda_releases.html" in found.chosen.option.command
    assert "jax[cuda11_pip]" in format_text(found)
