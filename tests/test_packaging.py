"""What ships inside the package (mlpjit/shipped/: MNIST, the configs, the examples) and the
shipped configs by name, from any folder.  `.ci/run` also builds the wheel, installs it into a
fresh venv and trains from an empty folder with it."""

from pathlib import Path

import pytest

from mlpjit import packaged

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_files_are_inside_the_package_and_the_checkout_links_to_them():
    assert sorted(p.name for p in packaged.MNIST.glob("*.gz")) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    names = set(packaged.shipped_configs())
    assert {"mnist_mlp", "mnist_cnn", "mnist_softmax", "xor", "spirals", "sine"} <= names
    assert (packaged.EXPERIMENT_CONFIGS / "e1_xor.yaml").is_file()
    assert (packaged.EXAMPLES / "sine_layer.py").is_file()
    if (REPO / "configs").exists():   # a source checkout
        assert (REPO / "configs").resolve() == packaged.CONFIGS
        assert (REPO / "data" / "mnist").resolve() == packaged.MNIST
        assert (REPO / "examples").resolve() == packaged.EXAMPLES


def test_every_shipped_file_is_listed_as_package_data():
    """A file under mlpjit/shipped/ that no package-data pattern names would be missing from the
    wheel (and only there)."""
    import fnmatch
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mlpjit"]
    root = REPO / "mlpjit"
    for path in (root / "shipped").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(root).as_posix()
            assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel


def test_a_shipped_config_by_name_from_any_folder(mlpjit_main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # no configs/ and no data/ here
    res = mlpjit_main("train", "xor", "--epochs", 3, "--out", tmp_path / "run", "-q")
    assert res.code == 0, res.text
    assert "name: xor" in (tmp_path / "run" / "config.yaml").read_text()
    res = mlpjit_main("config", "check", "mnist_softmax.yaml")   # the name with .yaml too; MNIST found
    assert res.code == 0 and "OK (55000 training examples" in res.out, res.text


def test_config_list_names_every_shipped_config_with_its_first_comment(mlpjit_main):
    res = mlpjit_main("config", "list")
    assert res.code == 0
    lines = dict(line.split(None, 1) for line in res.out.splitlines())
    assert set(lines) == set(packaged.shipped_configs())
    assert lines["xor"].startswith("XOR: a 2-4-1 tanh network")
    assert lines["mnist_mlp"].startswith("MNIST, a two-hidden-layer ReLU network")


@pytest.mark.parametrize("name", ["mnist_mpl", "nosuch.yaml"])
def test_a_name_that_is_neither_a_file_nor_shipped_is_one_line(mlpjit_main, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    res = mlpjit_main("train", name, "-q")
    assert res.code == 2 and res.out == ""
    err = res.err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err == (f"error: {name}: no such file, and not a shipped config (shipped: "
                   f"{', '.join(packaged.shipped_configs())}; mlpjit config list)")
    res = mlpjit_main("train", "sub/xor.yaml", "-q")             # a path is never a name
    assert res.code == 2 and "sub/xor.yaml: no such file" in res.err


def test_a_broken_install_says_so(mlpjit_main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(packaged, "CONFIGS", tmp_path / "gone")
    monkeypatch.setattr(packaged, "MNIST", tmp_path / "gone-mnist")
    res = mlpjit_main("train", "xor", "-q")
    assert res.code == 2 and "this mlpjit has no shipped configs" in res.err and "reinstall mlpjit" in res.err
    res = mlpjit_main("config", "list")
    assert res.code == 2 and "reinstall mlpjit" in res.err
    from mlpjit.data import load_dataset
    from mlpjit.errors import DataError
    with pytest.raises(DataError, match=r"MNIST directory not found: tried ./data/mnist and .*gone-mnist.*reinstall mlpjit"):
        load_dataset({"name": "mnist"}, 0)


def test_reproduce_without_matplotlib_is_one_line_before_any_training(mlpjit_main, tmp_path, monkeypatch):
    import mlpjit.plot
    from mlpjit.errors import MlpjitError

    def missing():
        raise MlpjitError('plotting needs matplotlib, which is not installed: pip install "mlpjit[plot]"')
    monkeypatch.setattr(mlpjit.plot, "_matplotlib", missing)
    res = mlpjit_main("reproduce", "xor", "--quick", "--out", tmp_path)
    assert res.code == 2 and res.out == ""
    assert res.err.strip() == 'error: plotting needs matplotlib, which is not installed: pip install "mlpjit[plot]"'
    assert not (tmp_path / "runs").exists()


def _imports():
    """{module: the mlpjit modules it imports}, every import statement (inside functions too)."""
    import ast
    root = Path(packaged.__file__).resolve().parent
    mods = {}
    for path in root.rglob("*.py"):
        if "shipped" in path.relative_to(root).parts:
            continue
        parts = ("mlpjit",) + path.relative_to(root).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    base = ".".join(up[:len(up) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m].update(n for n in names if n in mods and n != m)
    return graph


def test_no_import_circles():
    """No module reaches itself through mlpjit's imports (those inside functions count too); a
    module importing its own package's __init__ (``from ..layers import x``) is not a circle."""
    graph = _imports()
    for m in graph:
        graph[m] = {n for n in graph[m] if not m.startswith(n + ".")}
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for n in graph[node]:
                if n == start:
                    circles.append(" → ".join(path + [n]))
                elif n not in seen:
                    seen.add(n)
                    stack.append((n, path + [n]))
    assert not circles, circles[:5]


def test_a_folder_is_never_a_config(mlpjit_main, tmp_path, monkeypatch):
    """A run folder named like a shipped config (mlpjit train xor --out xor) does not hide the
    shipped config; any other folder given as CONFIG is one line, a run folder with its resume."""
    monkeypatch.chdir(tmp_path)
    assert mlpjit_main("train", "xor", "--epochs", 1, "--out", "xor", "-q").code == 0
    assert mlpjit_main("train", "xor", "--epochs", 1, "--out", "again", "-q").code == 0
    r = mlpjit_main("train", "again")
    assert r.code == 2 and r.err == "error: again: is a folder, not a config file; a run folder: " \
                                    "mlpjit train --resume again\n"
    (tmp_path / "plain").mkdir()
    r = mlpjit_main("config", "check", "plain")
    assert r.code == 2 and r.err == "error: plain: is a folder, not a config file\n"
