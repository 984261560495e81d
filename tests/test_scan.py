"""`doctor --script`: what forces the CPU in user code, on fragments of real public code (each with its source).

The whole-file measurement (1,269 files from 18 repositories, precision and recall) is benchmarks/script_scan.py
with benchmarks/script_corpus.yaml; the files stay in their repositories. These tests quote the few lines that
decide each case, so they run anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from envcheck.diagnosis.scan import scan_paths, scan_source, where


def notebook(*cells: str) -> str:
    return json.dumps(
        {"cells": [{"cell_type": "code", "source": c.splitlines(keepends=True)} for c in cells], "nbformat": 4}
    )


def lines_of(text: str, notebook_file: bool = False) -> list:
    return [
        (f.get("cell"), f["line"]) for f in scan_source(text, "x.ipynb" if notebook_file else "x.py", notebook_file)
    ]


# tensorflow/docs@7c36502 site/en/guide/random_numbers.ipynb, cell 33: a strategy over two (virtual) CPUs.
def test_a_strategy_over_cpus_forces_the_cpu():
    text = 'g = tf.random.Generator.from_seed(1)\nstrat = tf.distribute.MirroredStrategy(devices=["cpu:0", "cpu:1"])\n'
    assert lines_of(text) == [(None, 2)]


# tensorflow/docs@7c36502 site/en/guide/tf_numpy.ipynb, cells 50 and 52: the CPU only when there is no GPU.
def test_a_device_chosen_by_a_fallback_is_not_forced():
    cell50 = (
        "try:\n"
        '  device = tf.config.list_logical_devices(device_type="GPU")[0]\n'
        "except IndexError:\n"
        '  device = "/device:CPU:0"\n'
    )
    cell52 = "with tf.device(device):\n  prediction = model.predict(create_batch(5)[0])\n"
    cell54 = 'with tf.device("/device:CPU:0"):\n  prediction_cpu = tnp.copy(prediction)\n'
    assert lines_of(notebook(cell50, cell52, cell54), notebook_file=True) == [(3, 1)]


# Thea-wyj/model_test@d1312f2 liuzhouming/alg/tensorflow_utils.py: d2l's helpers hand a device back.
def test_helpers_that_return_a_cpu_device_place_nothing():
    text = (
        "import tensorflow as tf\n\n\n"
        "def try_gpu(i=0):  # @save\n"
        "    if len(tf.config.experimental.list_physical_devices('GPU')) >= i + 1:\n"
        "        return tf.device(f'/GPU:{i}')\n"
        "    return tf.device('/CPU:0')\n\n\n"
        "def try_all_gpus():  # @save\n"
        "    num_gpus = len(tf.config.experimental.list_physical_devices('GPU'))\n"
        "    devices = [tf.device(f'/GPU:{i}') for i in range(num_gpus)]\n"
        "    return devices if devices else [tf.device('/CPU:0')]\n"
    )
    assert lines_of(text) == []


# Thea-wyj/model_test@d1312f2 liuzhouming/alg/acc_method_evaluate_pytorch.py lines 34-38: the CPU only when the
# device asked for does not work (a fallback, not a forced CPU; and PyTorch's, never TensorFlow's).
def test_other_frameworks_placement_is_not_tensorflows():
    text = (
        "import torch\n"
        "device = args.device\n"
        "try:\n"
        "    device = torch.device(device)\n"
        "except:\n"
        "    device = torch.device('cpu')\n"
    )
    assert lines_of(text) == []


# QITI/pySLM2@bfa0266 pySLM2/runtime_benchmark/check_gpu.py (a GPU run) and its dmd_ifta_cpu.py (a CPU run).
def test_visible_devices_that_hide_and_that_select():
    gpu = "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '0'\n\n\nimport tensorflow as tf\n"
    cpu = "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '-1'\n"
    assert lines_of(gpu) == [] and lines_of(cpu) == [(None, 2)]


# tensorflow/docs@7c36502 site/en/tutorials/distribute/multi_worker_with_ctl.ipynb, cells 8 and 50: a line that
# starts with % continues an expression (not a magic), and the notebook's first cell hides the GPUs.
def test_a_percent_line_inside_an_expression_is_not_a_magic():
    cell8 = 'os.environ["CUDA_VISIBLE_DEVICES"] = "-1"\n'
    cell50 = (
        "for epoch in range(3):\n"
        "  print('Epoch: %d, accuracy: %f, train_loss: %f.'\n"
        "                %(epoch.numpy(), train_accuracy.result(), train_loss))\n"
    )
    assert lines_of(notebook(cell8, cell50), notebook_file=True) == [(1, 1)]


# XinDongol/shortcuts tf_config.md: the IPython magic, and one that selects a GPU rather than hiding them.
def test_env_magics_in_notebooks():
    found = scan_source(notebook("%env CUDA_VISIBLE_DEVICES=\n", "%env CUDA_VISIBLE_DEVICES=5\n"), "n.ipynb", True)
    assert [(f["cell"], f["line"], f["text"]) for f in found] == [(1, 1, "%env CUDA_VISIBLE_DEVICES=")]
    assert where(found[0]) == "n.ipynb[cell 1]:1"


# tensfa/tensfa@415dcfa SFData/ISSTA2018/TensorShapeFault/s35295191_original.py: a snippet without its import.
def test_tf_means_tensorflow_in_snippets_without_the_import():
    text = "with tf.device('/cpu:0'), tf.name_scope(\"embedding\"):\n    W = tf.Variable(1)\n"
    assert lines_of(text) == [(None, 1)]
    assert lines_of("import mytools as tf\nwith tf.device('/cpu:0'):\n    pass\n") == []


def test_folders_read_notebooks_and_name_what_they_cannot_read(tmp_path: Path):
    (tmp_path / "a.ipynb").write_text(notebook('os.environ["CUDA_VISIBLE_DEVICES"] = "-1"\n'))
    (tmp_path / "py2.py").write_text('print "hello"\n')  # Python 2, as old TF1 repositories hold
    (tmp_path / "bad.ipynb").write_text("{not json")
    result = scan_paths([tmp_path])
    assert [(Path(f["file"]).name, f["cell"], f["line"]) for f in result.findings] == [("a.ipynb", 1, 1)]
    reasons = {Path(u["file"]).name: u["reason"] for u in result.unreadable}
    assert set(reasons) == {"py2.py", "bad.ipynb"} and reasons["py2.py"].startswith("not Python: ")
    done = run_cli("doctor", "--script", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert f"--script could not read {tmp_path / 'py2.py'}: not Python" in done.stdout
    assert f"evidence: {tmp_path / 'a.ipynb'}[cell 1]:1: os.environ" in done.stdout


# apax-hub/apax@c9dfdbc apax/train/__init__.py: a JAX project keeps TensorFlow (its data loader) off the GPU.
def test_tf2_hides_gpus_with_an_empty_device_list():
    assert lines_of('import tensorflow as tf\n\ntf.config.set_visible_devices([], "GPU")\n') == [(None, 3)]
    # tensorflow/docs@7c36502 site/en/guide/gpu.ipynb, cell 16: one GPU made visible, not none.
    assert (
        lines_of("gpus = tf.config.list_physical_devices('GPU')\ntf.config.set_visible_devices(gpus[0], 'GPU')\n") == []
    )


def test_pathological_sources_are_named_not_fatal(tmp_path: Path):
    # The audit's MemoryError: an expression nested far beyond what the parser takes, and a huge flat one.
    (tmp_path / "deep.py").write_text("x = " + "(" * 100_000 + "1" + ")" * 100_000 + "\n")
    (tmp_path / "long.py").write_text("x = " + "+".join(["1"] * 200_000) + "\n")
    result = scan_paths([tmp_path])
    assert result.findings == []
    assert {Path(u["file"]).name for u in result.unreadable} <= {"deep.py", "long.py"}
    assert "deep.py" in {Path(u["file"]).name for u in result.unreadable}


# -- PyTorch and JAX (issue 11): each finding names the framework it keeps off the GPU ------------------------------


def found_by_framework(text: str) -> list:
    return [(f["line"], f["framework"]) for f in scan_source(text, "x.py")]


# jax-ml/jax issue 23208 (the user's own function) and issue 7468 (the workaround quoted there).
def test_jax_platform_settings_force_the_cpu():
    text = (
        "def jax_force_use_cpu_v1():\n"
        '    os.environ["JAX_PLATFORMS"] = "cpu"\n'
        "    jax.config.update(\"jax_platform_name\", 'cpu')\n"
    )
    assert found_by_framework(text) == [(2, "jax"), (3, "jax")]
    workaround = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = ""\n'
    assert found_by_framework(workaround) == [(3, "any")]


# ayaka14732/TransCan test/standalone/set_platform_cpu.py line 1; pyro-ppl/numpyro test/conftest.py line 3
# (`config` imported from jax); DavidDevoogdt/IMLCV@dc0f2a1 tests/conftest.py lines 29-30.
def test_jax_config_updates_through_any_name():
    text = (
        "import jax; jax.config.update('jax_platforms', 'cpu'); "
        "jax.config.update('jax_default_matmul_precision', jax.lax.Precision.HIGHEST)\n"
    )
    assert found_by_framework(text) == [(1, "jax")]
    numpyro_tests = (
        "import os\n\nfrom jax.config import config; config.update('jax_platform_name', 'cpu')  # noqa: E702\n"
    )
    assert found_by_framework(numpyro_tests) == [(3, "jax")]
    imlcv = 'jax.config.update("jax_enable_x64", True)\njax.config.update("jax_platform_name", "cpu")\n'
    assert found_by_framework(imlcv) == [(2, "jax")]


# jax-ml/jax issue 27232: the CPU as JAX's default device; pentrican10/k2-19-project jnkep_test.py: NumPyro's
# helper; pyro-ppl/numpyro numpyro/util.py: the helper itself, whose platform is the caller's (not reported).
def test_default_device_and_numpyro_set_platform():
    cli = "import time, jax; jax.config.update('jax_default_device', jax.devices('cpu')[0]); time.sleep(10)\n"
    assert found_by_framework(cli) == [(1, "jax")]
    k2 = (
        "from jax.config import config\n"
        "import numpyro, jax\n"
        "config.update('jax_enable_x64', True)\n"
        "numpyro.set_platform('cpu')\n"
    )
    assert found_by_framework(k2) == [(4, "jax")]
    helper = (
        "def set_platform(platform=None):\n"
        "    if platform is None:\n"
        '        platform = os.getenv("JAX_PLATFORM_NAME", "cpu")\n'
        '    jax.config.update("jax_platform_name", platform)\n'
    )
    assert found_by_framework(helper) == []


# tue-bmd/zea pull request 368, zea/internal/device.py: the CPU only when JAX finds no GPU.
def test_jax_cpu_fallback_is_not_forced():
    text = (
        "import jax\n"
        "try:\n"
        '    _jax_has_gpu = bool(jax.devices("gpu"))\n'
        "except Exception:\n"
        "    _jax_has_gpu = False\n"
        "if not _jax_has_gpu:\n"
        '    jax.config.update("jax_platforms", "cpu")\n'
    )
    assert found_by_framework(text) == []


# federicovisintini/transformers-intro src/device.py: the device picked by availability, then hard-wired to the CPU;
# nHu4ng/DeepLearning Nothing/Start/DeviceChoosing.py and d2l-ai/d2l-en@23d7a5a d2l/torch.py (cpu() helper):
# the CPU only as a fallback or handed back by a helper.
def test_a_hard_wired_torch_cpu_device():
    text = (
        "import torch\n"
        "\n"
        "DEVICE = (\n"
        '    "cuda"\n'
        "    if torch.cuda.is_available()\n"
        '    else "mps"\n'
        "    if torch.backends.mps.is_available()\n"
        '    else "cpu"\n'
        ")\n"
        "\n"
        'DEVICE = torch.device("cpu")\n'
    )
    assert found_by_framework(text) == [(11, "torch")]
    chosen = 'import torch\n\ndevice = torch.device("cuda" if torch.cuda.is_available() else "cpu")\nmodel.to(device)\n'
    assert found_by_framework(chosen) == []
    helper = 'def cpu():\n    """Get the CPU device."""\n    return torch.device(\'cpu\')\n'
    assert found_by_framework(helper) == []
