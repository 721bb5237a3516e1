"""scikit-learn estimators on mlpjit's layers and compiled step: ``MLPClassifier``, ``MLPRegressor``.

A change of import is the switch::

    from mlpjit.sklearn import MLPClassifier      # instead of sklearn.neural_network
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)
    mlpjit.sklearn.save(clf, "model.npz")         # scaler + network in one model file

Every parameter of scikit-learn's MLP is there, by the same name, with the same default and
meaning: ``hidden_layer_sizes``, ``activation`` (identity, logistic, tanh, relu), ``solver``,
``alpha``, ``batch_size`` ("auto" = min(200, n)), ``learning_rate``, ``learning_rate_init``,
``power_t``, ``max_iter``, ``shuffle``, ``random_state``, ``tol``, ``verbose``, ``warm_start``,
``momentum``, ``nesterovs_momentum``, ``early_stopping``, ``validation_fraction``, ``beta_1``,
``beta_2``, ``epsilon``, ``n_iter_no_change``, ``max_fun`` and the regressor's ``loss``; the
values mlpjit cannot train with are refused by ``fit`` in one ValueError line naming the
parameter: ``solver="lbfgs"`` (use "adam" or "sgd"), ``loss="poisson"``, ``momentum=1`` with
sgd.  ``max_fun`` is lbfgs's only, so (as in scikit-learn) it is checked and has no effect.
mlpjit's own: ``clip_norm`` (global gradient clipping), ``dropout`` (after each hidden layer)
and ``dtype`` (None: float32 data trains in float32, anything else in float64, as
scikit-learn's MLP).  The fitted attributes are its MLP's: ``coefs_``, ``intercepts_``,
``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``,
``n_iter_``, ``t_``, ``classes_``, ``n_features_in_``, ``feature_names_in_``, ``n_layers_``,
``n_outputs_``, ``out_activation_``.

How it trains: a :class:`~mlpjit.Sequential` of :class:`~mlpjit.Dense` layers (Glorot-uniform
weights, zero biases), the loss of scikit-learn's MLP (softmax cross-entropy for several
classes, the logistic loss for two classes and for multilabel targets, half the squared error
for regression), trained epoch by epoch in the compiled step (:mod:`mlpjit.step`).  ``alpha``
is L2 regularization as weight decay alpha/batch_size on every parameter (scikit-learn adds
alpha·W/n_batch to the weights' gradients only; biases are decayed here too).  Stopping is
scikit-learn's: training loss (or, with ``early_stopping``, the validation score) not improving
by ``tol`` for more than ``n_iter_no_change`` epochs in a row; ``ConvergenceWarning`` when
``max_iter`` ends first.

The learning rate η of an epoch, with ``solver="sgd"`` (adam ignores ``learning_rate``, as
scikit-learn does), is set after each epoch as scikit-learn's ``SGDOptimizer`` sets it:

* ``"constant"``:   η = learning_rate_init;
* ``"invscaling"``: η = learning_rate_init / (t + 1)^power_t, t = ``t_`` = the training samples
  seen so far (n per epoch), so the first epoch trains at learning_rate_init;
* ``"adaptive"``:   where the stopping rule above would stop, η ← η/5 instead and the count
  starts again; training stops once η ≤ 1e-6 when the rule fires.

``fit`` starts from learning_rate_init; ``partial_fit`` goes on from the rate the previous call
left.  (SGD's velocity here is torch's, v ← μv + g, θ ← θ − ηv: after η changes the momentum's
past gradients are taken at the new rate, scikit-learn's at the rates they were added with.)

:func:`save` (or the estimator's ``save(path)``) writes an mlpjit model file that
``mlpjit evaluate``, ``mlpjit predict`` and :meth:`mlpjit.Sequential.load` read: a fitted
estimator, or a fitted ``Pipeline`` of one per-feature scaler and the estimator, the scaler
becoming the model's first layer (``standardize``).
scikit-learn is an optional extra: ``pip install "mlpjit[sklearn]"``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelBinarizer, MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as e:  # pragma: no cover - the optional extra is missing
    raise ImportError(f"mlpjit.sklearn needs scikit-learn ({e}); install it with: "
                      f'pip install "mlpjit[sklearn]"') from None

from . import losses as _losses
from .layers import Dense, Dropout, Standardize
from .model import Sequential
from .optim import SGD, Adam
from .data import Dataset
from .errors import TrainingDiverged
from .core import TrainingCore

__all__ = ["MLPClassifier", "MLPRegressor", "save"]

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_MIN_ADAPTIVE_LR = 1e-6     # "adaptive" stops once the rate is this small (scikit-learn's)


def _bad(est, name, expected, value):
    return ValueError(f"The '{name}' parameter of {type(est).__name__} must be {expected}. "
                      f"Got {value!r} instead.")


def _real(est, name, lo=None, hi=None, lo_open=False, hi_open=False):
    v = getattr(est, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise _bad(est, name, "a float" + _range(lo, hi, lo_open, hi_open), v)
    if (lo is not None and (v < lo or (lo_open and v == lo))) or \
            (hi is not None and (v > hi or (hi_open and v == hi))):
        raise _bad(est, name, "a float" + _range(lo, hi, lo_open, hi_open), v)
    return float(v)


def _range(lo, hi, lo_open, hi_open):
    a = "(" if lo_open or lo is None else "["
    b = ")" if hi_open or hi is None else "]"
    return f" in the range {a}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{b}"


def _int(est, name, lo, inf=False):
    """An int >= lo (or, with ``inf``, float('inf') too: "never")."""
    v = getattr(est, name)
    if inf and isinstance(v, numbers.Real) and not isinstance(v, bool) and v == math.inf:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise _bad(est, name, f"an int in the range [{lo}, inf)" + (" or inf" if inf else ""), v)
    return int(v)


def _among(est, name, options):
    v = getattr(est, name)
    if not isinstance(v, str) or v not in options:
        raise _bad(est, name, "a str among {" + ", ".join(repr(o) for o in options) + "}", v)
    return v


def _seed(random_state):
    """An int seed for mlpjit's generators from scikit-learn's random_state (None: fresh)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state) % (2 ** 32)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2 ** 31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2 ** 31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}")


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: validation, the model, the epoch loop."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, clip_norm=None, dropout=0.0, dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.clip_norm = clip_norm
        self.dropout = dropout
        self.dtype = dtype

    # --- parameters, checked at fit time (scikit-learn's own messages) --------------------------
    def _check_params(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes) \
                or any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        _among(self, "activation", tuple(_ACTIVATIONS))
        if self.solver == "lbfgs":
            raise ValueError(f"The 'solver' parameter of {type(self).__name__}: 'lbfgs' is not offered "
                             f"by mlpjit.sklearn (it trains in mini-batches in the compiled step); use "
                             f"solver='adam' or 'sgd', or scikit-learn's own MLP for lbfgs.")
        _among(self, "solver", ("adam", "sgd"))
        _real(self, "alpha", 0.0)
        if self.batch_size != "auto":
            _int(self, "batch_size", 1)
        _among(self, "learning_rate", _LEARNING_RATES)
        _real(self, "learning_rate_init", 0.0, lo_open=True)
        _real(self, "power_t", 0.0)
        _int(self, "max_iter", 1)
        _real(self, "tol", 0.0)
        _real(self, "momentum", 0.0, 1.0)
        if self.solver == "sgd" and self.momentum == 1.0:
            raise ValueError(f"The 'momentum' parameter of {type(self).__name__} must be < 1 with "
                             f"solver='sgd' in mlpjit.sklearn (a velocity that never decays). Got "
                             f"{self.momentum!r} instead.")
        _real(self, "validation_fraction", 0.0, 1.0, hi_open=True)
        for name in ("beta_1", "beta_2"):
            _real(self, name, 0.0, 1.0, hi_open=True)
        _real(self, "epsilon", 0.0, lo_open=True)
        _int(self, "n_iter_no_change", 1, inf=True)
        _int(self, "max_fun", 1)       # lbfgs's: checked as scikit-learn checks it, otherwise unused
        self._check_loss()
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise _bad(self, name, "an instance of 'bool'", getattr(self, name))
        if self.clip_norm is not None:
            _real(self, "clip_norm", 0.0, lo_open=True)
        _real(self, "dropout", 0.0, 1.0, hi_open=True)
        if self.dtype not in (None, "float32", "float64", np.float32, np.float64):
            raise _bad(self, "dtype", "None, 'float32' or 'float64'", self.dtype)
        return [int(s) for s in sizes]

    def _check_loss(self):
        """The regressor's ``loss``; the classifier has none to choose."""

    def _model_dtype(self, X):
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    # --- the model -------------------------------------------------------------------------------
    def _build(self, sizes, n_in, n_out, seed, dtype):
        layers = []
        init_seeds = np.random.SeedSequence(seed).spawn(len(sizes) + 1)
        drop_seeds = np.random.SeedSequence([seed, 1]).spawn(len(sizes))
        act = _ACTIVATIONS[self.activation]
        width = n_in
        for i, s in enumerate(sizes):
            layers.append(Dense(width, s, activation=act, dtype=dtype, rng=np.random.default_rng(init_seeds[i])))
            if self.dropout > 0:
                layers.append(Dropout(self.dropout, seed=np.random.default_rng(drop_seeds[i])))
            width = s
        layers.append(Dense(width, n_out, dtype=dtype, rng=np.random.default_rng(init_seeds[-1])))
        return Sequential(layers)

    def _optimizer(self, model, batch_size):
        decay = self.alpha / batch_size
        if self.solver == "sgd":
            return SGD(model.parameters(), lr=self.learning_rate_init, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0), weight_decay=decay)
        return Adam(model.parameters(), lr=self.learning_rate_init, beta1=self.beta_1,
                    beta2=self.beta_2, eps=self.epsilon, weight_decay=decay)

    @property
    def coefs_(self):
        check_is_fitted(self, "_model")
        return [layer.A for layer in self._model.layers if isinstance(layer, Dense)]

    @property
    def intercepts_(self):
        check_is_fitted(self, "_model")
        return [layer.b for layer in self._model.layers if isinstance(layer, Dense)]

    def _forward(self, X):
        """The model's raw outputs (logits, or values) for X, in prediction mode."""
        X = np.ascontiguousarray(X, dtype=self._model.dtype)
        # the layers' raw outputs (scikit-learn applies its own output rule); X is validated
        # and cast above, so the prediction path's input checks are not repeated
        from .predicting import raw
        return np.asarray(raw(self._model, X), dtype=np.float64)

    # --- training ----------------------------------------------------------------------------------
    def _fit(self, X, y, incremental, classes=None):
        sizes = self._check_params()
        first = not hasattr(self, "_model") or (not self.warm_start and not incremental)
        X, Y = (self._validate_input(X, y, incremental, reset=first, classes=classes)
                if classes is not None else self._validate_input(X, y, incremental, reset=first))
        X = X.toarray() if hasattr(X, "toarray") else X
        dtype = self._model_dtype(X) if first else self._model.dtype
        n, d = X.shape
        if first:
            self._seed = _seed(self.random_state)
            n_out = Y.shape[1]
            self._model = self._build(sizes, d, n_out, self._seed, dtype)
            self._rng = np.random.default_rng(np.random.SeedSequence([self._seed, 2]))
            self.n_outputs_ = n_out
            self.n_layers_ = len(sizes) + 2
            self.out_activation_ = self._out_activation()
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self._opt = None
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_ = None
                self.best_validation_score_ = None
                self.best_loss_ = np.inf
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X = np.ascontiguousarray(X, dtype=dtype)
        if not X.flags.writeable:
            X = X.copy()
        X_val = Y_val = None
        if self.early_stopping:
            stratify = Y.argmax(axis=1) if (is_classifier(self) and self._kind == "multiclass") else (
                Y[:, 0] if is_classifier(self) and self._kind == "binary" else None)
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=self._seed % (2 ** 31),
                                                  test_size=self.validation_fraction, stratify=stratify)
            X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
        n = X.shape[0]
        batch_size = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                          "to be clipped")
            batch_size = n
        if self._opt is None or not (incremental or self.warm_start):
            self._opt = self._optimizer(self._model, batch_size)
        if not incremental or not hasattr(self, "_lr"):
            self._lr = float(self.learning_rate_init)   # fit starts here; partial_fit goes on
        loss, task, targets = self._loss_and_targets(Y)
        trainer = self._trainer(X, targets, task, batch_size, 1 if incremental else self.max_iter,
                                X_val, Y_val)
        try:
            trainer.fit()
        except TrainingDiverged:
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.") from None
        if self.early_stopping and getattr(self, "_best", None) is not None:
            for p, best in zip([p for _, p, _ in self._model.parameters()], self._best):
                p[...] = best
        if not all(np.isfinite(p).all() for _, p, _ in self._model.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _trainer(self, X, targets, task, batch_size, epochs, X_val, Y_val):
        """mlpjit's training core (:class:`~mlpjit.core.TrainingCore`) on these arrays: the
        estimator's model, optimizer and generator of the epochs' orders carry on between calls;
        scikit-learn's bookkeeping and stopping rule run after each epoch (:meth:`_after_epoch`)."""
        cfg = {"name": "sklearn", "seed": self._seed, "dtype": np.dtype(self._model.dtype).name,
               "data": {"name": "arrays", "scale_target": False},     # y as given (scikit-learn's loss)
               "model": {"layers": self._model.get_config()["layers"]},
               "loss": self._loss_name, "optimizer": {"type": self.solver, "lr": self._lr},
               "schedule": {"type": "constant"},
               "clip": {"norm": float(self.clip_norm)} if self.clip_norm is not None else None,
               "train": {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(self.shuffle),
                         "eval_batch_size": 1000, "probe_rows": 0, "probe_every": 0,
                         "early_stopping": None, "compiled": True, "threads": 1}}
        k = len(self.classes_) if task == "classification" else None
        data = Dataset("sklearn", task, X, targets, None, None, None, None, k)

        def after_epoch(trainer, row):
            self._after_epoch(trainer, row, batch_size, X_val, Y_val, epochs == 1)

        trainer = TrainingCore(cfg, None, data, lambda *a: None, False, model=self._model,
                               optimizer=self._opt, shuffle_rng=self._rng, callbacks=[after_epoch])
        trainer.adapt_first = False
        return trainer

    def _after_epoch(self, trainer, row, batch_size, X_val, Y_val, incremental):
        """scikit-learn's end of an epoch (``_fit_stochastic``): loss, counters, the stopping
        rule and the learning rate of the next epoch (see the module docstring)."""
        penalty = 0.5 * self.alpha * sum(float(np.dot(c.ravel(), c.ravel())) for c in self.coefs_)
        self.loss_ = row["train_loss"] + penalty / batch_size
        self.n_iter_ += 1
        self.t_ += trainer.data.n_train
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(X_val, Y_val)
        schedule = self.learning_rate if self.solver == "sgd" else "constant"   # adam: ignored
        if schedule == "invscaling":          # η = η₀/(t + 1)^power_t, t = samples seen
            self._set_lr(trainer, self.learning_rate_init / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if schedule == "adaptive" and self._lr > _MIN_ADAPTIVE_LR:
                self._set_lr(trainer, self._lr / 5.0)   # η ← η/5, and the count starts again
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{msg} Setting learning rate to {self._lr:f}")
            else:
                if self.verbose:
                    print(msg + (" Learning rate too small." if schedule == "adaptive" else "") + " Stopping.")
                trainer.stop_training = not incremental
                return
        if not incremental and trainer.epoch == self.max_iter:   # this call's epochs, as sklearn's n_iter_
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning)

    def _set_lr(self, trainer, lr):
        """The learning rate of the next epochs (the core reads its config's at each epoch)."""
        self._lr = float(lr)
        trainer.cfg["optimizer"]["lr"] = self._lr

    def _update_no_improvement_count(self, X_val, Y_val):
        if self.early_stopping:
            score = self._val_score(X_val, Y_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best = [p.copy() for _, p, _ in self._model.parameters()]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def fit(self, X, y):
        """Fit the model to data matrix X and target(s) y; returns self."""
        return self._fit(X, y, incremental=False)

    # --- files ---------------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted network as an mlpjit model file (``mlpjit evaluate`` / ``predict``,
        ``Sequential.load``); the same as ``mlpjit.sklearn.save(self, path)``."""
        save(self, path)

    def _file_metadata(self):
        """The model file's ``__metadata__``: what ``mlpjit predict`` needs to read raw inputs
        (x_scale 1: the inputs as given) and to name its outputs."""
        meta = {"loss": self._loss_name, "task": "classification" if is_classifier(self) else "regression",
                "x_scale": 1.0, "input_shape": [int(self.n_features_in_)], "data": "sklearn",
                "seed": int(self._seed), "estimator": type(self).__name__}
        if is_classifier(self):
            meta["n_classes"] = int(len(self.classes_))
            meta["class_names"] = [c.item() if hasattr(c, "item") else c for c in self.classes_]
        return meta

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True   # sparse input is accepted (densified: the layers are dense)
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's interface (see the module
    docstring); softmax output for several classes, logistic for two and for multilabel y."""

    _loss_name = "cross_entropy"

    def _validate_input(self, X, y, incremental, reset, classes=None):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if classes is not None:   # partial_fit's first call: the labels there will be
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(np.asarray(classes))
            self.classes_ = self._label_binarizer.classes_
            if len(np.setdiff1d(unique_labels(y), self.classes_)):
                raise ValueError(f"`y` has classes not in `classes`: {self.classes_}; 'y' has "
                                 f"{unique_labels(y)}.")
        elif not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as "
                                     f"in the previous call to fit. Previously got {self.classes_}, "
                                     f"`y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        self._kind = self._label_binarizer.y_type_
        if self._kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {self._kind}")
        Y = self._label_binarizer.transform(y).astype(np.float64)
        if Y.shape[1] == 1 and len(self.classes_) == 1:
            raise ValueError("MLPClassifier needs samples of at least 2 classes in the data, but "
                             f"the data contains only one class: {self.classes_[0]!r}")
        return X, Y

    def _out_activation(self):
        return "softmax" if self._kind == "multiclass" else "logistic"

    def _loss_and_targets(self, Y):
        if self._kind == "multiclass":
            self._loss_name = "cross_entropy"
            return _losses.get("cross_entropy"), "classification", Y.argmax(axis=1)
        if self._kind == "binary":
            self._loss_name = "binary_cross_entropy"
            return _losses.get("binary_cross_entropy"), "classification", Y[:, 0].astype(np.int64)
        self._loss_name = "binary_cross_entropy"      # multilabel: independent logistic outputs
        return _losses.get("binary_cross_entropy"), "regression", Y

    def _val_score(self, X, Y):
        return accuracy_score(self._decode(self._forward(X)), self._label_binarizer.inverse_transform(Y))

    def _decode(self, out):
        if self._kind == "multiclass":
            return self.classes_[out.argmax(axis=1)]
        if self._kind == "binary":
            return self.classes_[(out[:, 0] > 0).astype(int)]
        return (out > 0).astype(int)

    def predict(self, X):
        """Predicted classes (shape (n,), or (n, n_labels) for multilabel y)."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        X = X.toarray() if hasattr(X, "toarray") else X
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Probability of each class (columns in the order of ``classes_``)."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        X = X.toarray() if hasattr(X, "toarray") else X
        out = self._forward(X)
        if self._kind == "multiclass":
            out = out - out.max(axis=1, keepdims=True)
            e = np.exp(out)
            return e / e.sum(axis=1, keepdims=True)
        p = 1.0 / (1.0 + np.exp(-out))
        return np.hstack([1 - p, p]) if self._kind == "binary" else p

    def predict_log_proba(self, X):
        """Natural log of ``predict_proba``."""
        return np.log(self.predict_proba(X))

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); ``classes`` (every label there will be) is required on the
        first call."""
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if hasattr(self, "classes_") and classes is not None and \
                not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={list(classes)}` is not the same as on the first call to "
                             f"partial_fit, was: {list(self.classes_)}")
        return self._fit(X, y, incremental=True, classes=None if hasattr(self, "classes_") else classes)


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's interface (see the module
    docstring): identity output, half the squared error (``loss="squared_error"``, the only
    loss offered; scikit-learn's "poisson" is refused by ``fit``).

    ``loss`` is keyword-only here (first and positional in scikit-learn >= 1.7), so that
    ``MLPRegressor((64,))`` keeps meaning hidden_layer_sizes=(64,)."""

    _loss_name = "sum_squares"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 clip_norm=None, dropout=0.0, dtype=None):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
                         shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         clip_norm=clip_norm, dropout=dropout, dtype=dtype)
        self.loss = loss

    def _check_loss(self):
        if self.loss == "poisson":
            raise ValueError("The 'loss' parameter of MLPRegressor: 'poisson' is not offered by "
                             "mlpjit.sklearn (mlpjit has no Poisson loss); use loss='squared_error'.")
        _among(self, "loss", ("squared_error",))

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return X, Y

    def _out_activation(self):
        return "identity"

    def _loss_and_targets(self, Y):
        return _losses.get("sum_squares"), "regression", Y

    def _val_score(self, X, Y):
        return r2_score(Y, self._forward(X))

    def predict(self, X):
        """Predicted values (shape (n,), or (n, n_outputs))."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        X = X.toarray() if hasattr(X, "toarray") else X
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        return self._fit(X, y, incremental=True)


# --- model files: an estimator, or a pipeline of a scaler and an estimator -----------------------

def _per_feature(name, scaler):
    """(m, s), each (F,), with ``scaler.transform(x) = (x − m)/s`` per feature, for the scalers
    a ``standardize`` layer can stand for (fitted attributes in scikit-learn's names):

    StandardScaler  m = mean_,   s = scale_  (0 or 1 where with_mean / with_std is False;
                    scale_ is already 1 for a constant feature)
    MinMaxScaler    x·scale_ + min_ = (x − m)/s with s = 1/scale_, m = −min_/scale_ (scale_ =
                    (hi − lo)/(max − min) for feature_range (lo, hi); clip=True is refused)
    MaxAbsScaler    m = 0,       s = scale_ = max |x|
    RobustScaler    m = center_, s = scale_  (0 or 1 where with_centering / with_scaling is False)
    """
    F = int(scaler.n_features_in_)
    zeros, ones = np.zeros(F), np.ones(F)
    if isinstance(scaler, StandardScaler):
        return (np.asarray(scaler.mean_, np.float64) if scaler.with_mean else zeros,
                np.asarray(scaler.scale_, np.float64) if scaler.with_std else ones)
    if isinstance(scaler, MinMaxScaler):
        if scaler.clip:
            raise ValueError(f"save: step '{name}' (MinMaxScaler with clip=True) clips to feature_range, "
                             f"which a standardize layer cannot; refit it with clip=False.")
        s = 1.0 / np.asarray(scaler.scale_, np.float64)
        return -np.asarray(scaler.min_, np.float64) * s, s
    if isinstance(scaler, MaxAbsScaler):
        return zeros, np.asarray(scaler.scale_, np.float64)
    return (np.asarray(scaler.center_, np.float64) if scaler.with_centering else zeros,
            np.asarray(scaler.scale_, np.float64) if scaler.with_scaling else ones)


_SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
_SUPPORTED = ("a fitted MLPClassifier or MLPRegressor of mlpjit.sklearn, or a Pipeline of at most one "
              "scaler (" + ", ".join(c.__name__ for c in _SCALERS) + ") followed by one of them")


def save(estimator, path):
    """Write a fitted estimator, or a fitted ``Pipeline`` of [one scaler,] estimator, as ONE
    mlpjit model file that ``Sequential.load``, ``mlpjit predict`` and ``mlpjit evaluate`` read,
    on the pipeline's raw inputs.

    The scaler becomes the model's first layer, ``standardize`` with μ = m and σ = s of
    :func:`_per_feature` (Y = (X − μ)/σ), before the estimator's Dense layers; "passthrough"
    steps are skipped.  Anything else (PCA, PolynomialFeatures, a ColumnTransformer, two
    scalers, another estimator) is refused in one ValueError line naming the step.

    Example::

        pipe = make_pipeline(StandardScaler(), MLPClassifier()).fit(X, y)
        mlpjit.sklearn.save(pipe, "model.npz")    # then: mlpjit predict model.npz raw.csv
    """
    scaler = None
    if isinstance(estimator, Pipeline):
        steps = [(n, s) for n, s in estimator.steps if not (s is None or isinstance(s, str))]
        if not steps:
            raise ValueError(f"save: the pipeline has no steps; it must be {_SUPPORTED}")
        *before, (last_name, mlp) = steps
        if not isinstance(mlp, _BaseMLP):
            raise ValueError(f"save: step '{last_name}' ({type(mlp).__name__}) is not an estimator of "
                             f"mlpjit.sklearn; supported: {_SUPPORTED}")
        for i, (name, step) in enumerate(before):
            if i > 0 or type(step) not in _SCALERS:
                raise ValueError(f"save: step '{name}' ({type(step).__name__}) cannot go into an mlpjit "
                                 f"model file; supported: {_SUPPORTED}")
            scaler = (name, step)
    elif isinstance(estimator, _BaseMLP):
        mlp = estimator
    else:
        raise ValueError(f"save: {type(estimator).__name__} cannot be saved as an mlpjit model; "
                         f"supported: {_SUPPORTED}")
    check_is_fitted(mlp, "_model")
    layers = list(mlp._model.layers)
    meta = mlp._file_metadata()
    if scaler is not None:
        name, step = scaler
        check_is_fitted(step)
        m, s = _per_feature(name, step)
        if m.shape != (mlp.n_features_in_,):
            raise ValueError(f"save: step '{name}' has {m.shape[0]} features, the estimator "
                             f"{mlp.n_features_in_}")
        first = Standardize(m.shape[0], dtype=mlp._model.dtype)
        first.mean[...] = m
        first.std[...] = s
        first.adapted = True
        layers.insert(0, first)
        meta["scaler"] = type(step).__name__
    model = Sequential(layers)
    model.metadata = meta
    model.save(path)
