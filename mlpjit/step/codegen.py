"""Render the compiled training step of one model as Python source.

For a model, its loss, optimizer and clipping, :class:`StepPlan` writes one straight-line
function, ``train_chunk``, that for each mini-batch of a range gathers the batch, calls each
layer's forward kernels in order, the loss's kernels, each layer's backward kernels in reverse,
computes the gradient norms, clips and updates — every call taken from the layers' own
declarations (:mod:`mlpjit.layers.base`), so no formula is written here.  Every array is its
own argument, named ``l<node>_<name>`` after the layer's names (``l0_A``, ``l0_dA``, ``l2_S``),
with the layer written in a comment above its calls.

Sizes are arguments too, never part of the text: two models that differ only in their widths,
batch size or data share one generated module (and its compiled code in Numba's cache).  So are
the learning rate and the optimizer's constants, one value per batch of the call (``lrs``,
``hyper``): a schedule, by epoch or by update, never recompiles.

The plan also lists the arguments in order (:attr:`StepPlan.args`), as arrays that exist (a
layer's parameters), arrays to allocate (:class:`Alloc`) and numbers, for
:class:`mlpjit.step.CompiledStep` to bind.
"""

import math
import sys
from pathlib import Path

import numpy as np

from ..layers.base import LayerKernelError, Ref, _spec

PREFETCH_BYTES = 4 * 2 ** 20  # data sets above this size have their next batch prefetched
BLOCK = 16384                 # parameter elements per work item of a sharded step's update

# acc (float64[:]): 0 loss·m summed, 1 correct, 2 examples seen, 3 grad norm summed, 4 batches,
#                   5 the batch (1-based) where a NaN/Inf appeared, 6 the offending loss, 7 its norm
ACC_SIZE = 8


class Alloc:
    """An array the step needs that nobody owns yet: allocated (zeroed, 64-byte aligned) when
    the step is bound."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)

    def __repr__(self):
        return f"Alloc({self.shape}, {self.dtype})"


class Draws:
    """A chunk's uniform draws for node ``index`` (float64, filled from its rng before each call)."""

    __slots__ = ("index", "per_example")

    def __init__(self, index, per_example):
        self.index, self.per_example = index, per_example


class _Kernels:
    """The kernels the source calls, each imported once under a unique name."""

    def __init__(self):
        self.names = {}      # id(kernel) -> name in the source
        self.kernels = []    # (kernel, name)

    def name(self, kernel):
        key = id(kernel)
        if key not in self.names:
            fn = getattr(kernel, "py_func", kernel)
            base = fn.__name__
            taken = {n for _, n in self.kernels}
            name, i = base, 1
            while name in taken:
                i += 1
                name = f"{base}_{i}"
            self.names[key] = name
            self.kernels.append((kernel, name))
        return self.names[key]

    def modules(self):
        return sorted({getattr(getattr(k, "py_func", k), "__module__", "?") for k, _ in self.kernels})

    def imports(self):
        """Import lines grouped by module; kernels of ``__main__`` are read from it."""
        by_module = {}
        for kernel, name in self.kernels:
            fn = getattr(kernel, "py_func", kernel)
            by_module.setdefault(fn.__module__, []).append((fn.__name__, name))
        lines = []
        for module in sorted(by_module):
            items = sorted(by_module[module], key=lambda t: t[1])
            if module == "__main__":
                lines.append("import __main__ as _main")
                lines.extend(f"{name} = _main.{real}" for real, name in items)
                continue
            parts = [real if real == name else f"{real} as {name}" for real, name in items]
            line = f"from {module} import " + ", ".join(parts)
            if len(line) > 100:
                line = f"from {module} import (\n    " + ",\n    ".join(parts) + ")"
            lines.append(line)
        return lines


def importable(kernel):
    """Whether a kernel can be imported by its module and name (what another process needs)."""
    fn = getattr(kernel, "py_func", kernel)
    module = sys.modules.get(fn.__module__)
    return (fn.__module__ != "__main__" and module is not None
            and getattr(module, fn.__name__, None) is kernel)


def in_script(kernel):
    """Whether a kernel is defined at the top of a script or notebook (``__main__``): the step
    reads it from there, and is cached under a hash of its source (:func:`script_key`)."""
    fn = getattr(kernel, "py_func", kernel)
    main = sys.modules.get("__main__")
    return fn.__module__ == "__main__" and getattr(main, fn.__name__, None) is kernel


def cacheable(kernel):
    return importable(kernel) or in_script(kernel)


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def module_key(module):
    """A module's source file as bytes (its name when it has no readable file): what the step's
    hash holds of a module whose kernels the compiled code contains."""
    path = getattr(sys.modules.get(module), "__file__", None)
    try:
        return Path(path).read_bytes() if path else module.encode()
    except OSError:
        return module.encode()


