"""Tests for mlpjit.config: schema, defaults, one-line errors, --set overrides."""

from __future__ import annotations


import pytest
import yaml

from mlpjit.config import (
    ClipConfig,
    MnistData,
    XorData,
    apply_overrides,
    config_from_dict,
    dump_yaml,
    load_config,
    resolved_dict,
    schema,
)
from mlpjit.errors import ConfigError

Config = schema().Config
DenseLayer = schema().layers["dense"]
SGDConfig, AdamConfig = schema().optimizers["sgd"], schema().optimizers["adam"]
CosineSchedule = schema().schedules["cosine"]

EXAMPLE = """\
name: mnist_mlp
seed: 0
dtype: float32
data:
  name: mnist
model:
  layers:
    - {type: dense, units: 256, activation: relu, init: he_normal}
    - {type: dropout, p: 0.1}
    - {type: activation, activation: tanh}
    - {type: softmax}
loss: cross_entropy
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
  nesterov: false
  weight_decay: 0.0
schedule: {type: cosine}
clip: {norm: 5.0}
train:
  epochs: 10
  batch_size: 64
  shuffle: true
  eval_batch_size: 1000
  early_stopping: {patience: 3, metric: val_loss, min_delta: 0.0}
"""

MINIMAL = """\
data: {name: xor}
model:
  layers:
    - {type: dense, units: 4, activation: tanh}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_cross_entropy
"""


