"""``mlpjit report`` (mlpjit.report): one self-contained HTML page of a run or a sweep folder.

Trained once per module: a spirals classifier (validation and test splits), a spirals run
without a test split, a sine regression, a small CNN on a synthetic MNIST folder, and a sine
sweep over the learning rate of which one run diverges.  Each report is written once and read
by several tests; the last tests render one in headless Chromium (skipped without a browser;
``.ci/run`` installs one).
"""

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import yaml

from test_plot import PNG_SIGNATURE, _one_line_error, _train

pytest.importorskip("matplotlib")

RUN_SECTIONS = ("overview", "config", "model", "curves", "lr", "grad-norms", "test", "weights")

SINE = {
    "name": "sine_report", "seed": 0,
    "data": {"name": "sine", "points": 60, "test_points": 20},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"},
                         {"type": "dense", "units": 1}]},
    "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.05},
    "train": {"epochs": 3, "batch_size": 10},
}


def _cnn(mnist_dir):
    return {
        "name": "cnn_report", "seed": 0,
        "data": {"name": "mnist", "path": str(mnist_dir), "validation": 50},
        "model": {"layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d", "size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10}]},
        "loss": "cross_entropy",
        # barely trained, so that most test images are misclassified; layer by layer, which
        # compiles the kernels the report's predictions need anyway (a cold cache: seconds less)
        "optimizer": {"type": "sgd", "lr": 0.0005},
        "train": {"epochs": 2, "batch_size": 32, "compiled": False},
    }


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory, helpers):
    """Run folders: spirals, nosplit (no test split), sine (regression), cnn (images), and
    sweep (a sine sweep of four runs: learning rate 0.05 or 1e6 (diverges), 2 or 10 epochs)."""
    from conftest import make_mini_mnist
    from mlpjit.sweep import run_sweep

    base = tmp_path_factory.mktemp("report_runs")
    mnist = make_mini_mnist(base / "mnist", n_train=300, n_test=100)
    cfgs = {
        "spirals": helpers.spirals(validation=15, epochs=3),
        "nosplit": helpers.spirals(test_points=0, epochs=2),
        "sine": SINE,
        "cnn": _cnn(mnist),
    }
    out = {name: _train(helpers.write_cfg(base / f"{name}.yaml", cfg), base / name)
           for name, cfg in cfgs.items()}
    sweep_cfg = helpers.write_cfg(base / "sweep.yaml", SINE)
    run_sweep(sweep_cfg, {"optimizer.lr": [0.05, 1e6], "train.epochs": [2, 10]}, out=base / "sweep",
              log=lambda *a: None)
    out["sweep"] = base / "sweep"
    return out


@pytest.fixture(scope="module")
def reports(runs):
    """{name: the report's HTML text}, each written to <folder>/report.html."""
    from mlpjit.report import write_report
    out = {}
    for name, folder in runs.items():
        path = write_report(folder)
        assert path == folder / "report.html"
        out[name] = path.read_text(encoding="utf-8")
    return out


# --- reading the page ---------------------------------------------------------------------

class _Tables(HTMLParser):
    """The cells of every <table id=...>: {id: [[cell text, ...], ...]} (header rows too)."""

    def __init__(self):
        super().__init__()
        self.tables, self._id, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._id = attrs["id"]
            self.tables[self._id] = []
        elif self._id and tag == "tr":
            self._row = []
        elif self._id and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._id = None
        elif self._id and tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif self._id and tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(text):
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def section(text, sid):
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def check_self_contained(text):
    """Asserts the page loads nothing from outside and every image is a decodable inline PNG;
    returns the number of <img> tags."""
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    lower = text.lower()
    for bad in ("http://", "https://", "<link", "@import", "url("):
        assert bad not in lower, f"the page contains {bad!r}"
    for attr, value in re.findall(r'\b(src|href)\s*=\s*"([^"]*)"', text, re.I):
        if attr.lower() == "src":   # base64 has "//" in it: the scheme says it is inline
            assert value.startswith("data:image/png;base64,"), value[:60]
        else:
            assert value.startswith("#") and "//" not in value, value
    assert not re.search(r"\b(src|href)\s*=\s*'", text, re.I)   # no attribute escapes the check
    images = re.findall(r"<img\b[^>]*>", text)
    for tag in images:
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert m, f"not an inline PNG: {tag[:80]}"
        png = base64.b64decode(m.group(1), validate=True)
        assert png[:8] == PNG_SIGNATURE and png[-8:-4] == b"IEND"
        width, height = struct.unpack(">II", png[16:24])
        assert f'width="{width}"' in tag and f'height="{height}"' in tag
    assert "<script" in text and "data-images" in text
    return len(images)


