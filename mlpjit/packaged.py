"""What ships inside the package (``mlpjit/shipped/``): MNIST's four IDX files, the configs
(``configs/*.yaml``, the experiments' ``configs/experiments/*.yaml``) and the examples.

They live in the package so that an installed mlpjit finds them from any folder: ``data.path:
null`` reads :data:`MNIST`, ``mlpjit train mnist_mlp`` reads :data:`CONFIGS` ``/mnist_mlp.yaml``
(a source checkout links ``configs/``, ``data/mnist/`` and ``examples/`` to these folders).
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "shipped"
MNIST = SHIPPED / "mnist"
CONFIGS = SHIPPED / "configs"
EXPERIMENT_CONFIGS = CONFIGS / "experiments"
EXAMPLES = SHIPPED / "examples"

__all__ = ["SHIPPED", "MNIST", "CONFIGS", "EXPERIMENT_CONFIGS", "EXAMPLES", "shipped_configs", "config_file"]


def shipped_configs() -> dict[str, Path]:
    """{name: path} of the shipped configs (``mnist_mlp``, ``xor``, ...), by name."""
    if not CONFIGS.is_dir():
        return {}
    return {p.stem: p for p in sorted(CONFIGS.glob("*.yaml"))}


def describe(path: Path) -> str:
    """A shipped config's one-line description: its first comment line."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line.strip():
                break
    except OSError:
        pass
    return ""


def config_file(arg: str | Path) -> Path:
    """The config file ``arg`` names: a path to a file as given, else a shipped config's name
    (``mnist_mlp`` or ``mnist_mlp.yaml``).  Neither: one line listing the shipped names."""
    path = Path(arg)
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if path.is_dir():   # never a config: a shipped config of that name (./xor a run folder), or one line
        configs = shipped_configs() if len(path.parts) == 1 else {}
        if name in configs:
            return configs[name]
        hint = (f"; a run folder: mlpjit train --resume {arg}" if (path / "config.yaml").is_file()
                else "")
        raise ConfigError(f"{arg}: is a folder, not a config file{hint}")
    if path.exists() or len(path.parts) > 1:
        return path
    configs = shipped_configs()
    if name in configs:
        return configs[name]
    if not configs:
        raise ConfigError(f"{arg}: no such file, and this mlpjit has no shipped configs "
                          f"({CONFIGS} is missing: a broken install, reinstall mlpjit)")
    raise ConfigError(f"{arg}: no such file, and not a shipped config (shipped: "
                      f"{', '.join(configs)}; mlpjit config list)")