def write(tmp_path, text, name="x.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def example_dict():
    return yaml.safe_load(EXAMPLE)


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert info.value.__cause__ is None
    return msg


# --------------------------------------------------------------------------- loading


def test_example_loads_with_defaults(tmp_path):
    c = load_config(write(tmp_path, EXAMPLE))
    assert isinstance(c, Config)
    assert c.name == "mnist_mlp" and c.seed == 0 and c.dtype == "float32"
    assert isinstance(c.data, MnistData)
    assert c.data.path is None and c.data.validation == 0 and c.data.subset is None
    assert c.data.test_subset is None
    dense, dropout, act, soft = c.model.layers
    assert isinstance(dense, DenseLayer)
    assert dense.units == 256 and dense.activation.name == "relu" and dense.init.name == "he_normal"
    assert dense.bias_init == 0.0
    assert dropout.type == "dropout" and dropout.p == 0.1
    assert act.activation.name == "tanh"
    assert soft.type == "softmax"
    assert c.loss == "cross_entropy"
    assert isinstance(c.optimizer, SGDConfig)
    assert (c.optimizer.lr, c.optimizer.momentum, c.optimizer.nesterov) == (0.05, 0.9, False)
    assert isinstance(c.schedule, CosineSchedule) and c.schedule.min_lr == 0.0
    assert c.clip == ClipConfig(norm=5.0) and c.clip.value is None
    assert c.train.epochs == 10 and c.train.batch_size == 64 and c.train.shuffle is True
    assert c.train.early_stopping.patience == 3
    assert c.train.early_stopping.metric == "val_loss"


def test_minimal_defaults(tmp_path):
    c = load_config(write(tmp_path, MINIMAL))
    assert c.name == "run" and c.seed == 0 and c.dtype == "float32"
    assert isinstance(c.data, XorData) and c.data.function == "xor"
    # scikit-learn's MLP defaults, measured to train (docs/config.md "Defaults"): Adam at 1e-3,
    # up to 200 epochs, stopping once the loss stops improving by 1e-4 for 10 epochs
    assert c.optimizer.type == "adam" and c.optimizer.lr == 0.001
    assert c.schedule.type == "constant"
    assert c.clip is None
    assert c.train.epochs == "auto" and c.train.batch_size == 32 and c.train.shuffle is True
    assert c.train.eval_batch_size == 1000 and c.train.early_stopping is None
    train = resolved_dict(c)["train"]
    assert train["epochs"] == 200
    assert train["early_stopping"] == {"patience": 10, "metric": "train_loss", "min_delta": 1e-4}
    with_val = resolved_dict(apply_overrides(c, ["data.validation=1"]))["train"]["early_stopping"]
    assert with_val["metric"] == "val_loss"
    # epochs given (in the file, --set or --epochs): that many, no early stopping unless asked
    assert resolved_dict(apply_overrides(c, ["train.epochs=7"]))["train"] | {} == \
        {**train, "epochs": 7, "early_stopping": None}
    layer = c.model.layers[0]
    assert layer.init.name == "xavier_uniform"


def test_data_source_defaults():
    base = {"model": {"layers": [{"type": "softmax"}]}, "loss": "mse"}
    spirals = config_from_dict({**base, "data": {"name": "spirals"}}).data
    assert (spirals.classes, spirals.points, spirals.test_points, spirals.noise) == (3, 3000, 1000, 0.2)
    sine = config_from_dict({**base, "data": {"name": "sine"}}).data
    assert sine.a == [1.0, 0.0, 1.0, 0.0] and (sine.x_min, sine.x_max) == (-3.0, 3.0)
    assert (sine.points, sine.test_points, sine.noise) == (1000, 200, 0.1)
    csv = config_from_dict({**base, "data": {"name": "csv", "train": "a.csv", "target": "y"}}).data
    assert csv.test is None and csv.task == "auto" and csv.validation == 0
    npz = config_from_dict({**base, "data": {"name": "npz", "path": "d.npz"}}).data
    assert npz.task == "auto"


def test_adam_and_params():
    d = example_dict()
    d["optimizer"] = {"type": "adam", "lr": 1}  # an int is a fine float
    d["model"]["layers"][0]["activation"] = {"name": "leaky_relu"}
    d["model"]["layers"][1] = {"type": "activation", "activation": "silu"}
    d["model"]["layers"][0]["init"] = {"name": "normal"}
    d["model"]["layers"][2] = {"type": "dense", "units": 3, "init": "glorot_normal"}
    c = config_from_dict(d)
    assert c.model.layers[2].init.name == "xavier_normal"
    assert c.optimizer == AdamConfig(type="adam", lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8)
    assert isinstance(c.optimizer.lr, float)
    assert c.model.layers[0].activation.alpha == 0.01
    assert c.model.layers[0].init.std == 0.01
    assert c.model.layers[1].activation.name == "swish"


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    c = load_config(write(tmp_path, MINIMAL + "optimizer: {type: adam, lr: 1e-3, eps: 1e-7}\n"))
    assert c.optimizer.lr == 1e-3 and c.optimizer.eps == 1e-7


def test_round_trip(tmp_path):
    d = example_dict()
    d["model"]["layers"][0]["activation"] = {"name": "elu", "alpha": 0.5}
    d["model"]["layers"][0]["init"] = {"name": "uniform", "scale": 0.1}
    d["train"]["batch_size"] = "full"
    c = config_from_dict(d)
    r = resolved_dict(c)
    assert config_from_dict(r) == c
    assert yaml.safe_load(yaml.safe_dump(r)) == r  # plain data only
    assert load_config(write(tmp_path, dump_yaml(c), "dump.yaml")) == c
    assert r["optimizer"] == {"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False,
                              "weight_decay": 0.0, "max_norm": None}
    assert r["model"]["layers"][0]["activation"] == {"name": "elu", "alpha": 0.5}
    assert r["model"]["layers"][2]["activation"] == "tanh"


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (None, "optimizr", 1, ["unknown key 'optimizr'", "did you mean 'optimizer'"]),
        (None, "zzz", 1, ["unknown key 'zzz'", "valid keys:", "optimizer"]),
        ("optimizer", "momentun", 0.9, ["optimizer", "'momentun'", "did you mean 'momentum'"]),
        ("optimizer", "lr", "fast", ["optimizer.lr", "'fast'"]),
        ("optimizer", "lr", 0, ["optimizer.lr", "must be > 0", "(got 0)"]),
        ("optimizer", "lr", -0.1, ["optimizer.lr: must be > 0 (got -0.1)"]),
        ("optimizer", "lr", True, ["optimizer.lr", "true"]),
        ("train", "epochs", 2.5, ["train.epochs", "integer", "2.5"]),
        ("train", "epochs", "abc", ["train.epochs", "'abc'"]),
        ("train", "epochs", True, ["train.epochs", "true"]),
        ("train", "epochs", 0, ["train.epochs", ">= 1", "(got 0)"]),
        ("train", "shuffle", "yes", ["train.shuffle", "'yes'"]),
        ("train", "shuffle", 1, ["train.shuffle", "(got 1)"]),
        ("train", "batch_size", 0, ["train.batch_size", "(got 0)"]),
        ("train", "batch_size", "half", ["train.batch_size", "'half'"]),
        ("train", "batch_size", 2.0, ["train.batch_size", "2.0"]),
        (None, "loss", "xent", ["loss: unknown loss 'xent'", "valid:", "cross_entropy"]),
        (None, "loss", "mse2", ["unknown loss 'mse2'", "did you mean 'mse'"]),
        (None, "schedule", {"type": "cosin"}, ["schedule.type", "unknown schedule 'cosin'",
                                               "did you mean 'cosine'"]),
        (None, "optimizer", {"type": "adamw"}, ["optimizer.type", "unknown optimizer 'adamw'"]),
        (None, "data", {"name": "mnsit"}, ["data.name", "unknown data source 'mnsit'",
                                           "did you mean 'mnist'"]),
        (None, "data", {"name": "csv", "target": "y"}, ["data", "missing required key 'train'"]),
        (None, "data", {"name": "sine", "a": [1, 2]}, ["data.a", "4", "[1, 2]"]),
        (None, "data", {"name": "sine", "x_min": 3}, ["data.x_max", "x_min=3.0"]),
        (None, "dtype", "float16", ["dtype", "'float16'"]),
        (None, "name", "my run", ["name", "'my run'"]),
        (None, "seed", -1, ["seed", "(got -1)"]),
        (None, "clip", {"norm": 1.0, "value": 2.0}, ["clip", "exactly one", "norm", "value"]),
        (None, "clip", {}, ["clip", "exactly one", "{}"]),
    ],
)
def test_bad_values(section, key, value, expected):
    d = example_dict()
    (d if section is None else d[section])[key] = value
    msg = error_of(config_from_dict, d, "configs/x.yaml")
    assert msg.startswith("configs/x.yaml: ")
    for part in expected:
        assert part in msg, (part, msg)