# --- run reports --------------------------------------------------------------------------

def test_run_report_sections(reports, runs):
    text = reports["spirals"]
    for sid in RUN_SECTIONS:
        section(text, sid)
    assert "misclassified" not in text  # not image data
    assert "spirals_test: run report" in text
    assert "momentum: 0.9" in section(text, "config")
    model = section(text, "model")
    assert "Dense(2 → 8, activation=Tanh())" in model and "M = X·A" in model
    assert "FLOPs per epoch" in model and "cross_entropy" in model
    weights = section(text, "weights")
    assert weights.count("<img") == 1  # one figure, a panel each
    assert "2 weight matrices" in weights
    for name in ("curves", "lr", "grad-norms", "test"):
        assert section(text, name).count("<img") == 1, name


@pytest.mark.parametrize("name", ["spirals", "nosplit", "sine", "cnn", "sweep"])
def test_reports_are_self_contained(reports, name):
    n = check_self_contained(reports[name])
    assert n >= 1


def test_confusion_matrix_equals_summary(reports, runs):
    summary = json.loads((runs["spirals"] / "summary.json").read_text())
    t = tables(reports["spirals"])
    matrix = t["confusion-matrix"]
    assert matrix[0][1:] == [str(c) for c in summary["test_classes"]]
    assert [[int(v) for v in row[1:]] for row in matrix[1:]] == summary["test_confusion_matrix"]
    per_class = t["per-class"]
    assert per_class[0] == ["class", "precision", "recall", "F1", "support"]
    expected = [[str(r["class"]), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                 f"{r['support']:,}"] for r in summary["test_per_class"]["classes"]]
    assert per_class[1:1 + len(expected)] == expected
    assert [row[0] for row in per_class[-2:]] == ["macro avg", "weighted avg"]
    macro = summary["test_per_class"]["macro avg"]
    assert per_class[-2][1:4] == [f"{macro[k]:.4f}" for k in ("precision", "recall", "f1")]


