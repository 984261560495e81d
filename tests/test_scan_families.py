"""`doctor --script` on the families of issue 27: what forces PyTorch or JAX onto the CPU, and the look-alikes that
do not. Each expectation is written by hand from the snippet; the real fragments quote files of the tuned part of
benchmarks/corpora/script_corpus_torch_jax.yaml (repository, commit and path given), so the tests run offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from envcheck.diagnosis.scan import MAX_SOURCE, scan_paths, scan_source


def found(text: str) -> list[tuple[int, str]]:
    return [(f["line"], f["framework"]) for f in scan_source(text, "x.py")]


# -- families that force the CPU -------------------------------------------------------------------------------


def test_a_device_string_bound_to_a_name_and_used_as_a_device():
    text = 'import torch\nDEVICE = "cpu"\nmodel = Net().to(DEVICE)\nx = torch.ones(3, device=DEVICE)\n'
    assert found(text) == [(2, "torch")]
    # A "cpu" string never handed over as a device places nothing.
    assert found('import torch\nbackend = "cpu"\nprint(backend)\n') == []


def test_the_model_or_pipeline_moved_to_the_cpu_and_then_run():
    model = "import torch\nmodel = Net().to('cpu')\nout = model(batch)\n"
    pipeline = 'pipe = StableDiffusionPipeline.from_pretrained(name)\npipe = pipe.to("cpu")\nimage = pipe(prompt)\n'
    in_place = "import torch\nmodel.cpu()\ntokens = model.generate(**inputs)\n"
    assert found(model) == [(2, "torch")]
    assert found(pipeline) == [(2, "torch")]
    assert found(in_place) == [(2, "torch")]


def test_lightning_trainer_on_the_cpu_marks_the_argument_line():
    text = (
        "import lightning.pytorch as pl\n"
        "trainer = pl.Trainer(\n"
        "    max_epochs=1,\n"
        '    accelerator="cpu",\n'
        "    devices=1,\n"
        ")\n"
    )
    assert found(text) == [(4, "torch")]
    kwargs = (
        'trainer_kwargs = {\n    "max_epochs": 5,\n    "accelerator": "cpu",\n}\ntrainer = Trainer(**trainer_kwargs)\n'
    )
    assert found(kwargs) == [(3, "torch")]


def test_a_helpers_cpu_accelerator_default_counts_only_where_a_call_relies_on_it():
    helper = 'def train(tmp_path, accelerator="cpu", devices=1):\n    Trainer(accelerator=accelerator).fit(model)\n'
    assert found(helper + "\n\ntrain(tmp_path)\n") == [(1, "torch")]
    assert found(helper + '\n\ntrain(tmp_path, accelerator="gpu")\n') == []
    assert found(helper) == []


def test_library_keywords_that_place_the_model():
    text = (
        "from stable_baselines3 import PPO\n"
        'model = PPO("MlpPolicy", env, device="cpu")\n'
        'model = PPO.load(path, device="cpu")\n'
        "args = TrainingArguments(output_dir='out', use_cpu=True)\n"
        'llm = AutoModelForCausalLM.from_pretrained(name, device_map="cpu")\n'
    )
    assert found(text) == [(2, "torch"), (3, "torch"), (4, "torch"), (5, "torch")]


def test_jax_platform_settings_and_library_options():
    text = (
        "import os\n"
        "import jax\n"
        'jax.config.update("jax_platforms", "cpu")\n'
        "jax.config.update('jax_platform_name', 'cpu')\n"
        'os.environ["JAX_PLATFORMS"] = "cpu"\n'
        'os.environ.setdefault("JAX_PLATFORM_NAME", "cpu")\n'
    )
    assert found(text) == [(3, "jax"), (4, "jax"), (5, "jax"), (6, "jax")]
    levanter = "import jax\nimport levanter\nconfig = ConvertLmConfig(checkpoint_path=p, use_cpu=True)\n"
    assert found(levanter) == [(3, "jax")]
    # XLA flags that add host devices leave JAX on the GPU; a platform list that names one keeps it there.
    more_hosts = 'os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"\n'
    assert found(more_hosts) == [] and found('jax.config.update("jax_platforms", "cuda,cpu")\n') == []


def test_a_jax_cpu_device_bound_lazily_in_a_global():
    text = (
        "import jax\n"
        "device_cpu = None\n"
        "def do_on_cpu(f):\n"
        "    global device_cpu\n"
        "    if device_cpu is None:\n"
        "        device_cpu = jax.devices('cpu')[0]\n"
        "    def inner(*args, **kwargs):\n"
        "        with jax.default_device(device_cpu):\n"
        "            return f(*args, **kwargs)\n"
        "    return inner\n"
    )
    assert found(text) == [(8, "jax")]


def test_a_syntax_error_further_down_still_leaves_the_top_read():
    text = "import jax; jax.config.update('jax_platforms', 'cpu')\n\nx = 1\ntry:\n\nprint(x)\n"
    findings = scan_source(text, "x.py")
    assert [(f["line"], f["framework"]) for f in findings] == [(1, "jax")]


def test_a_notebook_counts_its_code_not_its_outputs(tmp_path: Path):
    image = "x" * (MAX_SOURCE + 10)
    cell = {
        "cell_type": "code",
        "source": ["import os\n", 'os.environ["CUDA_VISIBLE_DEVICES"] = ""\n'],
        "outputs": [{"output_type": "display_data", "data": {"image/png": image}}],
    }
    (tmp_path / "big.ipynb").write_text(json.dumps({"cells": [cell], "nbformat": 4}))
    code = {"cell_type": "code", "source": ["# " + "x" * MAX_SOURCE + "\n"]}
    (tmp_path / "code.ipynb").write_text(json.dumps({"cells": [code], "nbformat": 4}))
    result = scan_paths([tmp_path])
    assert [(Path(f["file"]).name, f.get("cell"), f["line"]) for f in result.findings] == [("big.ipynb", 1, 2)]
    assert [Path(u["file"]).name for u in result.unreadable] == ["code.ipynb"]


# -- look-alikes that do not force the CPU -----------------------------------------------------------------------


def test_a_cpu_scope_that_only_gathers_what_gpu_towers_computed():
    towers = (
        "import tensorflow as tf\n"
        "with tf.Graph().as_default(), tf.device('/cpu:0'):\n"
        "    tower_grads = []\n"
        "    for i in range(num_gpus):\n"
        "        with tf.device('/gpu:%d' % i):\n"
        "            tower_grads.append(compute(i))\n"
        "    grads = average_gradients(tower_grads)\n"
    )
    assert found(towers) == []
    alone = "import tensorflow as tf\nwith tf.device('/cpu:0'):\n    y = model(x)\n"
    assert found(alone) == [(2, "tensorflow")]


def test_a_cpu_branch_made_dead_by_a_constant():
    dead = 'import torch\nUSE_CPU = False\nif USE_CPU:\n    device = torch.device("cpu")\nelse:\n    device = "cuda"\n'
    assert found(dead) == []
    assert found(dead.replace("USE_CPU = False", "USE_CPU = True")) == [(4, "torch")]
    negated = 'import torch\nUSE_GPU = True\nif not USE_GPU:\n    torch.set_default_device("cpu")\n'
    assert found(negated) == []


def test_results_moved_back_and_checkpoints_loaded_on_the_cpu():
    text = (
        "import torch\n"
        "state = torch.load(path, map_location='cpu')\n"
        "model = model.to(device)\n"
        "preds = model(x).cpu().numpy()\n"
        "logits = out.logits.to('cpu')\n"
        "summary(logits)\n"
        "with safe_open(path, framework='pt', device='cpu') as f:\n"
        "    w = f.get_tensor('w')\n"
    )
    assert found(text) == []
    # The model moved to the CPU only to be saved, or moved back to the GPU before it runs again.
    saved = "import torch\nmodel.eval().cpu()\ntorch.save(model.state_dict(), path)\n"
    back = (
        "import torch\nfor batch in data:\n    model.cpu()\n    save(model)\n    model.to(device)\n    model(batch)\n"
    )
    assert found(saved) == [] and found(back) == []


def test_setdefault_on_a_dict_that_is_not_the_environment():
    assert found('settings = {}\nsettings.setdefault("JAX_PLATFORMS", "cpu")\n') == []


def test_a_cpu_chosen_by_a_command_line_option_or_replaced_later():
    option = (
        "import torch\n"
        "def train(args):\n"
        "    if args.accel:\n"
        "        device = torch.accelerator.current_accelerator()\n"
        "    else:\n"
        '        device = torch.device("cpu")\n'
    )
    assert found(option) == []
    default = (
        "import torch\n"
        "def main(cuda):\n"
        '    device = torch.device("cpu")\n'
        "    if cuda and torch.cuda.device_count():\n"
        '        device = torch.device("cuda", 0)\n'
        "    model.to(device)\n"
    )
    assert found(default) == []


def test_mps_workarounds_storage_and_command_line_defaults():
    mps = 'if model.device.type == "mps":\n    model.cpu()\nmodel.generate(**inputs)\n'
    fabric = 'import torch\nfabric = Fabric(accelerator="cpu" if torch.backends.mps.is_available() else "auto")\n'
    buffer = 'import torch\nrb = ReplayBuffer(size, obs_space, act_space, device="cpu")\n'
    cli = 'LightningCLI(Model, trainer_defaults={"accelerator": "cpu", "max_epochs": 1})\n'
    argparse_default = 'parser.add_argument("--device", default="cpu")\n'
    for text in (mps, fabric, buffer, cli, argparse_default):
        assert found(text) == [], text


def test_a_jax_platform_set_after_the_backend_started_changes_nothing():
    text = "import jax\njax.distributed.initialize()\njax.devices()\njax.config.update('jax_platforms', 'cpu')\n"
    assert found(text) == []


# -- fragments of real files (the tuned part of the corpus) --------------------------------------------------------


# stanford-crfm/levanter@9263f81 tests/test_lora.py lines 210-212: a Hugging Face model moved to the CPU, then run.
def test_levanter_runs_the_hf_model_on_the_cpu():
    text = (
        "import torch\n"
        "hf_model = AutoModelForCausalLM.from_pretrained(peft_config.base_model_name_or_path).cpu()\n"
        "hf_model.eval()\n"
        "hf_out = hf_model(torch_input)\n"
        "hf_out = hf_out.logits.detach().numpy()\n"
    )
    assert found(text) == [(2, "torch")]


# stanford-crfm/levanter@9263f81 tests/test_llama3.py lines 136-150 (shortened): the device as a plain string.
def test_levanter_device_string():
    text = (
        "def test_llama3_rotary_embedding():\n"
        "    import torch\n"
        '    device = "cpu"\n'
        "    x_torch = torch.from_numpy(np.asarray(x)).to(device)\n"
    )
    assert found(text) == [(3, "torch")]


# DLR-RM/stable-baselines3@e05d2db tests/test_save_load.py lines 715-722: the arguments built with dict() first.
def test_sb3_device_through_dict():
    text = (
        "def test_save_load_large_model(tmp_path):\n"
        "    env = select_env(TD3)\n"
        '    kwargs = dict(policy_kwargs=dict(net_arch=[8192, 8192, 8192]), device="cpu")\n'
        '    model = TD3("MlpPolicy", env, **kwargs)\n'
    )
    assert found(text) == [(3, "torch")]


# pytorch/examples@77f55b9 distributed/minGPT-ddp/mingpt/model.py line 39: a module's `device="cpu"` default
# (PyTorch's own signature convention) is no choice of the CPU.
def test_a_modules_device_default_is_not_forced():
    text = (
        "import torch\n"
        "class MultiheadAttentionLayer(nn.Module):\n"
        '    def __init__(self, config, device="cpu", dtype=torch.float32):\n'
        "        super().__init__()\n"
        "        self.proj = nn.Linear(4, 4, device=device)\n"
    )
    assert found(text) == []