def test_nesterov_needs_momentum():
    d = example_dict()
    d["optimizer"].update(nesterov=True, momentum=0.0)
    msg = error_of(config_from_dict, d, "c.yaml")
    assert "optimizer.nesterov" in msg and "momentum" in msg and "0.0" in msg


def test_nesterov_needs_zero_dampening():
    d = example_dict()
    d["optimizer"].update(nesterov=True, momentum=0.9, dampening=0.5)
    msg = error_of(config_from_dict, d, "c.yaml")
    assert "optimizer.nesterov" in msg and "dampening" in msg and "0.5" in msg


def test_sgd_dampening_is_left_out_of_a_dump_at_its_default():
    """A key added after run folders existed: at 0 a resolved config reads as before."""
    d = example_dict()
    assert "dampening" not in dump_yaml(config_from_dict(d))
    d["optimizer"]["dampening"] = 0.9
    text = dump_yaml(config_from_dict(d))
    assert "dampening: 0.9" in text
    assert dump_yaml(config_from_dict(yaml.safe_load(text))) == text


def test_dampening_at_its_default_can_be_scheduled_and_reads_as_its_default():
    """dampening: 0 is left out of the dump, yet it is a hyperparameter to schedule (from 0)."""
    from mlpjit.registry import optimizer_value
    from mlpjit.schedules import scheduled_values
    d = example_dict()
    d["optimizer"] = {"type": "sgd", "lr": 0.1, "momentum": 0.9}
    d["schedules"] = {"dampening": {"type": "linear", "start": 0.5, "over": 2}}
    r = resolved_dict(config_from_dict(d))
    assert "dampening" not in r["optimizer"] and optimizer_value(r["optimizer"], "dampening") == 0.0
    assert scheduled_values(r, 1, 3) == {"dampening": pytest.approx(0.25)}
    d["optimizer"]["nesterov"] = True
    msg = error_of(config_from_dict, d, "c.yaml")
    assert "schedules.dampening" in msg and "nesterov" in msg