def test_regression_metrics(reports, runs):
    summary = json.loads((runs["sine"] / "summary.json").read_text())
    test = section(reports["sine"], "test")
    assert "confusion" not in test.lower()
    r = summary["test_regression"]
    for key, label in (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²")):
        assert label in test
        assert f'data-metric="{key}">{r[key]:.6g}<' in test
    assert "Test split: regression metrics" in reports["sine"]
    assert "accuracy" not in section(reports["sine"], "curves")


def test_no_test_split(reports):
    assert "no test split" in section(reports["nosplit"], "test")
    assert "<img" not in section(reports["nosplit"], "test")


def test_image_run_shows_misclassified(reports, runs):
    text = reports["cnn"]
    for sid in RUN_SECTIONS + ("misclassified",):
        section(text, sid)
    mis = section(text, "misclassified")
    summary = json.loads((runs["cnn"] / "summary.json").read_text())
    C = summary["test_confusion_matrix"]
    wrong = sum(map(sum, C)) - sum(C[i][i] for i in range(len(C)))
    assert wrong > 32, "the CNN of this test should be barely trained"
    assert f"{wrong:,} of 100 test images are misclassified; the first 32 are shown" in mis
    assert mis.count("<img") == 1
    assert "Conv2D(1 → 4, 3×3" in section(text, "model")
    assert "2 weight matrices" in section(text, "weights")


def test_png_helpers_of_plot(runs, tmp_path):
    from mlpjit.plot import _grad_norms_png, _runs_png, plot_runs
    png = _runs_png([runs["spirals"]], size=(500, 300))
    assert png[:8] == PNG_SIGNATURE and struct.unpack(">II", png[16:24]) == (500, 300)
    assert _grad_norms_png(runs["sine"])[:8] == PNG_SIGNATURE
    out = plot_runs([runs["spirals"]], tmp_path / "p.png", size=(500, 300))
    assert out.read_bytes() == png  # the same figure, written


# --- sweep report -------------------------------------------------------------------------

def test_sweep_report(reports, runs):
    text = reports["sweep"]
    rows = [r for r in (runs["sweep"] / "sweep.csv").read_text().splitlines()[1:] if r]
    table = tables(text)["sweep-table"]
    assert len(table) == 1 + len(rows) == 5
    head = table[0]
    assert head[:4] == ["optimizer.lr", "train.epochs", "seed", "status"] and "error" in head
    for row in table[1:]:
        lr, status, error = (row[head.index(k)] for k in ("optimizer.lr", "status", "error"))
        assert (lr, status) in (("0.05", "ok"), ("1e+06", "failed"))
        assert ("diverged" in error) == (status == "failed")
    assert text.count("<tr class=failed>") == 2
    assert "4 runs: 2 ok, 2 failed" in text
    failed = section(text, "runs").split('id="failed-runs"')[1]
    assert failed.count("<li>") == 2 and failed.count("diverged") == 2
    assert '<table class="sortable"' in text and "localeCompare" in text
    assert section(text, "curves").count("<img") == 1
    assert "2 finished runs overlaid" in section(text, "curves")


# --- bad input ----------------------------------------------------------------------------

def test_train_report_writes_the_page_at_the_end(mlpjit_main, helpers, cfg_file, tmp_path):
    r = mlpjit_main("train", cfg_file(helpers.spirals(points=60, epochs=2)), "--out", tmp_path / "r", "--report")
    assert r.code == 0, r.err
    assert f"report: {tmp_path / 'r' / 'report.html'}" in r.out
    page = (tmp_path / "r" / "report.html").read_text()
    assert 'id="curves"' in page and 'id="test"' in page


def test_train_report_without_matplotlib_says_so_before_training(mlpjit_main, helpers, cfg_file,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = mlpjit_main("train", cfg_file(helpers.spirals(points=60)), "--out", tmp_path / "r", "--report")
    assert r.code == 2 and 'pip install "mlpjit[plot]"' in r.err, r.err
    assert not (tmp_path / "r").exists()


def test_not_a_run_or_sweep_folder(mlpjit_main, tmp_path):
    (tmp_path / "other").mkdir()
    _one_line_error(mlpjit_main("report", tmp_path / "other"), str(tmp_path / "other"),
                    "neither a run folder", "sweep folder")
    _one_line_error(mlpjit_main("report", tmp_path / "missing"), "missing", "no such folder")
    (tmp_path / "file.txt").write_text("x")
    _one_line_error(mlpjit_main("report", tmp_path / "file.txt"), "not a folder")
    assert not (tmp_path / "other" / "report.html").exists()


def test_command_writes_and_prints(mlpjit_main, runs, tmp_path):
    out = tmp_path / "s.html"
    r = mlpjit_main("report", runs["sine"], "--out", out)
    assert r.code == 0, r.text
    assert re.fullmatch(rf"wrote {re.escape(str(out))} \(\d+ KiB\)\n", r.out), r.out
    assert out.stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    _one_line_error(mlpjit_main("report", runs["sine"], "--out", tmp_path / "no" / "r.html"),
                    "does not exist")
    r = mlpjit_main("report", "--help")
    assert r.code == 0 and "Examples:" in r.out and "mlpjit report" in r.out


def test_run_without_epochs(runs, tmp_path):
    from mlpjit.report import write_report
    run = tmp_path / "fresh"
    run.mkdir()
    shutil.copy(runs["spirals"] / "config.yaml", run / "config.yaml")
    for metrics in (None, ""):
        if metrics is not None:
            (run / "metrics.jsonl").write_text(metrics)
        text = write_report(run).read_text(encoding="utf-8")
        check_self_contained(text)
        for sid in ("curves", "lr", "grad-norms"):
            assert "no epochs recorded yet" in section(text, sid)
        assert "no model.npz or checkpoint.npz yet" in section(text, "weights")
        assert "Dense(2 → 8" in section(text, "model")   # the structure is known
        assert "not finished" in section(text, "overview")


def test_data_that_cannot_be_loaded(runs, tmp_path):
    from mlpjit.report import write_report
    run = tmp_path / "moved"
    shutil.copytree(runs["cnn"], run)
    (run / "report.html").unlink()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["path"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    text = write_report(run).read_text(encoding="utf-8")
    check_self_contained(text)
    model = section(text, "model")
    assert "cannot be loaded" in model and "gone" in model
    assert "cannot be loaded" in section(text, "misclassified")
    assert 'id="confusion-matrix"' in section(text, "test")    # from summary.json
    assert section(text, "weights").count("<img") == 1          # from model.npz


def test_matplotlib_missing(runs, mlpjit_main, tmp_path, monkeypatch):
    # a None entry in sys.modules makes the import fail as if the package were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "r.html"
    _one_line_error(mlpjit_main("report", runs["sine"], "--out", out),
                    "matplotlib", 'pip install "mlpjit[plot]"')
    assert not out.exists()


# --- a real browser -----------------------------------------------------------------------

def _browser():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no headless Chromium on PATH (chromium, chromium-browser, google-chrome); "
                    ".ci/run installs it, as CI does")
    return found


def _chromium(browser, tmp_path, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _dump_dom(browser, tmp_path, page):
    p = _chromium(browser, tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


@pytest.mark.parametrize("name", ["cnn", "sweep"])
def test_chromium_renders_the_report(reports, runs, name, tmp_path):
    from matplotlib.image import imread
    browser = _browser()
    page = (runs[name] / "report.html").resolve()
    shot = tmp_path / "shot.png"
    p = _chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,3000",
                  page.as_uri())
    assert shot.is_file(), p.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1280)
    assert pixels.std() > 0.02, "the screenshot is one colour"
    non_white = (pixels < 0.95).any(axis=2).mean()
    assert non_white > 0.03, f"only {non_white:.1%} of the screenshot is not white"

    dom = _dump_dom(browser, tmp_path, page)
    n = reports[name].count("<img")
    m = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert m, "the page's image count did not run: " + dom[:300]
    assert (int(m.group(1)), int(m.group(2))) == (n, n)


@pytest.mark.parametrize("column, clicks, expected", [
    ("train.epochs", 1, ["2", "2", "10", "10"]),         # numbers numerically, not as text
    ("train.epochs", 2, ["10", "10", "2", "2"]),         # a second click: descending
    ("status", 1, ["failed", "failed", "ok", "ok"]),
])
def test_chromium_sorts_the_sweep_table(reports, column, clicks, expected, tmp_path):
    browser = _browser()
    text = reports["sweep"]
    col = tables(text)["sweep-table"][0].index(column)
    click = (f'<script>var th = document.querySelectorAll("#sweep-table thead th")[{col}];'
             + "th.click();" * clicks + "</script>")
    page = tmp_path / "sorted.html"
    page.write_text(text.replace("</body>", click + "</body>"), encoding="utf-8")
    rows = tables(_dump_dom(browser, tmp_path, page))["sweep-table"][1:]
    assert [row[col] for row in rows] == expected
