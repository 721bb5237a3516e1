"""The ``mlpjit`` command line: train, evaluate, predict, gradcheck, config.

A user mistake (bad config, missing file, wrong value) ends with one line on stderr,
``error: ...``, and exit code 2; a diverged run exits 3; a run stopped by ``--stop-after`` or
``--max-time`` 75; one interrupted by SIGINT 130, by SIGTERM 143 (each after a checkpoint).
"""

import json
import shlex
import sys
from pathlib import Path

import click
import numpy as np

from . import __version__
from .errors import ConfigError, DataError, MlpjitError

EXIT_USER, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class _RegistryHelp(click.Command):
    """A command whose --help ends with the names a config can use, read from the registries
    (a layer type registered by a module of yours appears once the config imports it)."""

    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        from . import registry
        with formatter.section("Names a config can use"):
            formatter.write_dl([
                ("layer types", ", ".join(registry.layers.names())),
                ("activations", ", ".join(registry.activations.names())),
                ("initializers", ", ".join(registry.initializers.names())),
                ("losses", ", ".join(registry.losses.names())),
                ("optimizers", ", ".join(registry.optimizers.names())),
                ("schedules", ", ".join(registry.schedules.names())),
            ])


MAX_ERROR = 400   # characters of an error line: a 100,000-digit value is shown as its start