def script_key(kernels, h):
    """Feed the hash ``h`` with what decides the compiled code of kernels defined in a script or
    a notebook cell (``__main__``): each one's source (its bytecode when the source cannot be
    read), and the same for every ``__main__`` function it calls, transitively, and the values
    of the plain globals (numbers, strings, tuples of them, arrays) and closure cells it reads.
    The rest of the script does not count: editing the training settings keeps the step."""
    import inspect
    import marshal
    seen = set()

    def names(code):
        out = set(code.co_names)
        for const in code.co_consts:
            if hasattr(const, "co_names"):
                out |= names(const)
        return out

    def value_key(value):
        if isinstance(value, _PLAIN):
            return repr(value).encode()
        if isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value):
            return repr(value).encode()
        if isinstance(value, np.ndarray):
            return str((value.dtype, value.shape)).encode() + value.tobytes()
        return None

    def visit(kernel):
        fn = getattr(kernel, "py_func", kernel)
        if fn in seen or not hasattr(fn, "__code__"):
            return
        seen.add(fn)
        h.update(f"\0{fn.__qualname__}\0".encode())
        try:
            h.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):
            h.update(marshal.dumps(fn.__code__))
        for cell in fn.__closure__ or ():
            h.update(value_key(cell.cell_contents) or b"?")
        for name in sorted(names(fn.__code__)):
            value = fn.__globals__.get(name)
            inner = getattr(value, "py_func", value)
            module = getattr(inner, "__module__", None) if callable(inner) else None
            if module == "__main__":
                visit(value)
            elif module is not None and hasattr(value, "py_func"):   # a kernel of a module
                h.update(module_key(module))
            else:
                key = value_key(value)
                if key is not None:
                    h.update(name.encode() + b"=" + key)

    for kernel in kernels:
        visit(kernel)


