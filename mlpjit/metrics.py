"""Per-class and regression metrics (math.md §9), as scikit-learn defines them.

Classification, from the confusion matrix C (rows: the true class, columns: the predicted one):

    precision_k = C_kk / Σᵢ C_ik      recall_k = C_kk / Σⱼ C_kj      F1_k = 2·P·R/(P + R)
    support_k = Σⱼ C_kj               accuracy = trace(C) / ΣC

(a ratio with nothing to divide is 0, as scikit-learn's ``zero_division=0``); the macro average
is the plain mean over the classes, the weighted average weighs each class by its support, as
in ``sklearn.metrics.classification_report``.

Regression: MAE = mean|y − ŷ|, RMSE = √mean(y − ŷ)², R² = 1 − Σ(y − ŷ)²/Σ(y − ȳ)² (over all
outputs together; R² is 1 for a perfect fit of a constant target and 0 otherwise, as
scikit-learn's ``force_finite``).
"""

from __future__ import annotations

import numpy as np

from .kernels import misc as KM

__all__ = ["split_metrics", "confusion_matrix", "classification_report", "regression_metrics",
           "predictions", "format_report"]


def confusion_matrix(y_true, y_pred, n_classes):
    """C[i, j] = number of examples of class i predicted as j (int64, n_classes × n_classes)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    C = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(C, (y_true, y_pred), 1)
    return C


def _div(a, b):
    return float(a) / float(b) if b else 0.0


def classification_report(C, names=None):
    """The per-class table of a confusion matrix: {"classes": [{"class", "precision", "recall",
    "f1", "support"}, ...], "accuracy", "macro avg", "weighted avg", "confusion_matrix"}."""
    C = np.asarray(C, dtype=np.int64)
    k = C.shape[0]
    names = list(names) if names is not None else list(range(k))
    rows = []
    for j in range(k):
        tp = C[j, j]
        p = _div(tp, C[:, j].sum())
        r = _div(tp, C[j, :].sum())
        f = _div(2 * p * r, p + r)
        rows.append({"class": names[j], "precision": p, "recall": r, "f1": f,
                     "support": int(C[j, :].sum())})
    total = int(C.sum())
    support = np.array([row["support"] for row in rows], dtype=np.float64)

    def avg(key, weights):
        values = np.array([row[key] for row in rows])
        return float(np.average(values, weights=weights)) if weights.sum() else 0.0
    report = {"classes": rows, "accuracy": _div(np.trace(C), total),
              "macro avg": {key: float(np.mean([row[key] for row in rows])) for key in ("precision", "recall", "f1")},
              "weighted avg": {key: avg(key, support) for key in ("precision", "recall", "f1")},
              "support": total, "confusion_matrix": C.tolist()}
    report["macro avg"]["support"] = report["weighted avg"]["support"] = total
    return report


def regression_metrics(y_true, y_pred):
    """{"mae", "rmse", "r2", "n"} over all outputs."""
    y = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(y.shape)
    err = y - p
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "r2": r2, "n": int(y.shape[0])}


def split_metrics(model, loss, X, y, x_scale=1.0, classification=True, batch_size=1000, detail=False,
                  n_classes=None, class_names=None, target_scale=None):
    """The figures of a split (X, y), in prediction mode, in batches of ``batch_size``:
    ``{"loss", "accuracy" (classification), "examples"}``; with ``detail`` also, for
    classification, ``"confusion_matrix"`` (``n_classes`` × ``n_classes``) and ``"per_class"``
    (:func:`classification_report`, rows named by ``class_names``), for regression
    ``"regression"`` (:func:`regression_metrics`).  The one function behind the epochs'
    ``val_*``/``test_*`` figures, ``summary.json``, ``mlpjit evaluate``, the report and
    ``model.evaluate``.  ``target_scale``: (mean, scale) of a regression target trained scaled
    (``y`` is then scaled too): the loss stays in the scaled units, the detail's MAE, RMSE and
    R² are in the target's units."""
    n = X.shape[0]
    rows = X.reshape(n, -1)  # images (N, C, H, W) are gathered as rows, then viewed as images
    buf = np.empty((min(batch_size, n), rows.shape[1]), model.dtype)
    total, correct, outs = 0.0, 0, []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        xb = buf[: idx.size]
        KM.gather_rows(rows, idx, x_scale, xb)
        out = model.forward(xb.reshape((idx.size,) + X.shape[1:]), training=False)
        yb = y[start:start + idx.size]
        total += loss.forward(out, yb) * idx.size
        if classification:
            correct += KM.count_correct(out, yb, loss.pred_rule(out.shape[1]))
        if detail:
            outs.append(np.array(out, dtype=np.float64))
    result = {"loss": total / n, "examples": int(n)}
    if classification:
        result["accuracy"] = correct / n
    if detail:
        out = np.concatenate(outs)
        if classification:
            C = confusion_matrix(y, loss.predict_classes(out), n_classes)
            result["confusion_matrix"] = C
            result["per_class"] = classification_report(C, class_names or list(range(n_classes)))
        elif target_scale is not None:
            m, sc = target_scale
            result["regression"] = regression_metrics(np.asarray(y, np.float64) * sc + m, out * sc + m)
        else:
            result["regression"] = regression_metrics(y, out)
    return result


def predictions(model, loss, X, x_scale=1.0, batch_size=1000):
    """The model's outputs for X (in prediction mode, in batches), as float64."""
    rows = X.reshape(len(X), -1)
    out = []
    buf = np.empty((min(batch_size, len(X)), rows.shape[1]), model.dtype)
    for start in range(0, len(X), batch_size):
        idx = np.arange(start, min(start + batch_size, len(X)))
        xb = buf[: idx.size]
        KM.gather_rows(rows, idx, x_scale, xb)
        out.append(np.array(model.forward(xb.reshape((idx.size,) + X.shape[1:]), training=False),
                            dtype=np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))


def format_report(report, digits=4):
    """The table as scikit-learn's ``classification_report`` prints it."""
    names = [str(row["class"]) for row in report["classes"]]
    width = max([len(n) for n in names] + [len("weighted avg")])
    head = " " * width + "  precision    recall  f1-score   support"
    lines = [head, ""]
    fmt = f"{{:>{width}}}  {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9}}"
    for name, row in zip(names, report["classes"]):
        lines.append(fmt.format(name, row["precision"], row["recall"], row["f1"], row["support"]))
    lines.append("")
    lines.append(f"{{:>{width}}}  {{:>9}} {{:>9}} {{:>9.{digits}f}} {{:>9}}".format(
        "accuracy", "", "", report["accuracy"], report["support"]))
    for key in ("macro avg", "weighted avg"):
        r = report[key]
        lines.append(fmt.format(key, r["precision"], r["recall"], r["f1"], r["support"]))
    return "\n".join(lines)


def format_confusion(C, names=None):
    """The confusion matrix with the class names, rows true, columns predicted."""
    C = np.asarray(C)
    names = [str(n) for n in (names if names is not None else range(len(C)))]
    w = max(max(len(n) for n in names), len(str(int(C.max()) if C.size else 0)), 4)
    head = " " * (w + 7) + " ".join(f"{n:>{w}}" for n in names)
    lines = ["confusion matrix (rows: true class, columns: predicted)", head]
    for name, row in zip(names, C):
        lines.append(f"true {name:>{w}}  " + " ".join(f"{int(v):>{w}}" for v in row))
    return "\n".join(lines)
