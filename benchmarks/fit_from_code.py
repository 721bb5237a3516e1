"""A shipped config's run from code, with ``model.fit``: the same data, model, seed and settings as
``mlpjit train CONFIG``, to time the two side by side (they share one training core).

    python benchmarks/fit_from_code.py mnist_mlp --epochs 2
    farm-bench -n 3 --timeout 900 -- .venv/bin/python benchmarks/fit_from_code.py mnist_mlp --epochs 2 \
        --vs "sh -c 'rm -rf /tmp/fb && exec .venv/bin/mlpjit train mnist_mlp --epochs 2 -q --out /tmp/fb'"

Prints the seconds of the fit (first batch to last epoch) and the final figures.
"""

import argparse
import sys
import time


def main(argv=None):
    t0 = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a config file or a shipped config's name (mnist_mlp)")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    from mlpjit.config import load_config, resolved_dict
    from mlpjit.data import load_dataset
    from mlpjit.errors import MlpjitError
    from mlpjit.trainer import model_for_data
    try:
        cfg = resolved_dict(load_config(args.config))
        if args.epochs is not None:
            if args.epochs < 1:
                raise MlpjitError(f"--epochs must be >= 1 (got {args.epochs})")
            cfg["train"]["epochs"] = args.epochs
    except MlpjitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = load_dataset(dict(cfg["data"]), cfg["seed"])
    model, _, data = model_for_data(cfg, data)            # the config's initial weights
    train = cfg["train"]

    def inputs(X):   # what a user passes: the model's floats (MNIST's pixels scaled to [0, 1])
        if X is None:
            return None
        out = X.astype(model.dtype)
        out *= model.dtype.type(data.x_scale)
        return out
    X, X_val, X_test = inputs(data.X_train), inputs(data.X_val), inputs(data.X_test)
    t1 = time.perf_counter()
    history = model.fit(X, data.y_train, loss=cfg["loss"], optimizer=cfg["optimizer"],
                        schedule=cfg["schedule"], clip=cfg["clip"], epochs=train["epochs"],
                        batch_size=train["batch_size"], shuffle=train["shuffle"], threads=train["threads"],
                        validation_data=None if X_val is None else (X_val, data.y_val),
                        early_stopping=train["early_stopping"], seed=cfg["seed"], progress=False)
    t2 = time.perf_counter()
    test = model.evaluate(X_test, data.y_test) if X_test is not None else {}
    print(f"fit: {len(history.epoch)} epochs in {t2 - t1:.2f} s (compiled: {history.compiled}); "
          f"set-up {t1 - t0:.2f} s; last {history.rows[-1].get('val_loss', history.rows[-1]['train_loss']):.4f}; "
          f"test {test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