def capped(message, limit=MAX_ERROR):
    """One line of at most ``limit`` characters: a longer one keeps its start and its end."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    return text[:limit - 81] + " … " + text[-78:]


def _fail(message, code=EXIT_USER):
    click.echo(f"error: {capped(message)}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlpjit")
def cli():
    """mlpjit: multilayer perceptrons with hand-derived gradients, compiled with Numba.

    \b
    Examples:
      mlpjit train mnist_mlp
      mlpjit train xor --set optimizer.lr=0.5 --epochs 200
      mlpjit train --resume runs/mnist_mlp-20261123-120000
      mlpjit evaluate runs/mnist_mlp-20261123-120000
      mlpjit gradcheck spirals
    """


def main(argv=None):
    """Entry point: runs the click group and turns mlpjit errors into one line."""
    try:
        cli.main(args=argv, prog_name="mlpjit", standalone_mode=False)
    except click.exceptions.Abort as e:
        from .trainer import Terminated
        if isinstance(e.__cause__, Terminated):
            click.echo("terminated (SIGTERM)", err=True)
            sys.exit(143)
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as e:   # `mlpjit config` alone: its help, not an error
        click.echo(e.ctx.get_help() if e.ctx is not None else e.format_message())
        sys.exit(0)
    except click.ClickException as e:  # usage errors too: one line, naming the option
        click.echo(f"error: {capped(e.format_message())}"
                   + (" (see --help)" if isinstance(e, click.UsageError) else ""), err=True)
        sys.exit(e.exit_code)
    except MlpjitError as e:
        _fail(str(e))
    except MemoryError as e:  # anything NumPy could not allocate: one line, never a traceback
        what = " ".join(str(e).split()) or "an allocation failed"
        _fail(f"out of memory: {what}{_inputs_named(sys.argv[1:] if argv is None else argv)} "
              f"(check the sizes in the config: mlpjit explain CONFIG shows what a model needs)")
    except KeyboardInterrupt as e:
        from .trainer import Terminated
        click.echo("terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted", err=True)
        sys.exit(143 if isinstance(e, Terminated) else EXIT_INTERRUPTED)
    sys.exit(0)


# --- helpers ---------------------------------------------------------------------------

def _inputs_named(args) -> str:
    """", with FILE --set K=V ...": the files and --set values of a command line, for a message
    about a failure that no one key explains (running out of memory)."""
    args = [str(a) for a in args]
    named = []
    for i, a in enumerate(args):
        if a in ("--set", "--grid", "--space") and i + 1 < len(args):
            named.append(f"{a} {shlex.quote(args[i + 1])}")
        elif not a.startswith("-") and (i == 0 or args[i - 1] not in ("--set", "--grid", "--space")):
            try:
                if Path(a).exists():
                    named.append(shlex.quote(a))
            except OSError:
                pass
    return f", with {' '.join(named)}" if named else ""


def _with_loggers(cfg_obj, names):
    """The config with ``--log`` names added to its train.log (validated as the key is)."""
    if not names:
        return cfg_obj
    from .config import apply_overrides
    have = list(cfg_obj.train.log)
    wanted = have + [n for n in names if n not in have]
    try:
        return apply_overrides(cfg_obj, [f"train.log=[{', '.join(wanted)}]"])
    except ConfigError as e:
        raise ConfigError(str(e).replace(f"--set train.log=[{', '.join(wanted)}]", "--log")) from None


def _load(config_path, overrides=(), trust=None):
    """A resolved config; ``trust`` (a list, for a run folder's config.yaml): its imports are
    not imported, each must be imported already or trusted (a run folder is data)."""
    from .config import load_config, resolved_dict
    return resolved_dict(load_config(config_path, overrides, trust=trust))


def _new_run_dir(name, out):
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(p.name != ".lock" for p in path.iterdir())):
            raise ConfigError(f"--out {path}: already exists and is not empty "
                              f"(use --resume {path} to continue it, or another --out)")
        return path
    from .io import timestamped_dir
    return timestamped_dir("runs", name)


def _report(summary, run_dir, echo):
    final = summary["final"]
    figures = "  ".join(f"{k} {100 * v:.2f}%" if k.endswith("accuracy") else f"{k} {v:.4f}"
                        for k, v in final.items())
    es = summary.get("early_stopping") or {}
    stopped = (f" (early stop; best {es['best']:.4g} at epoch {es['best_epoch']})"
               if es.get("stopped") else "")
    echo(f"done: {summary['epochs']} epoch{'' if summary['epochs'] == 1 else 's'}{stopped} in {summary['train_seconds']:.1f}s training "
         f"({summary['total_seconds']:.1f}s this command)  {figures}")
    echo(f"run folder: {run_dir}")


# --- train -------------------------------------------------------------------------------


def _max_time_seconds(max_time):
    """--max-time DURATION in seconds (None when not given); a bad duration is one line."""
    if max_time is None:
        return None
    from .trainer import parse_duration
    try:
        return parse_duration(max_time)
    except ValueError as e:
        raise ConfigError(f"--max-time {max_time}: {e}") from None

@cli.command(cls=_RegistryHelp)
@click.argument("config", required=False, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/<name>-<timestamp>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config key, e.g. --set optimizer.lr=0.1 (repeatable).")
@click.option("--epochs", type=click.IntRange(min=1, max=1_000_000),
              help="The plan: total epochs (train.epochs), which schedules and early stopping see; "
                   "with --resume, a larger plan re-plans the schedule from the next epoch.")
@click.option("--stop-after", type=click.IntRange(min=1), metavar="N",
              help="End this invocation after N more finished epochs, with a checkpoint (exit 75); "
                   "--resume continues the same plan exactly.")
@click.option("--max-time", metavar="DURATION",
              help="End this invocation, after the current batch, once DURATION has passed "
                   "(90s, 30m, 2h, 1h30m), with a checkpoint (exit 75).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (overrides the config's).")
@click.option("--threads", metavar="N|auto",
              help="Threads (train.threads): auto, the cores this process may use, or a number.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), help="Continue the run in this folder.")
@click.option("--report", "html_report", is_flag=True,
              help="Also write report.html into the run folder at the end (needs matplotlib).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@click.option("--log", "log_to", multiple=True, metavar="LOGGER",
              help="Also log the run to a registered logger: tensorboard, mlflow (repeatable; "
                   "added to the config's train.log; allowed with --resume).")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def train(config, out, overrides, epochs, stop_after, max_time, seed, threads, resume, html_report,
          quiet, log_to, trust):
    """Train a model from a YAML CONFIG (a file, or a shipped config's name: mnist_mlp; see
    mlpjit config list) and keep a run folder.

    \b
    The run folder holds config.yaml (resolved), metrics.jsonl (one line per
    epoch), checkpoint.npz, model.npz and summary.json.
    Ctrl-C (SIGINT) and SIGTERM stop after the current batch, write a checkpoint and print
    the resume command (exit 130 and 143); --stop-after and --max-time end an invocation the
    same way (exit 75), for jobs with a time limit.  A resume continues bit-identically.

    \b
    Examples:
      mlpjit train mnist_mlp
      mlpjit train mnist_mlp --epochs 2                  # a shipped config, from any folder
      mlpjit train mnist_mlp --set optimizer.lr=0.1 --set model.layers.0.units=512
      mlpjit train xor --epochs 500 --seed 3 --out runs/xor
      mlpjit train mnist_mlp --epochs 40 --max-time 2h --out runs/long
      mlpjit train --resume runs/long --max-time 2h
      mlpjit train --resume runs/xor --epochs 1000
      mlpjit train spirals --report   # and open <run folder>/report.html
    """
    from .config import dump_yaml, load_config, resolved_dict
    from .errors import TrainingDiverged
    import contextlib

    from .io import FolderLock, atomic_write_text
    from .trainer import Stopped, Trainer

    echo = (lambda *a, **k: None) if quiet else click.echo
    held = contextlib.ExitStack()   # the run folder's lock, held to the end of the command
    with held:
        if html_report:
            from .plot import _matplotlib
            _matplotlib()  # say so before training, not after
        seconds = _max_time_seconds(max_time)
        if resume:
            if config or overrides or seed is not None or out or threads is not None:
                raise ConfigError("--resume takes only the run folder (and --epochs, --stop-after, "
                                  "--max-time); CONFIG, --set, --seed, --threads and --out come from "
                                  "the run")
            run_dir = Path(resume)
            if not (run_dir / "config.yaml").is_file():
                raise ConfigError(f"--resume {run_dir}: not a run folder (no config.yaml)")
            if not (run_dir / "checkpoint.npz").is_file():
                raise ConfigError(f"--resume {run_dir}: no checkpoint.npz to resume from")
            held.enter_context(FolderLock(run_dir))   # not while another process writes it
            cfg_obj = load_config(run_dir / "config.yaml",
                                  [f"train.epochs={epochs}"] if epochs else [], trust=trust)
            cfg_obj = _with_loggers(cfg_obj, log_to)
            cfg = resolved_dict(cfg_obj)
            trainer = Trainer(cfg, run_dir, log=echo, progress=not quiet)
            trainer.load_checkpoint()
            if trainer.epoch >= cfg["train"]["epochs"] and trainer.batch == 0:
                click.echo(f"{run_dir}: already trained for {trainer.epoch} epochs; "
                           f"pass --epochs N (N > {trainer.epoch}) to train further")
                return
            atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg_obj))
            echo(f"resuming {run_dir} at epoch {trainer.epoch + 1}"
                 + (f", batch {trainer.batch + 1}" if trainer.batch else ""))
        else:
            if not config:
                raise ConfigError("give a CONFIG file, or --resume RUN_DIR (see mlpjit train --help)")
            extra = list(overrides)
            if epochs:
                extra.append(f"train.epochs={epochs}")
            if seed is not None:
                extra.append(f"seed={seed}")
            if threads is not None:
                if threads != "auto" and not (threads.isdigit() and int(threads) >= 1):
                    raise ConfigError(f"--threads {threads}: must be an integer >= 1 or 'auto'")
                extra.append(f"train.threads={threads}")
            cfg_obj = _with_loggers(load_config(config, extra), log_to)
            cfg = resolved_dict(cfg_obj)
            run_dir = _new_run_dir(cfg["name"], out)
            # everything that can fail on bad input happens before the run folder exists
            trainer = Trainer(cfg, run_dir, log=echo, progress=not quiet)
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"--out {run_dir}: cannot create the run folder "
                                  f"({e.strerror or e})") from None
            held.enter_context(FolderLock(run_dir))   # a second `--out` of the same folder is refused
            if any(p.name != ".lock" for p in run_dir.iterdir()):
                raise ConfigError(f"--out {run_dir}: already exists and is not empty "
                                  f"(use --resume {run_dir} to continue it, or another --out)")
            atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg_obj))
            echo(f"run folder: {run_dir}")
            echo(repr(trainer.model))
        try:
            summary = trainer.fit(cfg["train"]["epochs"], stop_after=stop_after, max_time=seconds)
        except Stopped as e:
            click.echo(f"{e}; resume with: mlpjit train --resume {shlex.quote(str(run_dir))}", err=True)
            _html_report(html_report, run_dir, echo, trust)
            sys.exit(e.code)
        except TrainingDiverged as e:
            click.echo(f"error: {e}", err=True)
            _html_report(html_report, run_dir, echo, trust)
            sys.exit(EXIT_DIVERGED)
        _report(summary, run_dir, click.echo)
        _html_report(html_report, run_dir, click.echo, trust)


def _html_report(wanted, run_dir, echo, trust=()):
    if wanted:
        from .report import write_report
        path = write_report(run_dir, trust=trust)
        echo(f"report: {path}")


# --- evaluate ----------------------------------------------------------------------------

def _load_model_and_cfg(target, data, trust=()):
    from .model import Sequential
    target = Path(target)
    if target.is_dir():
        model_path = target / "model.npz"
        if not model_path.is_file():
            raise ConfigError(f"{target}: no model.npz in this folder (has the run finished?)")
        cfg = _load(target / "config.yaml", trust=list(trust)) if (target / "config.yaml").is_file() else None
    else:
        model_path, cfg = target, None
    model = Sequential.load(model_path, trust=trust)
    if data is not None:
        p = Path(data)
        if p.suffix in (".npz", ".csv") and p.exists():   # a data file: evaluated as it is
            spec = {"name": "npz", "path": str(p)} if p.suffix == ".npz" else {"name": "file", "path": str(p)}
            cfg = {"data": spec, "seed": model.metadata.get("seed", 0),
                   "loss": model.metadata.get("loss", "cross_entropy")}
        elif p.suffix in (".yaml", ".yml") or p.is_file():
            cfg = _load(data)
        else:  # a source spec: load_dataset checks its keys and values
            cfg = {"data": _data_spec(data), "seed": model.metadata.get("seed", 0),
                   "loss": model.metadata.get("loss", "cross_entropy")}
    if cfg is None:
        raise ConfigError(f"{target}: a model file alone does not say which data to use; "
                          f"pass --data FILE.npz, --data FILE.csv (a table model), --data CONFIG.yaml "
                          f"or --data mnist")
    return model, cfg


def _csv_dataset(model, path):
    """A table's CSV (with its target column) as the test split, encoded as the model's
    training table was (its stored encoding, not one learned from this file)."""
    from . import predicting as P
    from .data import Dataset
    from .tables import TableEncoding, read_table
    meta = model.metadata
    if not meta.get("encoding"):
        raise ConfigError(f"--data {path}: a CSV is read with the table encoding of the model it "
                          f"evaluates, and this model was not trained on a table; give an .npz "
                          f"(X, y) or a source spec: --data csv,train={path},target=COLUMN")
    enc = TableEncoding.from_json(meta["encoding"])
    X, target, _ = read_table(P.input_file(path), enc, str(path), target_required=True)
    if len(X) == 0:
        raise DataError(f"{path}: no rows to evaluate")
    names = meta.get("class_names")
    if meta.get("task") == "classification":
        index = {str(n): i for i, n in enumerate(names or range(meta.get("n_classes") or 0))}
        y = []
        for line, cell in target:
            key = str(_label_value(cell, names))
            if key not in index:
                raise DataError(f"{path} line {line}, column {enc.target!r}: label {cell!r} is not one "
                                f"of the model's classes ({', '.join(map(str, index))})")
            y.append(index[key])
        y = np.asarray(y, np.int64)
    else:
        from .tables import cell_float
        y = np.asarray([[cell_float(str(path), line, enc.target, cell)] for line, cell in target])
    return Dataset(str(path), meta.get("task", "classification"), X[:0], y[:0], None, None, X, y,
                   meta.get("n_classes"), 1.0, names)


def _data_spec(text):
    """'mnist' or 'spirals,classes=4,noise=0.1' → a data dict."""
    parts = [p for p in text.split(",") if p]
    spec = {"name": parts[0]}
    import yaml
    for item in parts[1:]:
        if "=" not in item:
            raise ConfigError(f"--data {text}: expected NAME[,key=value...], got '{item}'")
        k, v = item.split("=", 1)
        spec[k] = yaml.safe_load(v)
    return spec


@cli.command()
@click.argument("target", type=click.Path(exists=False))
@click.option("--data", help="Data to evaluate on: a data file (FILE.npz with X, y; FILE.csv "
                             "of a table model, with its target column), a config file, or a source "
                             "spec such as 'mnist' or 'spirals,classes=3' (default: the run's config).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object (for scripts).")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def evaluate(target, data, as_json, trust):
    """Print loss and accuracy of a trained model, and per-class metrics.

    TARGET is a run folder or a MODEL.npz file (then --data is needed).  For a classifier:
    the confusion matrix, and precision, recall, F1 and support per class with their macro and
    weighted averages (scikit-learn's definitions); for a regression: MAE, RMSE and R².  They
    are computed on the test split (or, without one, on the last split there is).

    \b
    Examples:
      mlpjit evaluate runs/mnist_mlp-20261123-120000
      mlpjit evaluate runs/mnist_mlp-20261123-120000 --json
      mlpjit evaluate model.npz --data configs/mnist_mlp.yaml
      mlpjit evaluate model.npz --data mnist
      mlpjit evaluate model.npz --data iris.npz
      mlpjit evaluate runs/cancer/model.npz --data raw_test.csv
    """
    from . import losses
    from . import metrics as M
    from .data import load_dataset

    model, cfg = _load_model_and_cfg(target, data, trust)
    if cfg["data"].get("name") == "file":
        ds = _csv_dataset(model, cfg["data"]["path"])
    else:
        ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    loss = losses.get(model.metadata.get("loss") or cfg["loss"])
    # where the data came from, for the messages: --data, or the run's config
    where = f"--data {data}" if data is not None else f"{Path(target) / 'config.yaml'}"
    if model.in_features is not None and model.in_features != ds.n_features:
        raise DataError(f"the model takes {model.in_features} inputs but data "
                        f"'{cfg['data']['name']}' ({where}) has {ds.n_features} features")
    if model.takes_images:
        ds = ds.as_images()
    try:
        model.output_shape(ds.input_shape)
    except ValueError as e:
        raise DataError(f"the model does not fit data '{cfg['data']['name']}' ({where}) "
                        f"(examples of shape {ds.input_shape}): {e}") from None
    classification = ds.task == "classification"
    splits = [split for split in ("train", "val", "test")
              if getattr(ds, f"X_{split}") is not None and len(getattr(ds, f"X_{split}"))
              and not (split == "train" and ds.X_test is not None)]
    if not splits:
        raise DataError("no examples to evaluate")
    last = splits[-1]
    width = int(np.prod(model.output_shape(ds.input_shape)))
    if classification and width > 1 and width != ds.n_classes:
        raise DataError(f"the model has {width} outputs but the data ({where}) has {ds.n_classes} "
                        f"classes: they do not fit")
    names = model.metadata.get("class_names") or ds.class_names
    from .core import _target_scale_of, scaled_target
    target_scale = None if classification else _target_scale_of(model)
    result = {}
    for split in splits:   # the figures of each split, and the details of the last one
        X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
        if target_scale is not None:   # the loss as training reported it: on the scaled target
            y = scaled_target(y, target_scale)
        try:
            result[split] = M.split_metrics(model, loss, X, y, ds.x_scale, classification, 1000,
                                            detail=split == last, n_classes=ds.n_classes,
                                            class_names=names, target_scale=target_scale)
        except ValueError as e:
            raise DataError(f"model and data do not fit: {e}") from None
    C = result[last].pop("confusion_matrix", None)
    if as_json:
        click.echo(json.dumps({"splits": result, "metrics_on": last}, indent=2, default=_plain_json))
        return
    for split, r in result.items():
        line = f"{split}_loss {r['loss']:.4f}"
        if "accuracy" in r:
            line += f"  {split}_accuracy {100 * r['accuracy']:.2f}%"
        click.echo(f"{line}  ({r['examples']} examples)")
    click.echo("")
    if classification:
        click.echo(f"per class, on the {last} split:")
        click.echo(M.format_report(result[last]["per_class"]))
        click.echo("")
        click.echo(M.format_confusion(C, names if names else None))
    else:
        g = result[last]["regression"]
        click.echo(f"on the {last} split: MAE {g['mae']:.6g}  RMSE {g['rmse']:.6g}  R² {g['r2']:.6g}  "
                   f"({g['n']} examples)")


def _plain_json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {value!r}")


# --- predict -----------------------------------------------------------------------------

@cli.command()
@click.argument("model_path", metavar="MODEL.npz", type=click.Path())
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="Write predictions to this .csv or .npy file.")
@click.option("--unknown", type=click.Choice(["error", "zeros"]), default=None,
              help="A table's category that training did not see: an error (the training "
                   "config's data.unknown, by default) or all-zero features.")
@click.option("--missing", type=click.Choice(["error", "drop"]), default=None,
              help="A table's row with an empty cell: an error, or left out (the output then "
                   "has a 'line' column saying which rows it predicts).")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def predict(model_path, input_path, out, unknown, missing, trust):
    """Predict with a trained model on INPUT (.npy or .csv, one example per row).

    Inputs are in the units of the training data (raw 0-255 pixels for MNIST); the model file
    records the scaling.  A model trained on a CSV table reads a raw CSV with the same columns
    (text columns encoded as in training; the target column may be there or not: when it is,
    the accuracy is printed on stderr).  Classifiers give the class, by its name in the
    training data, and its probabilities; regressors their values in the target's units,
    named after it.  The same as model.predict(INPUT) in Python.

    \b
    Examples:
      mlpjit predict runs/xor/model.npz points.csv
      mlpjit predict runs/mnist/model.npz digits.npy --out predictions.csv
      mlpjit predict runs/cancer/model.npz raw_test.csv --out predictions.csv --unknown zeros
    """
    from . import predicting as P
    from .io import atomic_write, atomic_write_text, check_out
    from .model import Sequential

    if out is not None:   # refused before any work: never the model, the input, or a device
        check_out(out, (".csv", ".npy"), inputs=(model_path, input_path))
    model = Sequential.load(model_path, trust=trust)
    meta = model.metadata
    source = input_path
    if meta.get("encoding") and P.input_file(input_path).suffix == ".csv" and P.has_header(input_path):
        source = Path(input_path)   # a table model reads the raw CSV: its columns encoded as in training
    elif meta.get("encoding") is None and (unknown or missing):
        option = "--unknown" if unknown else "--missing"
        raise ConfigError(f"{option}: only for a model trained on a table (CSV with a header); "
                          f"{model_path} was not")
    else:
        source = P.read_input(input_path)
    X, target, kept = P.inputs(model, source, label=str(input_path), unknown=unknown, missing=missing)
    out_raw = P.raw(model, X)
    lines = [["line"], *[[str(n)] for n in kept]] if kept is not None else None
    if kept is not None:
        click.echo(f"{input_path}: {len(kept)} rows predicted (rows with an empty cell left out, "
                   f"--missing drop; the 'line' column names each row's line)", err=True)
    if P.task_of(model) == "classification":
        probs = P.probabilities(model, out_raw)
        classes = P.classes(model, out_raw, names=False)
        names = meta.get("class_names")
        labels = [names[c] for c in classes] if names else list(classes)
        if target is not None:  # the file has the label column: say how many are right
            truth = [_label_value(v, names) for _, v in target]
            right = sum(str(t) == str(p) for t, p in zip(truth, labels))
            click.echo(f"accuracy on the {len(truth)} rows of {input_path}: "
                       f"{100 * right / len(truth):.2f}%", err=True)
        header = ["class"] + [f"p_{names[j] if names else j}" for j in range(probs.shape[1])]
        rows = [[str(lbl)] + [f"{p:.6g}" for p in prow] for lbl, prow in zip(labels, probs)]
        table = np.column_stack([classes, probs])
    else:
        values = P.output(model, out_raw)
        header = P.output_names(model, values.shape[1])
        rows = [[f"{v:.6g}" for v in r] for r in values]
        table = values
    if lines is not None:
        header = lines[0] + header
        rows = [a + b for a, b in zip(lines[1:], rows)]
        table = np.column_stack([np.asarray(kept), table])
    import csv
    import io as _io
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")   # names with commas, quotes or newlines are quoted
    writer.writerow(header)
    writer.writerows(rows)
    text = buf.getvalue()
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        if str(out).endswith(".npy"):
            atomic_write(out, lambda f: np.save(f, table))
        else:
            atomic_write_text(out, text)
    except OSError as e:
        raise DataError(f"--out {out}: cannot write ({e.strerror or e})") from None
    click.echo(f"wrote {len(rows)} predictions to {out}")


def _label_value(cell, names):
    """A target cell as the class name it stands for (numeric labels compare as numbers)."""
    if names and not isinstance(names[0], str):
        try:
            v = float(cell)
            return int(v) if v == int(v) else v
        except ValueError:
            return cell
    return cell


# --- export ------------------------------------------------------------------------------

def _model_file(target):
    """The model file of RUN_OR_MODEL: a run folder's model.npz, or the file itself."""
    path = Path(target)
    if path.is_dir():
        if not (path / "model.npz").is_file():
            raise ConfigError(f"{target}: no model.npz in this folder (has the run finished?)")
        return path / "model.npz"
    return path


@cli.command()
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="The file format.")
@click.option("--out", "-o", required=True, type=click.Path(), help="The file to write (.onnx).")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def export(target, fmt, out, trust):
    """Write a model as an ONNX file (opset 17), to run it elsewhere (onnxruntime, ...).

    RUN_OR_MODEL is a run folder (its model.npz) or a model file.  The file computes what
    mlpjit predict does, from the same raw inputs (the recorded input scaling is in the graph):
    'logits', 'probabilities' and 'classes' for a classifier, 'outputs' and 'values' (in the
    target's units) for a regressor.  Needs the onnx package: pip install "mlpjit[onnx]".

    \b
    Examples:
      mlpjit export runs/mnist_mlp-20261123-120000 -o mnist.onnx
      mlpjit export runs/xor/model.npz --format onnx -o xor.onnx
    """
    from .export import OPSET, require_onnx, to_onnx
    from .io import check_out
    from .model import Sequential

    model_path = _model_file(target)
    check_out(out, (".onnx",), inputs=(model_path, target))   # never the model, a folder or a device
    require_onnx()   # a missing package is said before any work
    model = Sequential.load(model_path, trust=trust)
    path = to_onnx(model, out)
    click.echo(f"wrote {out} ({-(-path.stat().st_size // 1024)} KiB, opset {OPSET})")


# --- gradcheck -----------------------------------------------------------------------------

@cli.command()
@click.argument("config", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config key.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1), help="Examples in the batch.")
@click.option("--max-checks", default=64, show_default=True, type=click.IntRange(min=1),
              help="Elements checked per parameter (chosen at random).")