def test_a_schedule_of_schedules_is_removed_by_setting_it_to_null():
    d = example_dict()
    d["schedules"] = {"momentum": {"type": "linear", "start": 0.5, "over": 3}}
    c = apply_overrides(config_from_dict(d), ["schedules.momentum=null"])
    assert "schedules" not in dump_yaml(c)


def test_option_of_other_optimizer_is_named():
    d = example_dict()
    d["optimizer"]["beta1"] = 0.9
    msg = error_of(config_from_dict, d)
    assert "unknown key 'beta1'" in msg and "adam" in msg


@pytest.mark.parametrize(
    "index, patch, expected",
    [
        (1, {"p": 1.0}, ["model.layers.1.p", "1.0"]),
        (1, {"p": -0.1}, ["model.layers.1.p", "-0.1"]),
        (1, {"type": "dropot"}, ["model.layers.1.type", "unknown layer type 'dropot'",
                                 "did you mean 'dropout'"]),
        (0, {"activation": "rleu"}, ["model.layers.0.activation: unknown activation 'rleu'",
                                     "valid: arctan, elu, gelu, identity"]),
        (2, {"activation": {"name": "relu", "alpha": 0.2}},
         ["model.layers.2.activation.alpha", "takes no parameters", "0.2"]),
        (0, {"activation": {"name": "leaky_relu", "alpha": 2}},
         ["model.layers.0.activation.alpha", "2"]),
        (0, {"init": "he_norml"}, ["model.layers.0.init", "unknown initializer 'he_norml'",
                                   "did you mean 'he_normal'"]),
        (0, {"init": {"name": "normal", "std": 0}}, ["model.layers.0.init.std", "(got 0"]),
        (0, {"units": 0}, ["model.layers.0.units", "(got 0)"]),
        (0, {"units": 1.5}, ["model.layers.0.units", "1.5"]),
        (0, {"unitz": 3}, ["model.layers.0", "unknown key 'unitz'", "did you mean 'units'"]),
    ],
)
def test_bad_layers(index, patch, expected):
    d = example_dict()
    d["model"]["layers"][index].update(patch)
    msg = error_of(config_from_dict, d, "configs/x.yaml")
    for part in expected:
        assert part in msg, (part, msg)


def test_empty_layers_and_many_errors():
    d = example_dict()
    d["model"]["layers"] = []
    assert "model.layers" in error_of(config_from_dict, d)
    d = example_dict()
    d["train"].update(epochs=0, eval_batch_size=0, shuffle="no")
    msg = error_of(config_from_dict, d)
    assert "train.epochs" in msg and "(and 2 more errors)" in msg


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "x.yaml: file is empty"),
        ("  \n\n\t\n", "x.yaml: file is empty"),
        ("# just a comment\n", "x.yaml: file is empty"),
        ("data:\n  name: [mnist\nloss: mse\n", "x.yaml: invalid YAML at line"),
        ("a: 1\n  b: 2\n", "x.yaml: invalid YAML at line 2, column"),
        ('seed: 1\nname: !!python/object/apply:os.system ["echo hi"]\n',
         "x.yaml: YAML tag '!!python/object/apply:os.system' is not allowed (line 2)"),
        ("- 1\n- 2\n", "x.yaml: top level must be a mapping"),
        ("just a string\n", "x.yaml: top level must be a mapping"),
        (MINIMAL + "seed: 1\nseed: 2\n", "x.yaml: seed: key given twice"),
    ],
)
def test_bad_files(tmp_path, text, expected):
    msg = error_of(load_config, write(tmp_path, text))
    assert msg.startswith(str(tmp_path / "x.yaml"))
    assert expected in msg, msg


def test_missing_file(tmp_path):
    msg = error_of(load_config, tmp_path / "nope.yaml")
    assert msg == f"{tmp_path / 'nope.yaml'}: no such file"


def test_error_is_a_value_error():
    with pytest.raises(ValueError):
        config_from_dict({"loss": "mse"})


# --------------------------------------------------------------------------- overrides


