"""The config system (pyfacex/train/config.py) and the recipes in configs/.

Every recipe must load into a typed Config naming a known trainer and a buildable model name (no
full-size model is built); ``base:`` inheritance, Python recipes, ``--set`` overrides and the errors
of bad keys, types and overrides are checked on small temporary files.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pyfacex.train import Config, ConfigError, config_from_dict, config_to_dict, load_config
from pyfacex.train.config import OptimConfig, apply_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
TRAINER_NAMES = ("classification", "sets", "gan", "qaface", "landmarks", "fanface")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ the recipes in configs/

def test_recipes_exist():
    names = {p.name for p in RECIPES}
    for expected in ("lgaf_r100_ms1mv2.yaml", "lfenet_irse50_vggface2.yaml", "lfenet_r34_vggface2.yaml",
                     "fanface_r34_vggface2.yaml",
                     "faceagg_voxceleb2.yaml", "qaface_r100_webface4m.yaml", "vpl_r100_webface4m.yaml",
                     "synthetic_arcface.yaml", "synthetic_lgaf.yaml", "synthetic_lfenet.yaml",
                     "synthetic_qaface.yaml", "synthetic_landmarks.yaml", "synthetic_fanface.yaml",
                     "synthetic_faceagg.yaml"):
        assert expected in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    from pyfacex.models import list_models
    from pyfacex.models._backbone import BACKBONES
    from pyfacex.train.data import AUGMENTS

    config = load_config(path)
    assert isinstance(config, Config)
    # Once every trainer has landed this is `config.trainer in pyfacex.train.TRAINERS`.
    assert config.trainer in TRAINER_NAMES
    assert config.model.name in set(list_models()) | set(BACKBONES) | {"fan"}
    assert set(config.data.augment) <= set(AUGMENTS), f"{path.name}: unknown augment names"
    assert config.output == f"runs/{path.stem}", "each recipe writes to runs/<its name>"
    # Every recipe states its trainer, whatever base it starts from.
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize("path", [p for p in RECIPES if p.name.startswith("synthetic_")], ids=lambda p: p.name)
def test_synthetic_recipes_are_cpu_sized(path):
    config = load_config(path)
    assert config.device == "cpu"
    assert config.epochs <= 10
    for spec in config.eval.protocols:
        assert spec.split("=", 1)[-1].startswith("data/synth/protocols/")


def test_synthetic_protocol_files_match_the_writers():
    # The file names the synthetic protocol writers produce (pyfacex/data/synthetic/protocols/).
    from pyfacex.data.synthetic.protocols import cfp, lfw

    config = load_config(CONFIGS / "synthetic_arcface.yaml")
    specs = dict(spec.split("=", 1) for spec in config.eval.protocols)
    assert specs == {"lfw": "data/synth/protocols/lfw/lfw.bin", "cfp-fp": "data/synth/protocols/cfp-fp/cfp_fp.bin"}
    assert '"lfw.bin"' in Path(lfw.__file__).read_text()
    assert 'f"cfp_{name.lower()}.bin"' in Path(cfp.__file__).read_text()


def test_synthetic_lgaf_inherits_from_synthetic_arcface():
    parent = load_config(CONFIGS / "synthetic_arcface.yaml")
    child = load_config(CONFIGS / "synthetic_lgaf.yaml")
    assert child.model.name == "lgaf_r50"
    # model.kwargs are replaced, not merged: LGAF takes its backbone's kwargs under backbone_kwargs.
    assert child.model.kwargs == {"backbone_kwargs": parent.model.kwargs}
    assert (child.optim, child.schedule, child.data, child.epochs) == \
        (parent.optim, parent.schedule, parent.data, parent.epochs)
    assert child.output == "runs/synthetic_lgaf"


def test_paper_recipe_values():
    lgaf = load_config(CONFIGS / "lgaf_r100_ms1mv2.yaml")
    assert (lgaf.head.kind, lgaf.head.params) == ("arcface", {"margin": 0.5, "s": 64.0})
    assert (lgaf.schedule.kind, lgaf.schedule.milestones) == ("step", [12.0, 20.0, 24.0])
    assert lgaf.data.train == "/data/faces_emore" and lgaf.amp == "auto"
    qa = load_config(CONFIGS / "qaface_r100_webface4m.yaml")
    assert (qa.qaface.start_epoch, qa.qaface.delta_t, qa.qaface.tau, qa.qaface.momentum) == (4.0, 1000, 2.0, 0.99)
    assert qa.epochs == 24 and qa.optim.weight_decay == 1e-4
    vpl = load_config(CONFIGS / "vpl_r100_webface4m.yaml")
    assert (vpl.qaface.mode, vpl.qaface.momentum, vpl.qaface.delta_t, vpl.qaface.lam) == ("vpl", None, 200, 0.15)
    assert round(vpl.qaface.start_epoch * (4235242 // 1024)) == 8000  # VPL's start_iters
    assert vpl.optim == qa.optim and vpl.schedule == qa.schedule  # trained as QAFace, to compare
    agg = load_config(CONFIGS / "faceagg_voxceleb2.yaml")
    assert (agg.optim.name, agg.optim.lr, agg.gan.d_lr) == ("adam", 5e-5, 5e-5)
    assert (agg.schedule.milestones, agg.schedule.gamma, agg.epochs) == ([3.0], 0.25, 6)
    assert (agg.data.sets_per_batch, agg.data.set_size) == (6, 10)
    lfe = load_config(CONFIGS / "lfenet_irse50_vggface2.yaml")
    assert lfe.data.set_size == 3 and (lfe.data.sets_per_batch * lfe.data.set_size) % lfe.data.set_size == 0
    # Sec. IV-B: backbone from 1e-4, the LIT from 0.01, ÷10 every epoch; "simply ... the softmax function"
    assert (lfe.optim.lr, lfe.optim.lr * lfe.optim.lr_scales["lit"]) == (1e-4, pytest.approx(0.01))
    assert (lfe.schedule.kind, lfe.schedule.milestones, lfe.head.kind) == ("step", [1.0, 2.0], "softmax")
    r34 = load_config(CONFIGS / "lfenet_r34_vggface2.yaml")  # ResNet-34: 0.001 / LIT 0.05, ÷10 every 3 epochs
    assert (r34.model.name, r34.optim.lr, r34.optim.lr * r34.optim.lr_scales["lit"]) == ("lfenet_r34", 1e-3,
                                                                                         pytest.approx(0.05))
    assert (r34.schedule.milestones, r34.schedule.gamma, r34.trainer, r34.data.set_size) == ([3.0, 6.0], 0.1, "sets", 3)


# ------------------------------------------------------------------ base: inheritance

def test_base_child_overrides_and_parent_values_stay(tmp_path):
    _write(tmp_path / "parent.yaml", "epochs: 7\noptim: {lr: 0.3, momentum: 0.8}\ndata: {augment: [flip]}\n")
    _write(tmp_path / "child.yaml", "base: parent.yaml\noptim: {lr: 0.05}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.optim.lr == 0.05                         # overridden
    assert config.optim.momentum == 0.8                    # the parent's other value in that section
    assert config.epochs == 7 and config.data.augment == ["flip"]
    assert config.optim.weight_decay == OptimConfig().weight_decay   # the dataclass default beneath both


def test_base_chain_and_relative_path(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "root.yaml", "epochs: 3\nseed: 5\n")
    _write(tmp_path / "sub" / "mid.yaml", "base: ../root.yaml\nseed: 6\n")
    _write(tmp_path / "sub" / "leaf.yaml", "base: mid.yaml\nmax_steps: 9\n")
    config = load_config(tmp_path / "sub" / "leaf.yaml")
    assert (config.epochs, config.seed, config.max_steps) == (3, 6, 9)


def test_base_cycle_names_both_files(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\nepochs: 1\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\nepochs: 2\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        load_config(tmp_path / "a.yaml")
    assert "a.yaml" in str(info.value) and "b.yaml" in str(info.value)


def test_base_missing_file(tmp_path):
    _write(tmp_path / "a.yaml", "base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_config(tmp_path / "a.yaml")


# ------------------------------------------------------------------ Python recipes

def test_python_recipe_with_a_config(tmp_path):
    _write(tmp_path / "r.py", "from pyfacex.train import Config\n"
                              "config = Config(epochs=3)\nconfig.optim.lr = 0.02\n")
    config = load_config(tmp_path / "r.py", ["seed=4"])
    assert (config.epochs, config.optim.lr, config.seed) == (3, 0.02, 4)


def test_python_recipe_with_a_dict(tmp_path):
    _write(tmp_path / "r.py", "config = {'trainer': 'sets', 'data': {'set_size': 5}}\n")
    config = load_config(tmp_path / "r.py")
    assert (config.trainer, config.data.set_size, config.data.sets_per_batch) == ("sets", 5, 8)


def test_python_recipe_without_config(tmp_path):
    _write(tmp_path / "r.py", "settings = {'epochs': 3}\n")
    with pytest.raises(ConfigError, match="must define `config`"):
        load_config(tmp_path / "r.py")


def test_python_recipe_checked_like_yaml(tmp_path):
    _write(tmp_path / "r.py", "config = {'optim': {'learning_rate': 0.1}}\n")
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(tmp_path / "r.py")


def test_unknown_recipe_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.py"):
        load_config(_write(tmp_path / "r.json", "{}"))


# ------------------------------------------------------------------ --set overrides

def test_overrides_are_typed():
    config = load_config(None, ["optim.lr=0.05", "data.augment=[flip]", "qaface.momentum=null"])
    assert config.optim.lr == 0.05 and type(config.optim.lr) is float
    assert config.data.augment == ["flip"]
    assert config.qaface.momentum is None


def test_overrides_convert_losslessly():
    config = load_config(None, ["optim.lr=1", "data.batch_size=32", "model.kwargs={layers: [1, 1, 1, 1]}",
                                "eval.protocols=[lfw=a.bin, 'cfp=b.bin']", "progress=false"])
    assert config.optim.lr == 1.0 and type(config.optim.lr) is float   # int -> float
    assert config.data.batch_size == 32 and type(config.data.batch_size) is int
    assert config.model.kwargs == {"layers": [1, 1, 1, 1]}
    assert config.eval.protocols == ["lfw=a.bin", "cfp=b.bin"]
    assert config.progress is False


def test_overrides_apply_over_the_recipe(tmp_path):
    _write(tmp_path / "r.yaml", "optim: {lr: 0.3, momentum: 0.8}\n")
    config = load_config(tmp_path / "r.yaml", ["optim.lr=0.01", "optim.lr=0.02"])  # the last one wins
    assert (config.optim.lr, config.optim.momentum) == (0.02, 0.8)


def test_apply_overrides_does_not_mutate_its_input():
    values = {"optim": {"lr": 0.3}}
    out = apply_overrides(values, ["optim.lr=0.1", "optim.momentum=0.5"])
    assert values == {"optim": {"lr": 0.3}}
    assert out == {"optim": {"lr": 0.1, "momentum": 0.5}}


@pytest.mark.parametrize("override", ["optim.lr", "=3", ""])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, [override])


def test_unparsable_override_value():
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(None, ["data.augment=[flip"])


# ------------------------------------------------------------------ errors

def _valid_keys(message: str) -> list[str]:
    return [k.strip() for k in message.split("valid keys", 1)[1].split(":", 1)[1].split(",")]


def test_unknown_top_level_key():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"epoch": 3})
    message = str(info.value)
    assert "epoch" in message
    assert _valid_keys(message) == [f.name for f in dataclasses.fields(Config)]


def test_unknown_nested_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path / "r.yaml", "optim: {lr: 0.1, mommentum: 0.9}\n"))
    message = str(info.value)
    assert "optim.mommentum" in message
    assert _valid_keys(message) == [f.name for f in dataclasses.fields(OptimConfig)]


def test_unknown_override_key():
    with pytest.raises(ConfigError, match=r"qaface\.gamma.*valid keys of qaface: .*momentum"):
        load_config(None, ["qaface.gamma=0.9"])


@pytest.mark.parametrize("override, key, expected", [
    ("epochs=1.5", "epochs", "int"),
    ("epochs=true", "epochs", "int"),          # a bool is no int here
    ("optim.lr=fast", "optim.lr", "float"),
    ("optim=3", "optim", "mapping"),
    ("data.augment=flip", "data.augment", "list"),
    ("data.augment=[1]", "data.augment[0]", "str"),
    ("qaface.momentum=high", "qaface.momentum", "float | None"),
    ("model.kwargs=[1]", "model.kwargs", "mapping"),
])
def test_wrong_type_names_key_and_expected_type(override, key, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert re.match(rf"{re.escape(key)}: expected (a )?{re.escape(expected)}\b", message), message


@pytest.mark.parametrize("text, kind", [("- epochs: 3\n", "list"), ("3\n", "int"), ("just text\n", "str")])
def test_non_mapping_yaml_top_level(tmp_path, text, kind):
    with pytest.raises(ConfigError, match=f"mapping at the top level, got {kind}"):
        load_config(_write(tmp_path / "r.yaml", text))


def test_empty_yaml_gives_the_defaults(tmp_path):
    assert load_config(_write(tmp_path / "r.yaml", "")) == Config()


def test_missing_recipe_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ dicts

def test_round_trip_of_a_non_default_config():
    config = load_config(None, ["trainer=qaface", "optim.lr=0.05", "qaface.momentum=null", "head.margin=0.4",
                                "model.kwargs={backbone_kwargs: {layers: [1, 1, 1, 1]}}",
                                "schedule.milestones=[3, 5]", "eval.protocols=[lfw=x.bin]"])
    values = config_to_dict(config)
    assert values["qaface"]["momentum"] is None and values["schedule"]["milestones"] == [3.0, 5.0]
    assert config_from_dict(values) == config
    assert config_from_dict(values) != Config()


def test_to_dict_is_a_copy():
    config = Config()
    values = config_to_dict(config)
    values["data"]["augment"].append("motion_blur")
    values["model"]["kwargs"]["layers"] = [1]
    assert config.data.augment == ["flip"] and config.model.kwargs == {}


def test_from_dict_accepts_dataclass_sections():
    config = config_from_dict({"optim": OptimConfig(lr=0.2)})
    assert config.optim.lr == 0.2


def test_defaults_are_not_shared_between_configs():
    a, b = Config(), Config()
    a.data.augment.append("low_quality")
    assert b.data.augment == ["flip"]
    assert re.fullmatch(r"runs/\w+", Config().output)


# ------------------------------------------------------------------ ranges

@pytest.mark.parametrize("override, message", [
    ("data.batch_size=-4", "data.batch_size: expected an int > 0, got -4"),
    ("data.batch_size=0", "data.batch_size: expected an int > 0, got 0"),
    ("data.num_workers=-1", "data.num_workers: expected an int >= 0, got -1"),
    ("data.set_size=0", "data.set_size: expected an int > 0, got 0"),
    ("grad_accum=0", "grad_accum: expected an int > 0, got 0"),
    ("epochs=-1", "epochs: expected an int >= 0, got -1"),
    ("optim.lr=-0.1", "optim.lr: expected a number >= 0, got -0.1"),
    ("optim.momentum=1.5", "optim.momentum: expected a number in [0, 1], got 1.5"),
    ("optim.betas=[0.9, 2]", "optim.betas[1]: expected a number in [0, 1], got 2.0"),
    ("optim.lr_scales={lit: -1}", "optim.lr_scales.lit: expected a number >= 0, got -1.0"),
    ("head.label_smoothing=1.5", "head.label_smoothing: expected a number in [0, 1), got 1.5 (head kind 'arcface')"),
    ("head.sample_rate=0.5", "head.sample_rate: not a parameter of this kind; its parameters: s, margin, grad, "
                             "label_smoothing (head kind 'arcface')"),
    ("head={kind: partial_fc, interclass_filtering_threshold: 1}",
     "head.interclass_filtering_threshold: expected a number in [0, 1), got 1.0 (head kind 'partial_fc')"),
    ("qaface.lam=-0.1", "qaface.lam: expected a number in [0, 1], got -0.1"),
    ("qaface.momentum=2", "qaface.momentum: expected a number in [0, 1], got 2.0"),
    ("schedule.milestones=[1, -2]", "schedule.milestones[1]: expected a number >= 0, got -2.0"),
    ("gan.d_steps=-1", "gan.d_steps: expected an int >= 0, got -1"),
    ("landmarks.sigma=0", "landmarks.sigma: expected a number > 0, got 0.0"),
    ("eval.batch_size=0", "eval.batch_size: expected an int > 0, got 0"),
    ("head.kind=sigmoid", "head.kind: expected one of adaface, arcface, combined, cosface, partial_fc, "
                          "softmax, sphereface, got 'sigmoid'"),
    ("optim.name=lamb", "optim.name: expected one of sgd, adamw, adam, got 'lamb'"),
    ("schedule.kind=linear", "schedule.kind: expected one of constant, step, poly, cosine, got 'linear'"),
    ("amp=fp8", "amp: expected one of none, auto, fp16, bf16, got 'fp8'"),
    ("qaface.mode=x", "qaface.mode: expected one of qaface, vpl, got 'x'"),
    ("head.grad=none", "head.grad: expected one of exact, straight_through, got 'none' (head kind 'arcface')"),
])
def test_values_out_of_range_name_their_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_ranges_hold_for_list_items_python_configs_and_the_bounds():
    with pytest.raises(ConfigError, match=r"data.augment\[1\]: expected one of flip, .*, got 'blur'"):
        load_config(None, ["data.augment=[flip, blur]"])
    with pytest.raises(ConfigError, match=r"trainer: expected one of classification, sets, .*, got 'nope'"):
        config_from_dict({"trainer": "nope"})
    with pytest.raises(ConfigError, match="data.batch_size: expected an int > 0, got -4"):  # a section object
        config_from_dict({"data": dataclasses.replace(Config().data, batch_size=-4)})
    bounds = load_config(None, ["data.num_workers=0", "optim.momentum=1", "head.kind=partial_fc", "head.sample_rate=1",
                                "qaface.momentum=null",
                                "optim.lr_scales={lit: 0, head: 100}", "data.augment=[]"])
    assert bounds.optim.lr_scales == {"lit": 0.0, "head": 100.0} and bounds.data.augment == []


def test_lr_scales_values_are_typed():
    with pytest.raises(ConfigError, match=r"optim.lr_scales.lit: expected float, got str 'fast'"):
        load_config(None, ["optim.lr_scales={lit: fast}"])
    assert load_config(None, ["optim.lr_scales={lit: 100}"]).optim.lr_scales == {"lit": 100.0}