class StepPlan:
    """The generated step of a model (see the module docstring).

    Args: model (a Sequential), loss, optimizer, batch size, the shape of one example
    (``input_shape``), the clipping config (``{"norm": c}``, ``{"value": c}`` or None), the
    number of outputs ``k`` and whether the loss gets class ids (``labels``) or rows (``T``).
    """

    def __init__(self, model, loss, optimizer, batch_size, input_shape, clip=None,
                 target_kind="labels", pred=0, shards=1):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.bs = int(batch_size)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(model.dtype)
        self.clip = clip or {}
        self.target_kind = target_kind
        self.pred = pred
        self.kernels = _Kernels()
        self.args = []           # (name, value): value an array, an Alloc, a Draws or a number
        # the optimizer's constants, in the columns of the call's ``hyper`` (batches, k): each
        # batch reads its own values, so a schedule by update needs no other step
        self.hyper_names = list(optimizer.constants())
        self._arg_names = set()
        self.nodes = [node for layer in model.layers for node in layer.nodes()]
        self._shapes()
        self.shards = int(shards) if shardable(self.nodes, loss) else 1
        self.sharded = self.shards > 1
        # a shard's rows: a batch's [r0, r1) in a sharded step (m of them), [0, m) otherwise
        self.rows = "[r0:r1]" if self.sharded else "[:m]"
        self.shard_bs = -(-self.bs // self.shards)
        self.model_names = [n for n, _, _ in model.parameters()]
        self.source = self._render()

    # --- shapes and what each node needs ------------------------------------------------------
    def _shapes(self):
        shape = self.input_shape
        self.in_shapes, self.out_shapes = [], []
        for l, node in enumerate(self.nodes):
            self.in_shapes.append(shape)
            try:
                shape = tuple(int(s) for s in node.output_shape(shape))
            except ValueError as e:
                raise ValueError(f"layer {l} ({node!r}): {e}") from None
            self.out_shapes.append(shape)
        self.k = int(math.prod(shape))
        self.has_params = [bool(node.params) for node in self.nodes]
        first = next((l for l, p in enumerate(self.has_params) if p), len(self.nodes))
        self.first_param = first
        # node l needs dX when a node before it has parameters (its dX is that node's dY)
        self.need_dX = [l > first for l in range(len(self.nodes))]

    # --- arguments ----------------------------------------------------------------------------
    def _arg(self, name, value):
        if name in self._arg_names:
            raise ValueError(f"generated step: argument {name} given twice")
        self._arg_names.add(name)
        self.args.append((name, value))
        return name

    def _dims(self, prefix, shape):
        """``(m, <prefix>_1, ...)``: a batch of one-example ``shape``, its sizes as arguments."""
        names = [self._arg(f"{prefix}{i + 1}", int(d)) if f"{prefix}{i + 1}" not in self._arg_names
                 else f"{prefix}{i + 1}" for i, d in enumerate(shape)]
        return "(m, " + ", ".join(names) + ")" if names else "(m,)"

    # --- a node's names -----------------------------------------------------------------------
    def _node_space(self, l, node):
        """{name: source expression} of node l's arrays and constants (the batch variables X, Y,
        dY, dX are filled in by the caller)."""
        in_shape = self.in_shapes[l]
        space = {}
        S = self.shards
        for name, arr, grad in node.parameters():
            space[name] = self._arg(f"l{l}_{name}", arr)
            space["d" + name] = self._arg(f"l{l}_d{name}", grad)
            if self.sharded:   # each shard's gradient, summed into d<name> in shard order
                space["d" + name] = self._arg(f"l{l}_d{name}_sh", Alloc((S,) + grad.shape, grad.dtype)) + "[s]"
        for name, arr in node.state_items():
            space[name] = self._arg(f"l{l}_{name}", arr)
        for name, spec in node.buffers(in_shape).items():
            shape, dt = _spec(spec, self.dtype)
            space[name] = self._arg(f"l{l}_{name}", Alloc((self.bs,) + shape, dt)) + self.rows
        for name, spec in node.scratch(in_shape, self.shard_bs).items():
            shape, dt = _spec(spec, self.dtype)
            if self.sharded:   # one per shard
                space[name] = self._arg(f"l{l}_{name}", Alloc((S,) + shape, dt)) + "[s]"
            else:
                space[name] = self._arg(f"l{l}_{name}", Alloc(shape, dt))
        for name, value in node.constants().items():
            space[name] = self._arg(f"l{l}_{name}", value)
        draws = node.draws(in_shape)
        if draws:
            self._arg(f"l{l}_U", Draws(l, draws))
            self._arg(f"l{l}_draws", int(draws))
            space["U"] = f"U{l}"
        space["training"] = "True"
        return space

    def _expr(self, arg, space, spaces, where):
        if isinstance(arg, Ref):
            j = next((i for i, n in enumerate(self.nodes) if n is arg.node), None)
            if j is None or arg.name not in spaces.get(j, {}):
                raise LayerKernelError(f"{where}: refers to {arg!r}, which the step does not have")
            return spaces[j][arg.name]
        if isinstance(arg, str):
            if arg not in space:
                raise LayerKernelError(
                    f"{where}: kernel takes '{arg}', which the layer does not provide "
                    f"(it provides: {', '.join(sorted(space))})")
            return space[arg]
        if isinstance(arg, (bool, np.bool_)):
            return repr(bool(arg))
        if isinstance(arg, (int, float, np.integer, np.floating)):
            return repr(arg.item() if hasattr(arg, "item") else arg)
        raise LayerKernelError(f"{where}: argument {arg!r} is neither a name nor a number")

    def _call(self, call, space, spaces, where):
        args = ", ".join(self._expr(a, space, spaces, f"{where}, {call.name}") for a in call.args)
        text = f"{self.kernels.name(call.kernel)}({args})"
        return f"{call.returns} = {text}" if call.returns else text

    # --- the source ------------------------------------------------------------------------------
    def _render(self):
        nodes = self.nodes
        L = len(nodes)
        body_f, body_b = [], []
        spaces = {}
        head_args = ["X", "x_scale", "labels", "targets", "perm", "bs", "b_start", "b_stop", "lrs",
                     "hyper", "t0", "pred", "acc", "norms", "Xbuf", "lbuf", "tbuf", "dOut"]
        # forward
        x_expr = f"Xbuf{self.rows}"
        if len(self.input_shape) > 1:
            x_expr = f"Xbuf{self.rows}.reshape({self._dims('x_d', self.input_shape)})"
        for l, node in enumerate(nodes):
            where = f"layer {l} ({node!r})"
            space = self._node_space(l, node)
            spaces[l] = space
            aliases = node.aliases(True)
            body_f.append(f"# ({l}) {_comment(node)}")
            body_f.append(f"X{l} = {x_expr if l == 0 else f'Y{l - 1}'}")
            space["X"] = f"X{l}"
            if "U" in space and self.sharded:   # this shard's rows of the batch's draws
                body_f.append(f"U{l} = l{l}_U[u{l} + r0 * l{l}_draws:u{l} + r1 * l{l}_draws]")
            elif "U" in space:
                body_f.append(f"U{l} = l{l}_U[u{l}:u{l} + m * l{l}_draws]")
                body_f.append(f"u{l} += m * l{l}_draws")
            if "Y" in aliases:
                body_f.append(f"Y{l} = {self._alias_expr(l, 'Y', aliases['Y'], space)}")
            else:
                self._arg(f"l{l}_Y", Alloc((self.bs,) + self.out_shapes[l], self._node_dtype(node)))
                body_f.append(f"Y{l} = l{l}_Y{self.rows}")
            space["Y"] = f"Y{l}"
            for alias, target in aliases.items():
                if alias != "Y" and not alias.startswith("d"):
                    body_f.append(f"{alias}{l} = {self._alias_expr(l, alias, target, space)}")
                    space[alias] = f"{alias}{l}"
            for call in node.forward_calls(True):
                body_f.append(self._call(call, space, spaces, where))
        # loss
        loss_space = {"Yhat": f"Y{L - 1}", "labels": "lb", "T": "tb", "dYhat": "dO"}
        k = self.k
        for name, shape in self.loss.buffers(k).items():
            loss_space[name] = self._arg(f"loss_{name}", Alloc((self.bs,) + tuple(shape), self.dtype)) + self.rows
        for name, shape in self.loss.scratch(k).items():
            if self.sharded:
                loss_space[name] = self._arg(f"loss_{name}", Alloc((self.shards,) + tuple(shape), self.dtype)) + "[s]"
            else:
                loss_space[name] = self._arg(f"loss_{name}", Alloc(tuple(shape), self.dtype))
        loss_lines = [f"# loss: {self.loss.name} ({'class ids' if self.target_kind == 'labels' else 'target rows'})"]
        where = f"loss {self.loss.name}"
        for call in self.loss.forward_calls(k, self.target_kind):
            loss_lines.append(self._call(call, loss_space, spaces, where))
        for call in self.loss.backward_calls(k, self.target_kind):
            loss_lines.append(self._call(call, loss_space, spaces, where))
        # backward
        for l in range(L - 1, self.first_param - 1, -1):
            node = nodes[l]
            space = spaces[l]
            where = f"layer {l} ({node!r})"
            need_dX = self.need_dX[l]
            space["need_dX"] = repr(need_dX)
            calls = [c for c in node.backward_calls(True) if need_dX or not c.input_grad]
            aliases = node.aliases(True)
            body_b.append(f"# ({l}) {_comment(node)}")
            body_b.append(f"dY{l} = {'dO' if l == L - 1 else f'dX{l + 1}'}")
            space["dY"] = f"dY{l}"
            uses_dX = need_dX or any("dX" in c.args for c in calls)
            if "dX" in aliases:
                body_b.append(f"dX{l} = {self._alias_expr(l, 'dX', aliases['dX'], space)}")
                space["dX"] = f"dX{l}"
            elif uses_dX:
                self._arg(f"l{l}_dX", Alloc((self.bs,) + self.in_shapes[l], self._node_dtype(node)))
                body_b.append(f"dX{l} = l{l}_dX{self.rows}")
                space["dX"] = f"dX{l}"
            for alias, target in aliases.items():
                if alias.startswith("d") and alias != "dX":
                    body_b.append(f"{alias}{l} = {self._alias_expr(l, alias, target, space)}")
                    space[alias] = f"{alias}{l}"
            for call in calls:
                body_b.append(self._call(call, space, spaces, where))
        if self.sharded:
            return self._assemble_sharded(head_args, body_f, loss_lines, body_b, self._update_sharded())
        update = self._update()
        return self._assemble(head_args, body_f, loss_lines, body_b, update)

    def _node_dtype(self, node):
        return self.dtype

    def _alias_expr(self, l, name, target, space):
        """``target`` seen in ``name``'s shape (a reshape when the shapes differ)."""
        shape_of = {"Y": self.out_shapes[l], "dY": self.out_shapes[l], "X": self.in_shapes[l],
                    "dX": self.in_shapes[l]}
        target_shape = shape_of.get(target)
        if target_shape is None:   # a buffer: its declared shape
            spec = {**self.nodes[l].buffers(self.in_shapes[l])}.get(target)
            target_shape = _spec(spec, self.dtype)[0] if spec is not None else None
        want = shape_of.get(name, target_shape)
        expr = space[target] if target in space else None
        if expr is None:
            raise LayerKernelError(f"layer {l} ({self.nodes[l]!r}): alias {name} → {target}, "
                                   f"which the layer does not have")
        if target_shape is not None and want is not None and tuple(want) != tuple(target_shape):
            return f"{expr}.reshape({self._dims(f'l{l}_{name}_d', want)})"
        return expr

    def _update(self):
        """Lines for the gradient norms, the NaN check, clipping and the optimizer's update."""
        lines = []
        params = []
        q = 0
        for l, node in enumerate(self.nodes):
            for name, _, _ in node.parameters():
                params.append((q, l, name))
                q += 1
        head = []
        for q, l, name in params:
            head.append(f"p{q} = l{l}_{name}.reshape(-1)")
            head.append(f"g{q} = l{l}_d{name}.reshape(-1)")
        opt = self.optimizer
        for q, l, name in params:
            for slot in opt.slots:
                self._arg(f"s{q}_{slot}", _flat_slot(opt, q, slot))
        consts = {cname: f"opt_{cname}" for cname in self.hyper_names}   # read per batch (_batch_values)
        clip_mode = "norm" if self.clip.get("norm") is not None else (
            "value" if self.clip.get("value") is not None else None)
        if clip_mode:
            self._arg("clip_c", float(self.clip[clip_mode]))
        lines.append("# gradient norms (before clipping), in the order of model.parameters()")
        for q, l, name in params:
            lines.append(f"ss{q} = sum_squares(g{q})")
        lines.append("norm = math.sqrt(" + " + ".join(f"ss{q}" for q, _, _ in params) + ")"
                     if params else "norm = 0.0")
        lines += ["if not (math.isfinite(E) and math.isfinite(norm)):",
                  "    acc[5] = b + 1", "    acc[6] = E", "    acc[7] = norm", "    return done"]
        w = 0
        self.weight_names = []
        model_names = [n for n, _, _ in self.model.parameters()]
        for (q, l, name), full in zip(params, model_names):
            if full.endswith(".A"):
                lines.append(f"norms[{w}] += math.sqrt(ss{q})")
                self.weight_names.append(full)
                w += 1
        if clip_mode == "norm":
            lines.append("c = clip_norm_factor(norm, clip_c)")
            lines.append("if c != 1.0:")
            lines += [f"    scale_inplace(g{q}, c)" for q, _, _ in params]
        elif clip_mode == "value":
            lines += [f"clip_value_inplace(g{q}, clip_c)" for q, _, _ in params]
        kernel = type(opt).update_kernel
        kname = self.kernels.name(kernel)
        lines.append(f"# update: {opt.name}")
        lines.append("t = t0 + done + 1")
        for q, l, name in params:
            lines.append(self._update_call(kname, consts, q))
        lines += self._max_norm([(q, l, name) for q, l, name in params])
        self.clip_mode = clip_mode
        self._param_head = head
        return lines

    def _max_norm(self, params):
        """With ``optimizer.max_norm`` c, the lines after the update that project each unit's
        incoming weights (the parameters its layer declares in ``incoming``) onto the ball of
        radius c."""
        c = getattr(self.optimizer, "max_norm", None)
        if c is None:
            return []
        from ..optim import max_norm_columns, max_norm_rows
        self._arg("max_norm_c", float(c))
        lines = ["# max-norm: each unit's incoming weights w <- w * min(1, c / |w|)"]
        for q, l, name in params:
            mode = type(self.nodes[l]).incoming.get(name)
            if mode is None:
                continue
            A = getattr(self.nodes[l], name)
            if mode == "columns":
                kname = self.kernels.name(max_norm_columns)
                self._arg(f"mn{q}", Alloc((A.shape[1],), np.float64))
                lines.append(f"{kname}(l{l}_{name}, max_norm_c, mn{q})  # {self.model_names[q]}")
            else:
                kname = self.kernels.name(max_norm_rows)
                units = self._arg(f"mn{q}_units", int(A.shape[0]))
                lines.append(f"{kname}(p{q}.reshape(({units}, p{q}.shape[0] // {units})), "
                             f"max_norm_c)  # {self.model_names[q]}")
        return lines

    def _params(self):
        params, q = [], 0
        for l, node in enumerate(self.nodes):
            for name, arr, _ in node.parameters():
                params.append((q, l, name, arr.size))
                q += 1
        return params

    def _update_call(self, kname, consts, q, rows=""):
        """The optimizer kernel's call on parameter q (its elements ``rows``, e.g. "[zlo:zhi]")."""
        opt = self.optimizer
        argnames = opt.kernel_args()
        space = dict(consts, theta=f"p{q}{rows}", g=f"g{q}{rows}", lr="lr", t="t",
                     **{slot: f"s{q}_{slot}{rows}" for slot in opt.slots})
        missing = [a for a in argnames if a not in space]
        if missing:
            raise LayerKernelError(f"optimizer {opt.name}: kernel {kname} takes "
                                   f"{', '.join(repr(a) for a in missing)}, which the optimizer "
                                   f"does not provide (it provides: {', '.join(sorted(space))})")
        return f"{kname}(" + ", ".join(space[a] for a in argnames) + ")"

    def _update_sharded(self):
        """A sharded step's update, in three parts: the lines of the reduction region (each
        work item sums the shards' gradients of one block and its squares), the serial lines
        (norms, the NaN check, the clipping factor) and the lines of the update region."""
        params = self._params()
        wq, wlo, whi, starts = _blocks([size for _, _, _, size in params])
        for name, arr in (("wq", wq), ("wlo", wlo), ("whi", whi), ("wstart", starts)):
            self._arg(name, arr)
        self._arg("wss", Alloc((len(wq),), np.float64))
        head = []
        for q, l, name, _ in params:
            head.append(f"p{q} = l{l}_{name}.reshape(-1)")
            head.append(f"g{q} = l{l}_d{name}.reshape(-1)")
            head.append(f"G{q} = l{l}_d{name}_sh.reshape((S, g{q}.shape[0]))")
        self._param_head = head
        opt = self.optimizer
        for q, l, name, _ in params:
            for slot in opt.slots:
                self._arg(f"s{q}_{slot}", _flat_slot(opt, q, slot))
        consts = {cname: f"opt_{cname}" for cname in self.hyper_names}   # read per batch (_batch_values)
        clip_mode = "norm" if self.clip.get("norm") is not None else (
            "value" if self.clip.get("value") is not None else None)
        if clip_mode:
            self._arg("clip_c", float(self.clip[clip_mode]))
        self.clip_mode = clip_mode

        def dispatch(body, var="q"):   # "if q == 0: ... elif q == 1: ..." over the parameters
            lines = []
            for q, l, name, _ in params:
                lines.append(("if" if q == 0 else "elif") + f" {var} == {q}:  # {self.model_names[q]}")
                lines.extend("    " + x for x in body(q))
            return lines
        reduce_ = ["q, lo_, hi_ = wq[w], wlo[w], whi[w]"]
        reduce_ += dispatch(lambda q: [f"wss[w] = reduce_shards(G{q}, g{q}, Sb, lo_, hi_)"])
        serial = ["# gradient norms (before clipping), in the order of model.parameters()"]
        for q, _, _, _ in params:
            serial.append(f"ss{q} = 0.0")
            serial.append(f"for v in range(wstart[{q}], wstart[{q + 1}]):")
            serial.append(f"    ss{q} += wss[v]")
        serial.append("norm = math.sqrt(" + " + ".join(f"ss{q}" for q, _, _, _ in params) + ")"
                      if params else "norm = 0.0")
        serial += ["if not (math.isfinite(E) and math.isfinite(norm)):",
                   "    acc[5] = b + 1", "    acc[6] = E", "    acc[7] = norm", "    return done"]
        self.weight_names, w = [], 0
        for (q, l, name, _), full in zip(params, self.model_names):
            if full.endswith(".A"):
                serial.append(f"norms[{w}] += math.sqrt(ss{q})")
                self.weight_names.append(full)
                w += 1
        serial.append("c = clip_norm_factor(norm, clip_c)" if clip_mode == "norm" else "c = 1.0")
        kernel = type(opt).update_kernel
        kname = self.kernels.name(kernel)
        serial.append("t = t0 + done + 1")

        def update(q, rows):
            lines = []
            if clip_mode == "norm":
                lines += ["if c != 1.0:", f"    scale_inplace(g{q}{rows}, c)"]
            elif clip_mode == "value":
                lines.append(f"clip_value_inplace(g{q}{rows}, clip_c)")
            return lines + [self._update_call(kname, consts, q, rows)]
        if getattr(opt, "elementwise", False):   # block by block, in parallel
            upd = ["z, zlo, zhi = wq[w2], wlo[w2], whi[w2]"] + dispatch(lambda q: update(q, "[zlo:zhi]"), "z")
            tail = []
        else:                                    # parameter by parameter, serially
            upd = []
            tail = [f"# update: {opt.name} (not element-wise: each parameter whole)"]
            for q, _, _, _ in params:
                tail += update(q, "")
        tail += self._max_norm([(q, l, name) for q, l, name, _ in params])
        return reduce_, serial, upd, tail

    def _assemble_sharded(self, head_args, body_f, loss_lines, body_b, update):
        """The step of a sharded plan: per batch, a parallel loop over shards (each gathers its
        rows and runs forward, the loss and backward on them into its own gradients), then a
        parallel loop over blocks of the parameters that sums the shards' gradients in shard
        order, the norms and the clipping factor, and a parallel loop that updates each block.
        The shards' rows and the blocks depend on the batch, the number of shards and the sizes
        alone: the result does not depend on how many threads run them."""
        from ..kernels.misc import count_correct, gather_rows, prefetch_rows
        from ..optim import clip_norm_factor, clip_value_inplace, reduce_shards, scale_inplace
        reduce_, serial, upd, tail = update
        for kernel in (gather_rows, prefetch_rows, count_correct, reduce_shards, scale_inplace):
            self.kernels.name(kernel)
        if self.clip_mode == "norm":
            self.kernels.name(clip_norm_factor)
        elif self.clip_mode == "value":
            self.kernels.name(clip_value_inplace)
        self._arg("Es", Alloc((self.shards,), np.float64))
        self._arg("cs", Alloc((self.shards,), np.int64))
        self._where_kernels_live()
        arg_names = head_args + ["S"] + [name for name, _ in self.args]
        arrays = head_args[:1] + ["labels", "targets", "perm", "acc", "norms", "Xbuf", "lbuf",
                                  "tbuf", "dOut"]
        arrays += [name for name, value in self.args if _is_array(value)]
        draws = [name for name, value in self.args if isinstance(value, Draws)]
        out = self._header(sharded=True)
        ind, i2, i3 = "    ", "        ", "            "
        out.append('@jit(parallel="prange")' if self.cached
                   else '@jit(parallel="prange", cache=False)  # calls kernels that cannot be imported')
        out.extend(_wrap("def train_chunk(" + ", ".join(arg_names) + "):", 100, "                "))
        out.append(ind + "# the caller keeps every array alive for the whole call: no reference counting inside")
        for chunk in _fit(arrays + draws, 100 - len(ind)):
            out.append(ind + ", ".join(chunk) + " = " + ", ".join(f"borrowed({a})" for a in chunk))
        out.extend(ind + line for line in self._param_head)
        for l, node in enumerate(self.nodes):
            if node.draws(self.in_shapes[l]):
                out.append(ind + f"u{l} = 0")
        out += [ind + "n = perm.shape[0]",
                ind + "far = X.size * X.itemsize > PREFETCH_BYTES  # a data set that does not stay in cache",
                ind + "done = 0",
                ind + "for b in range(b_start, b_stop):"]
        out += [i2 + x for x in self._batch_values()]
        out += [i2 + x for x in ["lo = b * bs", "hi = min(lo + bs, n)", "mb = hi - lo",
                                 "idx = perm[lo:hi]", "Sb = min(S, mb)  # shards with rows", "",
                                 "# --- each shard: its rows forward, the loss, backward ---",
                                 "for s in prange(Sb):"]]
        shard = ["r0 = s * mb // Sb", "r1 = (s + 1) * mb // Sb", "m = r1 - r0",
                 "gather_rows(X, idx[r0:r1], x_scale, Xbuf[r0:r1])",
                 "if far and b + 1 < b_stop:  # the next batch's rows travel while this one computes",
                 "    prefetch_rows(X, perm[hi + r0:min(hi + r1, n)])",
                 "for r in range(r0, r1):", "    lbuf[r] = labels[idx[r]]",
                 "    for j in range(tbuf.shape[1]):", "        tbuf[r, j] = targets[idx[r], j]",
                 "lb, tb, dO = lbuf[r0:r1], tbuf[r0:r1], dOut[r0:r1]", ""]
        # the shard's loss is e (E is the batch's, summed after the shards)
        loss_lines = [("e = " + x[4:]) if x.startswith("E = ") else x for x in loss_lines]
        shard += body_f + [""] + loss_lines
        shard += ["# the loss is a mean over the batch: this shard's share of it, and of dO",
                  "Es[s] = e * m / mb", "scale_inplace(dO.reshape(-1), m / mb)",
                  "if pred != 0:", f"    cs[s] = count_correct(Y{len(self.nodes) - 1}, lb, pred)", ""]
        shard += body_b
        out += [i3 + x if x else "" for x in shard]
        out += [""] + [i2 + x for x in ["E = 0.0", "for s in range(Sb):", "    E += Es[s]",
                                        "    if pred != 0:", "        acc[1] += cs[s]"]]
        for l, node in enumerate(self.nodes):
            if node.draws(self.in_shapes[l]):
                out.append(i2 + f"u{l} += mb * l{l}_draws")
        out += ["", i2 + "# --- the shards' gradients summed, block by block, in shard order ---",
                i2 + "for w in prange(wq.shape[0]):"]
        out += [i3 + x for x in reduce_]
        out += [""] + [i2 + x for x in serial]
        if upd:
            out += [i2 + f"# --- update: {self.optimizer.name}, block by block ---",
                    i2 + "for w2 in prange(wq.shape[0]):"]
            out += [i3 + x for x in upd]
        out += [i2 + x for x in tail]
        out += [i2 + x for x in ["acc[0] += E * mb", "acc[2] += mb", "acc[3] += norm",
                                 "acc[4] += 1", "done += 1"]]
        out.append(ind + "return done")
        return "\n".join(out) + "\n"

    def _batch_values(self):
        """The lines that read this batch's learning rate and optimizer constants (a schedule
        by update gives each batch its own; by epoch they repeat)."""
        lines = ["# this batch's learning rate and optimizer constants (scheduled: arguments, no recompile)",
                 "lr = lrs[done]"]
        lines += [f"opt_{cname} = hyper[done, {k}]" for k, cname in enumerate(self.hyper_names)]
        return lines

    def _where_kernels_live(self):
        """``cached``: every kernel the step calls has a module and name, or is a script's own
        (cached under its source); ``portable``: every one can be imported by another process
        (the compile child)."""
        kernels = [k for k, _ in self.kernels.kernels]
        self.cached = all(cacheable(k) for k in kernels)
        self.portable = all(importable(k) for k in kernels)

    def _header(self, sharded=False):
        out = ['"""The compiled training step of one architecture, generated by mlpjit '
               '(mlpjit/step/codegen.py).', "", "model:"]
        for l, node in enumerate(self.nodes):
            out.append(f"  ({l}) {_comment(node)}")
        c = getattr(self.optimizer, "max_norm", None)
        out.append(f"loss: {self.loss.name};  optimizer: {self.optimizer.name};  clipping: "
                   f"{self.clip_mode or 'none'}" + ("" if c is None else ";  max-norm: on (c is the argument max_norm_c)"))
        out.append("")
        out.append("train_chunk(...) trains on batches b_start ≤ b < b_stop of perm and returns how "
                   "many it finished")
        out.append("(fewer when a loss or gradient was NaN/Inf: then acc[5] is that batch).  Sizes are "
                   "arguments, so")
        out.append("every model of this structure shares this file; its name is a hash of this text "
                   "and the kernels' sources.")
        if sharded:
            out.append("")
            out.append("Sharded: each batch is split into S shards of rows, run in parallel on Numba's "
                       "threads (BLAS")
            out.append("single-threaded inside each), their gradients summed in shard order: the "
                       "result depends on S,")
            out.append("never on how many threads ran the shards.")
        out.append('"""')
        out.append("")
        out.append("import math")
        out.append("")
        if sharded:
            out.append("from numba import prange")
            out.append("")
        out.append("from mlpjit._jit import jit")
        out.append("from mlpjit.kernels.intrinsics import borrowed")
        out.extend(self.kernels.imports())
        out.append("")
        out.append(f"PREFETCH_BYTES = {PREFETCH_BYTES}")
        out.append("")
        out.append("")
        return out

    def _assemble(self, head_args, body_f, loss_lines, body_b, update):
        from ..kernels.misc import count_correct, gather_rows, prefetch_rows
        from ..optim import clip_norm_factor, clip_value_inplace, scale_inplace, sum_squares
        for kernel in (gather_rows, prefetch_rows, count_correct, sum_squares):
            self.kernels.name(kernel)
        if self.clip_mode == "norm":
            self.kernels.name(clip_norm_factor), self.kernels.name(scale_inplace)
        elif self.clip_mode == "value":
            self.kernels.name(clip_value_inplace)
        self._where_kernels_live()
        arg_names = head_args + [name for name, _ in self.args]
        arrays = head_args[:1] + ["labels", "targets", "perm", "acc", "norms", "Xbuf", "lbuf",
                                  "tbuf", "dOut"]
        arrays += [name for name, value in self.args if _is_array(value)]
        draws = [name for name, value in self.args if isinstance(value, Draws)]
        ind = "    "
        out = self._header()
        out.append("@jit" if self.cached else "@jit(cache=False)  # calls kernels that cannot be imported")
        sig = "def train_chunk(" + ", ".join(arg_names) + "):"
        out.extend(_wrap(sig, 100, "                "))
        out.append(ind + "# the caller keeps every array alive for the whole call: no reference counting inside")
        for chunk in _fit(arrays + draws, 100 - len(ind)):
            out.append(ind + ", ".join(chunk) + " = " + ", ".join(f"borrowed({a})" for a in chunk))
        for line in self._param_head:
            out.append(ind + line)
        for l, node in enumerate(self.nodes):
            if node.draws(self.in_shapes[l]):
                out.append(ind + f"u{l} = 0")
        out.append(ind + "n = perm.shape[0]")
        out.append(ind + "far = X.size * X.itemsize > PREFETCH_BYTES  # a data set that does not stay in cache")
        out.append(ind + "done = 0")
        out.append(ind + "for b in range(b_start, b_stop):")
        i2 = ind * 2
        out.extend(i2 + line for line in self._batch_values())
        for line in ["lo = b * bs", "hi = min(lo + bs, n)", "m = hi - lo", "idx = perm[lo:hi]",
                     "gather_rows(X, idx, x_scale, Xbuf[:m])",
                     "if far and b + 1 < b_stop:  # the next batch's rows travel while this one computes",
                     "    prefetch_rows(X, perm[hi:min(hi + bs, n)])",
                     "for r in range(m):", "    lbuf[r] = labels[idx[r]]",
                     "    for j in range(tbuf.shape[1]):", "        tbuf[r, j] = targets[idx[r], j]",
                     "lb, tb, dO = lbuf[:m], tbuf[:m], dOut[:m]", "",
                     "# --- forward ---"]:
            out.append(i2 + line if line else "")
        out.extend(i2 + line for line in body_f)
        out.append("")
        out.extend(i2 + line for line in loss_lines)
        out.append(i2 + "if pred != 0:")
        out.append(i2 + f"    acc[1] += count_correct(Y{len(self.nodes) - 1}, lb, pred)")
        out.append("")
        out.append(i2 + "# --- backward ---")
        out.extend(i2 + line for line in body_b)
        out.append("")
        out.extend(i2 + line for line in update)
        out.extend(i2 + line for line in ["acc[0] += E * m", "acc[2] += m", "acc[3] += norm",
                                          "acc[4] += 1", "done += 1"])
        out.append(ind + "return done")
        return "\n".join(out) + "\n"


def shardable(nodes, loss):
    """Whether a batch of this model and loss can be split among threads (every node
    ``row_separable``, the loss a mean over rows)."""
    return all(getattr(node, "row_separable", False) for node in nodes) and getattr(loss, "row_mean", False)


def _blocks(sizes, block=BLOCK):
    """Work items of the reduction and the update: (param q, lo, hi) in order, ``block``
    elements each (the last of a parameter shorter); fixed by the sizes alone, so the sums
    that follow them (the norms) do not depend on the number of threads."""
    wq, wlo, whi, starts = [], [], [], [0]
    for q, size in enumerate(sizes):
        for lo in range(0, max(size, 1), block):
            wq.append(q)
            wlo.append(lo)
            whi.append(min(lo + block, size))
        starts.append(len(wq))
    return (np.array(wq, np.int64), np.array(wlo, np.int64), np.array(whi, np.int64),
            np.array(starts, np.int64))


def _flat_slot(opt, q, slot):
    name = [n for n, _, _ in opt.params][q]
    return opt.state[slot][name].reshape(-1)


def _is_array(value):
    return isinstance(value, (np.ndarray, Alloc))


def _comment(node):
    """The comment naming a node in the text: its structure, no sizes (see Layer.structure)."""
    return " ".join(node.structure().split())


def _fit(names, width):
    """``names`` in groups whose line ``a, b = borrowed(a), borrowed(b)`` fits in ``width``."""
    groups, cur = [], []
    for name in names:
        trial = cur + [name]
        if cur and len(", ".join(trial)) + 3 + len(", ".join(f"borrowed({a})" for a in trial)) > width:
            groups.append(cur)
            trial = [name]
        cur = trial
    return groups + ([cur] if cur else [])


def _wrap(text, width, indent):
    """A long ``def f(a, b, ...):`` line broken after commas."""
    if len(text) <= width:
        return [text]
    lines, cur = [], ""
    for part in text.split(", "):
        piece = part if not cur else cur + ", " + part
        if len(piece) > width and cur:
            lines.append(cur + ",")
            cur = indent + part
        else:
            cur = piece
    lines.append(cur)
    return lines