@click.option("--tolerance", default=1e-5, show_default=True, type=float, help="Largest error that passes.")
@click.option("--jitter", default=0.05, show_default=True, type=click.FloatRange(min=0),
              help="Std of Gaussian noise added to the batch (0: the data as it is).")
def gradcheck(config, overrides, batch, max_checks, tolerance, jitter):
    """Finite-difference check of the configured model on a small batch of its data.

    Prints the worst relative error per parameter (float64 central differences)
    and exits 1 if any exceeds the tolerance.  The batch gets a little noise
    (--jitter): on raw data such as MNIST's blank borders many ReLU inputs are
    exactly 0 and many max-pool windows are ties, points where a derivative is
    one-sided and no finite difference can confirm it.

    \b
    Example:
      mlpjit gradcheck mnist_mlp
    """
    from .data import load_dataset
    from .gradcheck import gradcheck as _gradcheck
    from .trainer import model_for_data

    cfg = _load(config, overrides)
    cfg["dtype"] = "float64"
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    model, loss, ds = model_for_data(cfg, ds)
    n = min(batch, ds.n_train)
    X = ds.scaled(ds.X_train[:n])
    if jitter > 0:
        X = X + np.random.default_rng(cfg["seed"]).normal(0.0, jitter, X.shape)
    y = ds.y_train[:n]
    errors = _gradcheck(model, loss, X, y, max_checks=max_checks, training=True)
    worst = max(errors.values())
    for name, err in errors.items():
        flag = "" if err <= tolerance else "   <-- above tolerance"
        click.echo(f"{name:>10}  {err:.2e}{flag}")
    click.echo(f"worst relative error {worst:.2e} ({'OK' if worst <= tolerance else 'FAILED'}, "
               f"tolerance {tolerance:g}, batch {n}"
               + (f" with noise of std {jitter:g}" if jitter > 0 else "") + ", float64 central differences)")
    if worst > tolerance:
        sys.exit(1)