def test_overrides(tmp_path):
    path = write(tmp_path, MINIMAL)
    c = load_config(
        path,
        [
            "optimizer.type=sgd",
            "optimizer.lr=0.1",
            "optimizer.momentum=0.9",  # not in the file: a valid field there
            "model.layers.0.units=512",
            "clip.norm=5",
            "train.batch_size=full",
            "train.early_stopping.patience=2",
            "model.layers.1.activation=linear",
        ],
    )
    assert c.optimizer.lr == 0.1 and c.optimizer.momentum == 0.9
    assert c.model.layers[0].units == 512
    assert c.clip == ClipConfig(norm=5.0)
    assert c.train.batch_size == "full"
    assert c.train.early_stopping.patience == 2
    assert c.train.early_stopping.metric == "val_loss" and c.train.early_stopping.min_delta == 0.0
    assert c.model.layers[1].activation.name == "identity"
    assert load_config(path) != c


def test_override_values_are_yaml(tmp_path):
    path = write(tmp_path, MINIMAL)
    c = load_config(path, ["data.name=sine", "data.a=[2, 0, 1, 0.5]", "train.shuffle=false",
                           "optimizer=adam", "optimizer.lr=1e-3"])
    assert c.data.a == [2.0, 0.0, 1.0, 0.5] and c.train.shuffle is False
    assert isinstance(c.optimizer, AdamConfig) and c.optimizer.lr == 1e-3


def test_override_switches_variant(tmp_path):
    path = write(tmp_path, EXAMPLE)
    c = load_config(path, ["data.name=xor", "data.function=nand"])
    assert c.data == XorData(name="xor", function="nand")
    c = load_config(path, ["data.name=csv", "data.train=a.csv", "data.target=y"])
    assert c.data.train == "a.csv"
    c = load_config(path, ["optimizer.type=adam"])
    assert isinstance(c.optimizer, AdamConfig) and c.optimizer.lr == 0.05  # explicit lr kept
    msg = error_of(load_config, path, ["data.name=csv"])
    assert msg.startswith("--set data.name=csv: data: missing required key 'train'")


def test_override_clip_switches_mode(tmp_path):
    path = write(tmp_path, MINIMAL + "clip: {value: 1}\n")
    assert load_config(path, ["clip.norm=2"]).clip == ClipConfig(norm=2.0)
    assert load_config(path, ["clip=null"]).clip is None


def test_override_activation_param(tmp_path):
    path = write(tmp_path, MINIMAL)
    c = load_config(path, ["model.layers.0.activation=leaky_relu",
                           "model.layers.0.activation.alpha=0.3"])
    assert c.model.layers[0].activation.alpha == 0.3


@pytest.mark.parametrize(
    "item, expected",
    [
        ("optimizer.lrr=0.1",
         "--set optimizer.lrr=0.1: no such key 'lrr' under 'optimizer' (did you mean 'lr'?)"),
        ("optimzer.lr=0.1", "--set optimzer.lr=0.1: no such key 'optimzer' at the top level"),
        ("model.layers.7.units=3",
         "--set model.layers.7.units=3: index 7 out of range (model.layers has 2 items)"),
        ("model.layers.x.units=3", "--set model.layers.x.units=3: model.layers is a list"),
        ("train.epochs.x=3", "--set train.epochs.x=3: train.epochs is 'auto', not a mapping"),
        ("optimizer.lr=-1", "--set optimizer.lr=-1: optimizer.lr: must be > 0 (got -1)"),
        ("train.epochs=2.5", "--set train.epochs=2.5: train.epochs: must be an integer >= 1 or 'auto' (got 2.5)"),
        ("clip.norm=0", "--set clip.norm=0: clip.norm: must be > 0 (got 0)"),
        ("foo", "--set foo: expected key.path=value"),
        ("=3", "--set =3: expected key.path=value"),
        ("optimizer..lr=3", "--set optimizer..lr=3: empty key"),
        ("seed=[1", "--set seed=[1: invalid value"),
        ("name=!!python/object/apply:os.system [x]", "is not allowed"),
    ],
)
def test_bad_overrides(tmp_path, item, expected):
    msg = error_of(load_config, write(tmp_path, MINIMAL), [item])
    assert expected in msg, msg


def test_override_error_blames_the_right_item(tmp_path):
    msg = error_of(load_config, write(tmp_path, MINIMAL),
                   ["train.epochs=3", "optimizer.lr=-1", "seed=4"])
    assert msg.startswith("--set optimizer.lr=-1: optimizer.lr:")
