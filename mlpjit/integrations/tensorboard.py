"""TensorBoard event files of a run: ``train.log: [tensorboard]``, ``mlpjit train --log
tensorboard``, ``model.fit(..., loggers=["tensorboard"])``.

Written with tensorboardX's ``SummaryWriter`` (``pip install "mlpjit[tensorboard]"``), into

* ``<run folder>/tensorboard/`` for a run with a folder (``mlpjit train``, ``fit(run_dir=...)``);
* ``./runs/tensorboard/<name>-<YYYYmmdd-HHMMSS>/`` for a run without one (``model.fit`` from
  code: ``<name>`` is the config's ``name``, ``fit``).

What is logged, at step = the epoch (``metrics.jsonl``'s ``epoch``; 0 is before the first):

=============================  ===========================================================
tag                            what
=============================  ===========================================================
``train_loss``, ``val_loss``,  every number of the epoch's ``metrics.jsonl`` row under its
``test_accuracy``, ``lr``,     key (float32, as TensorBoard keeps scalars); nested dicts
``grad_norm``,                 flattened with ``/``: per-layer gradient norms
``epoch_seconds``, ...         (``grad_norms/0.A``), activation statistics (``act_mean/0``,
                               ``act_std/0``); ``momentum`` or any other number a row has.
                               Not logged: ``epoch`` (the step), ``replanned``, flags.
``params/<name>``              histograms of every parameter array (``params/0.A``,
                               ``params/0.b``, ``params/1.gamma``): at step 0 (the initial
                               weights, a new run), every ``histogram_every`` epochs (5) and
                               after the last epoch.
``config/text_summary``        the resolved config as YAML (TensorBoard's Text tab, tag
                               ``config``), at the step the run (or its resume) starts.
=============================  ===========================================================

A resumed run (``mlpjit train --resume``) writes a new event file into the same folder, opened
with ``purge_step`` = the first epoch it trains: TensorBoard then drops whatever an earlier file
holds at that step and after (an epoch logged just before a kill and redone by the resume), so
every step is shown once and the curves continue where they stopped.  A resume that adds
TensorBoard to a run (``--resume RUN --log tensorboard``) first writes the earlier epochs'
scalars from ``metrics.jsonl``.  A new run into a folder that has events (``fit(run_dir=...)``
again) purges from step 0: only the new run is shown.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError
from ..loggers import Logger
from . import flat_metrics

INSTALL = 'pip install "mlpjit[tensorboard]"'


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError(f"logger tensorboard: the tensorboardX package is not installed "
                          f"({INSTALL})") from None
    return SummaryWriter


class TensorBoardLogger(Logger):
    """TensorBoard scalars, histograms and the config of a run (see the module docstring).

    ``TensorBoardLogger(run_dir, cfg)`` is what ``train.log: [tensorboard]`` makes; from code,
    ``TensorBoardLogger(logdir="tb/mine", histogram_every=1)`` may be passed to
    ``fit(loggers=[...])`` (``run_dir`` and ``cfg`` then come from the run at its start).
    ``logdir`` overrides where the events go; ``histogram_every=0`` writes the histograms only
    at the start and the end."""

    name = "tensorboard"

    def __init__(self, run_dir=None, cfg=None, *, logdir=None, histogram_every=5, flush_secs=30):
        super().__init__(run_dir, cfg)
        self._SummaryWriter = _summary_writer()   # a missing package fails here, before the run
        self.given_logdir = None if logdir is None else Path(logdir)
        self.logdir = None         # where this start writes (set by start)
        self.histogram_every = int(histogram_every)
        self.flush_secs = flush_secs
        self.writer = None
        self._hist_step = None     # the last step with histograms

    # -- where ---------------------------------------------------------------------------
    def _where(self, core):
        if self.given_logdir is not None:
            return self.given_logdir
        run_dir = self.run_dir if self.run_dir is not None else getattr(core, "run_dir", None)
        if run_dir is not None:
            return Path(run_dir) / "tensorboard"
        from ..io import timestamped_dir
        name = (self.cfg or getattr(core, "cfg", None) or {}).get("name", "run")
        return timestamped_dir(Path("runs") / "tensorboard", name)

    # -- the hooks -----------------------------------------------------------------------
    def start(self, core):
        import yaml
        cfg = self.cfg if self.cfg is not None else core.cfg
        fresh = core.epoch == 0 and core.batch == 0
        self.logdir = self._where(core)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # a resume that adds TensorBoard: the epochs before it, from metrics.jsonl
        earlier = [] if fresh or any(self.logdir.glob("*tfevents*")) else list(core.rows)
        # one file per start; its name sorts after the earlier ones (TensorBoard reads a folder's
        # files in name order), even for two starts in the same second
        self.writer = self._SummaryWriter(str(self.logdir), purge_step=0 if fresh else core.epoch + 1,
                                          flush_secs=self.flush_secs,
                                          filename_suffix=f".{time.time_ns()}.mlpjit")
        text = yaml.safe_dump(cfg, sort_keys=False)
        # indented: a code block in TensorBoard's Markdown, line breaks kept
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()),
                             global_step=core.epoch)
        if fresh:
            self._histograms(core, 0)
        for row in earlier:
            self._scalars(row)
        self.writer.flush()

    def epoch(self, core, row):
        step = self._scalars(row)
        if self.histogram_every > 0 and step % self.histogram_every == 0:
            self._histograms(core, step)
        self.writer.flush()

    def end(self, core, summary):
        if summary is not None and self.writer is not None and self._hist_step != core.epoch:
            self._histograms(core, core.epoch)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _scalars(self, row):
        step = int(row["epoch"])
        for tag, value in flat_metrics(row).items():
            self.writer.add_scalar(tag, value, global_step=step)
        return step

    def _histograms(self, core, step):
        for name, array, _ in core.model.parameters():
            self.writer.add_histogram(f"params/{name}", array.reshape(-1), global_step=step)
        self._hist_step = step