# --- config ----------------------------------------------------------------------------

@cli.group()
def config():
    """List the shipped configs, show or check a config file (a path, or a shipped config's name).

    \b
    Examples:
      mlpjit config list
      mlpjit config show mnist_mlp
      mlpjit config check spirals --set optimizer.lr=0.1
    """


@config.command("list")
def config_list():
    """List the configs that ship with mlpjit, by name (mlpjit train NAME trains one).

    \b
    Examples:
      mlpjit config list
      mlpjit train mnist_mlp
      mlpjit config show mnist_cnn
    """
    from .packaged import describe, shipped_configs
    configs = shipped_configs()
    if not configs:
        from .packaged import CONFIGS
        raise ConfigError(f"no shipped configs: {CONFIGS} is missing (a broken install: reinstall mlpjit)")
    width = max(len(n) for n in configs)
    for name, path in configs.items():
        click.echo(f"{name:<{width}}  {describe(path)}")


@config.command("show", cls=_RegistryHelp)
@click.argument("config_path", metavar="CONFIG", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config key.")
def config_show(config_path, overrides):
    """Print the resolved config with every default filled in.

    \b
    Examples:
      mlpjit config show xor
      mlpjit config show mnist_mlp --set optimizer.type=adam
    """
    from .config import dump_yaml, load_config
    click.echo(dump_yaml(load_config(config_path, overrides)), nl=False)


@config.command("check", cls=_RegistryHelp)
@click.argument("config_path", metavar="CONFIG", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config key.")
def config_check(config_path, overrides):
    """Validate a config (keys, values, data files, model against data) without training.

    \b
    Examples:
      mlpjit config check mnist_mlp
      mlpjit config check xor --set model.layers.0.units=8
    """
    from .data import load_dataset
    from .trainer import model_for_data

    from .explain import check_run
    from .resources import fmt_bytes
    from .trainer import make_optimizer_from

    cfg = _load(config_path, overrides)
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    model, loss, ds = model_for_data(cfg, ds)
    opt = make_optimizer_from(cfg, model)
    bs = cfg["train"]["batch_size"]
    need = check_run(ds, model, opt, ds.n_train if bs == "full" else min(int(bs), ds.n_train), loss)
    click.echo(f"{config_path}: OK ({ds.n_train} training examples, {model.n_params:,} parameters, "
               f"about {fmt_bytes(need)} of memory to train)")


# --- explain ---------------------------------------------------------------------------------

def _config_or_run(target, overrides=(), trust=()):
    """(resolved config, run folder or None) from a config file or a run folder."""
    path = Path(target)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: not a run folder (no config.yaml)")
        return _load(path / "config.yaml", overrides, trust=list(trust)), path
    return _load(target, overrides), None


def _model_for(target, overrides, trust=()):
    """(cfg, model, loss, dataset) of a config (fresh weights) or a run folder (its model)."""
    from .data import load_dataset
    from .model import Sequential
    from .trainer import model_for_data
    cfg, run = _config_or_run(target, overrides, trust)
    ds = load_dataset(dict(cfg["data"]), cfg["seed"])
    model, loss, ds = model_for_data(cfg, ds)
    if run is not None:
        path = run / "model.npz" if (run / "model.npz").is_file() else None
        if path is None:
            raise ConfigError(f"{run}: no model.npz in this folder (has the run finished?)")
        trained = Sequential.load(path, trust=trust)
        try:
            model.load_state_arrays(trained.state_arrays(), source=str(path))
        except MlpjitError as e:
            raise ConfigError(f"{path}: does not match {run / 'config.yaml'} ({e})") from None
    return cfg, model, loss, ds


def _batch_of(cfg, ds, batch):
    if batch is not None:
        return batch
    bs = cfg["train"]["batch_size"]
    return ds.n_train if bs == "full" else min(int(bs), ds.n_train)


@cli.command(cls=_RegistryHelp)
@click.argument("target", metavar="CONFIG|RUN_DIR", type=click.Path())
@click.option("--batch", type=click.IntRange(min=1), help="Batch size the shapes are shown for (default: the config's).")
@click.option("--markdown", is_flag=True, help="Markdown instead of plain text (for notes).")
@click.option("--step", is_flag=True,
              help="Print the Python source of the compiled training step generated for the model instead.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config key.")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def explain(target, batch, markdown, step, overrides, trust):
    """Explain a model: each layer's equations with your shapes, parameters, multiply-adds and
    memory; the totals; the loss and the update rule.

    With --step, the compiled training step instead: it is generated from the layers' own
    kernels, one straight-line function per model structure, and printed as it runs (nothing
    is compiled).

    \b
    Examples:
      mlpjit explain mnist_mlp
      mlpjit explain mnist_cnn --batch 1 --markdown
      mlpjit explain runs/mnist_mlp-20261123-120000 --step
    """
    from .explain import render, summary
    from .step import step_source
    from .trainer import make_optimizer_from

    cfg, model, loss, ds = _model_for(target, overrides, trust)
    opt = make_optimizer_from(cfg, model)
    bs = _batch_of(cfg, ds, batch)
    if step:
        click.echo(step_source(model, loss, opt, bs, ds.input_shape, cfg.get("clip"), ds.task), nl=False)
        return
    info = summary(model, loss, opt, ds.input_shape, bs, ds.n_train, cfg.get("schedule"), cfg.get("clip"))
    click.echo(render(info, markdown=markdown), nl=False)


@cli.command()
@click.argument("target", metavar="CONFIG|RUN_DIR", type=click.Path())
@click.option("--example", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the training example to trace.")
@click.option("--batch", type=click.IntRange(min=1), help="Trace this many examples from --example on, as one batch.")
@click.option("--precision", type=click.IntRange(min=1, max=17), default=6, show_default=True,
              help="Significant digits printed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a config key.")
@click.option("--trust", multiple=True, metavar="MODULE",
              help="Allow the model or run folder to use layers from this module, which is then "
                   "imported (a file never imports code by itself; see docs/writing-a-layer.md).")
def trace(target, example, batch, precision, overrides, trust):
    """One forward and backward pass on one training example, every array by its name.

    Prints, layer by layer, X, M, S, Y going forward; the loss and dY; then dS, db, dA, dX going
    back — whole when small, summarised (shape, min, max, norm, a corner) when large — and then
    the central-difference check of every parameter's gradient for that example (float64).  A
    run folder traces its trained model, a config the model as it starts.

    \b
    Examples:
      mlpjit trace xor
      mlpjit trace runs/mnist_mlp-20261123-120000 --example 7 --precision 4
    """
    from .trace import trace_text

    cfg, model, loss, ds = _model_for(target, overrides, trust)
    n = 1 if batch is None else batch
    if example + n > ds.n_train:
        raise ConfigError(f"--example {example}" + (f" --batch {batch}" if batch else "")
                          + f": the training split has {ds.n_train} examples (0..{ds.n_train - 1})")
    click.echo(trace_text(model, loss, ds, example, n, precision), nl=False)


# --- experiments -------------------------------------------------------------------------

@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where EXPERIMENTS.md, docs/experiments/ and runs/experiments/ go.")
@click.option("--quick", is_flag=True, help="Shortened budgets, layer by layer (a smoke test; not the reference figures).")
@click.option("--list", "list_", is_flag=True, help="List the experiments and exit.")
@click.option("--max-time", metavar="DURATION",
              help="Stop training after this long (e.g. 50m, 2h), checkpoint kept; the same command "
                   "continues (exit 75).")
def reproduce(names, out, quick, list_, max_time):
    """Run the experiments (fifteen classic claims, two papers' tables) and regenerate EXPERIMENTS.md.

    Each experiment trains from configs/experiments/, writes its figures to
    docs/experiments/ and its result to docs/experiments/NAME.json; EXPERIMENTS.md is
    rebuilt from every stored result, so running one experiment keeps the others.

    \b
    Examples:
      mlpjit reproduce                 # all of them (about an hour)
      mlpjit reproduce xor vanishing   # just these two
      mlpjit reproduce glorot srivastava --quick   # the papers, at a smoke-test scale
      mlpjit reproduce srivastava --max-time 1h    # a long table in pieces
      mlpjit reproduce --list
    """
    from . import experiments
    from .core import Stopped

    if list_:
        experiments.names()
        for name, (title, claim, _) in experiments.EXPERIMENTS.items():
            click.echo(f"{name:16} {title}")
        return
    seconds = _max_time_seconds(max_time)
    from .plot import _matplotlib
    _matplotlib()   # the experiments draw figures: say so before training, not after
    try:
        experiments.reproduce(names or None, out=Path(out), quick=quick, log=click.echo, max_time=seconds)
    except Stopped as e:
        again = ["mlpjit", "reproduce", *names, *(["--out", out] if out != "." else []),
                 *(["--quick"] if quick else []), "--max-time", max_time]
        click.echo(f"wrote {Path(out) / 'EXPERIMENTS.md'}")
        click.echo(f"{e}; continue with: {shlex.join(again)}", err=True)
        sys.exit(e.code)
    click.echo(f"wrote {Path(out) / 'EXPERIMENTS.md'}")
    kinds = experiments.stored_kinds(Path(out))
    for kind in ("full", "quick", "partial"):
        if kinds.get(kind):
            click.echo(f"  {kind:8} {', '.join(kinds[kind])}")


def _register_extra_commands():
    from .plot import plot
    from .report import report
    from .sweep import sweep
    cli.add_command(sweep)
    cli.add_command(plot)
    cli.add_command(report)


_register_extra_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
