"""Parallel sweeps of gradient-flow runs over a grid, through the result store.

A run is described by a :class:`RunSpec` (activation, k, n, seed,
initialization, d, std and flow options) with a unit-orthonormal teacher of k
neurons in d = k + 1 dimensions unless d is given. :func:`sweep` loads every
run already in the :class:`~copyaverage.store.ResultStore` and computes the
others in parallel with joblib, with a tqdm progress bar. Results are saved by
the calling process as they arrive, so an interrupted sweep loses only the
runs in flight and resumes where it stopped.

From the command line (``copyaverage sweep --help``)::

    copyaverage sweep --activation erf --k 50 --n 1-49 \\
        --seeds 0-19 --init glorot --jobs 2

Threads: each worker process is limited to one BLAS/OpenMP thread
(``joblib.parallel_config(inner_max_num_threads=1)``), so that 2 workers on 2
cores do not fight over them.

On a cluster: joblib's Dask backend sends the runs to Dask workers; only the
process that calls :func:`sweep` touches the store, so the workers need no
shared file system::

    from dask.distributed import Client          # pip install "dask[distributed]"
    client = Client("tcp://scheduler:8786")      # or dask_jobqueue.SLURMCluster(...)
    sweep(specs, n_jobs=-1, backend="dask")

or ``copyaverage sweep ... --backend dask --scheduler tcp://scheduler:8786``.
Start the Dask workers with ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MKL_NUM_THREADS=1`` and one thread per worker process (``--nthreads 1``).

Results are filed under the client's code hash, so a worker with other library
code would store its results under the wrong version without anyone noticing.
With the Dask backend every task therefore first compares the worker's
:func:`~copyaverage.store.code_hash` with the client's and raises
:class:`CodeMismatchError` (naming the worker) before computing anything if
they differ.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

import numpy as np

from .activations import ACTIVATIONS
from .loss import check_student
from .empirical import sample_inputs
from .flow import SCHEMES, _check_int, gradient_flow, initialize
from .results import FlowResult
from .store import ResultStore, code_hash
from .teacher import Teacher

__all__ = ["RunSpec", "StartSpec", "CodeMismatchError", "grid", "run", "sweep"]

#: joblib backends whose workers may run other copies of the library (checked per task).
REMOTE_BACKENDS = ("dask",)


class CodeMismatchError(RuntimeError):
    """A worker runs library code with another code hash than the process that stores results."""

#: gradient_flow options a RunSpec may set.
FLOW_OPTIONS = ("tol", "method", "rtol", "atol", "t_max", "max_time", "switch_gradient",
                "max_polish_distance", "max_newton_iterations", "trajectory_per_decade",
                "record_parameters", "eigenvalues", "fresh_jacobian")


@dataclass(frozen=True)
class RunSpec:
    """One gradient-flow run: everything that determines its result.

    Attributes
    ----------
    activation : str
        A name in :data:`copyaverage.ACTIVATIONS <copyaverage.activations.ACTIVATIONS>`.
    k : int
        Teacher neurons (unit-orthonormal teacher).
    n : int
        Student neurons, n >= 1.
    seed : int
        Seed of the initialization.
    init : {"gaussian", "glorot"}
    d : int or None
        Input dimension, default k + 1.
    std : float
        Standard deviation of the ``"gaussian"`` initialization.
    options : tuple of (name, value) pairs
        Options for :func:`~copyaverage.flow.gradient_flow` (sorted by name).
    samples : int or None
        None (default): the flow follows the population loss. An integer N >= 1: the
        full-batch flow on the empirical loss of N inputs drawn by
        :func:`copyaverage.empirical.sample_inputs` with ``data_seed``.
    data_seed : int
        Seed of that sample (default 0; ignored when ``samples`` is None).
    """

    activation: str
    k: int
    n: int
    seed: int
    init: str = "gaussian"
    d: int | None = None
    std: float = 0.1
    options: tuple = field(default_factory=tuple)
    samples: int | None = None
    data_seed: int = 0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: "
                             f"{', '.join(sorted(ACTIVATIONS))}")
        for name, lo in [("k", 1), ("n", 1), ("seed", 0)]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.d is not None and (not isinstance(self.d, (int, np.integer)) or self.d < self.k):
            raise ValueError(f"d must be an integer >= k = {self.k}, got {self.d!r}")
        if self.init not in SCHEMES:
            raise ValueError(f"unknown initialization scheme {self.init!r}; known: {', '.join(SCHEMES)}")
        object.__setattr__(self, "options", _check_options(self.options))
        if self.samples is not None:
            _check_int(self.samples, "samples (N)", 1)
            object.__setattr__(self, "samples", int(self.samples))
        object.__setattr__(self, "data_seed", _check_int(self.data_seed, "data_seed", 0))
        for name in ("k", "n", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def dim(self) -> int:
        return self.k + 1 if self.d is None else int(self.d)

    def params(self) -> dict:
        """The dictionary the store key is computed from."""
        p = asdict(self)
        p["d"] = self.dim
        p["std"] = float(self.std) if self.init == "gaussian" else None
        p["options"] = dict(self.options)
        p["kind"] = "gradient_flow/unit-orthonormal-teacher"
        if self.samples is None:  # population runs keep the keys they had
            del p["samples"], p["data_seed"]
        return p

    def teacher(self) -> Teacher:
        """The unit-orthonormal teacher of k neurons in d dimensions."""
        return Teacher.orthonormal(self.k, self.dim)

    def start(self):
        """The initial student (a0, W0) drawn from the seed."""
        return initialize(self.n, self.teacher(), self.init, self.seed, self.std)

    def data(self):
        """The sample of inputs (N, d), or None for a population run."""
        if self.samples is None:
            return None
        return sample_inputs(self.samples, self.dim, self.data_seed)


def _check_options(options) -> tuple:
    opts = dict(options)
    unknown = set(opts) - set(FLOW_OPTIONS)
    if unknown:
        raise ValueError(f"unknown flow option(s) {sorted(unknown)}; known: {', '.join(FLOW_OPTIONS)}")
    return tuple(sorted(opts.items()))


@dataclass(frozen=True, eq=False)
class StartSpec:
    """A gradient-flow run from a given start (a0, W0) and a given teacher.

    For flows that do not start from a seeded random initialization (near-copies,
    a copy-average configuration, a symmetric start): the store key holds SHA-256
    digests of the start and of the teacher, so whatever computed the start, the same
    arrays give the same key.

    Attributes
    ----------
    activation : str
    a0, W0 : ndarray, shapes (n,) and (n, d)
        The start (copied, read-only).
    teacher_ : Teacher
        (Positional argument ``teacher``; the method :meth:`teacher` returns it.)
    options : tuple of (name, value) pairs
        Options for :func:`~copyaverage.flow.gradient_flow` (sorted by name).
    label : str
        What the start is, in words (part of the key, so two starts that mean
        different things never share a stored result by accident).
    """

    activation: str
    a0: np.ndarray
    W0: np.ndarray
    teacher_: Teacher  # the field is "teacher_": teacher() is the method both spec types share
    options: tuple = field(default_factory=tuple)
    label: str = ""

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: "
                             f"{', '.join(sorted(ACTIVATIONS))}")
        a0, W0 = check_student(self.a0, self.W0, self.teacher_)
        for name, arr in (("a0", a0), ("W0", W0)):
            arr = arr.copy()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "options", _check_options(self.options))

    @property
    def n(self) -> int:
        return self.a0.size

    @property
    def k(self) -> int:
        return self.teacher_.k

    @property
    def dim(self) -> int:
        return self.teacher_.d

    def params(self) -> dict:
        """The dictionary the store key is computed from."""
        digest = hashlib.sha256()
        for arr in (self.a0, self.W0, self.teacher_.a, self.teacher_.V):
            digest.update(str(arr.shape).encode() + np.ascontiguousarray(arr, float).tobytes())
        return dict(kind="gradient_flow/given-start", activation=self.activation, n=self.n,
                    k=self.k, d=self.dim, label=self.label, start=digest.hexdigest(),
                    options=dict(self.options))

    def teacher(self) -> Teacher:
        """The teacher given at construction."""
        return self.teacher_

    def start(self):
        return self.a0, self.W0

    def data(self):
        """None: a StartSpec run follows the population loss."""
        return None


def grid(activation, k, n, seeds, init="gaussian", *, d=None, std=0.1, skip_n_ge_k=True,
         **options) -> list[RunSpec]:
    """All combinations of the given values (scalars or iterables) as RunSpecs.

    ``skip_n_ge_k`` (default True) drops the combinations with n >= k (the paper
    studies n < k).
    """
    def as_list(x):
        return list(x) if isinstance(x, (list, tuple, range, np.ndarray)) else [x]

    opts = tuple(sorted(options.items()))
    specs = []
    for act, kk, nn, s, ini in product(as_list(activation), as_list(k), as_list(n),
                                       as_list(seeds), as_list(init)):
        if skip_n_ge_k and nn >= kk:
            continue
        specs.append(RunSpec(act, kk, nn, s, ini, d, std, opts))
    return specs


def run(spec: RunSpec | StartSpec) -> FlowResult:
    """Compute one run (no store)."""
    T = spec.teacher()
    a0, W0 = spec.start()
    opts = dict(spec.options)
    opts.setdefault("record_parameters", False)
    return gradient_flow(a0, W0, T, spec.activation, data=spec.data(), **opts)


@functools.lru_cache(maxsize=1)
def _worker_code_hash() -> str:
    """This process's :func:`~copyaverage.store.code_hash` (computed once per process)."""
    return code_hash()


def _check_worker_code(expected: str) -> None:
    """Raise :class:`CodeMismatchError` unless this process runs the code hashed ``expected``."""
    here = _worker_code_hash()
    if here != expected:
        raise CodeMismatchError(
            f"worker {socket.gethostname()} (pid {os.getpid()}) runs copyaverage code "
            f"{here[:16]} from {Path(__file__).resolve().parent}, but the client files results "
            f"under code {expected[:16]}: install the same library version on every Dask "
            f"worker (`copyaverage info` prints the code hash)")


def _run_indexed(i, spec, expected_code: str | None = None):
    if expected_code is not None:
        _check_worker_code(expected_code)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # for processes started after this one
    return i, run(spec)


def sweep(specs, *, store: ResultStore | str | None = None, n_jobs: int = 2,
          backend: str | None = None, progress: bool = True, recompute: bool = False,
          desc: str = "gradient flows") -> list[FlowResult]:
    """Run (or load) every spec; return the results in the order of ``specs``.

    Parameters
    ----------
    specs : iterable of RunSpec or StartSpec
    store : ResultStore or path, optional
        Default ``ResultStore()`` (see :func:`copyaverage.store.default_store_dir`).
    n_jobs : int
        Parallel workers (joblib; -1 for all cores). 1 runs in this process.
    backend : str, optional
        joblib backend, e.g. ``"loky"`` (default) or ``"dask"``. With ``"dask"`` every
        task first checks that its worker runs this library's code hash and raises
        :class:`CodeMismatchError` otherwise (nothing of that worker is stored).
    progress : bool
        Show a tqdm progress bar (default True).
    recompute : bool
        Ignore stored results and recompute (the new ones overwrite them).

    Notes
    -----
    Every computed run is saved before the next result is awaited; stored
    runs are loaded without computing. Runs that did not converge are stored
    too (with ``converged = False``) and are not recomputed unless the code or
    the options change.
    """
    specs = list(specs)
    for s in specs:
        if not isinstance(s, (RunSpec, StartSpec)):
            raise ValueError(f"sweep needs RunSpec or StartSpec objects, got {type(s).__name__}")
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    results: list[FlowResult | None] = [None] * len(specs)
    todo = []
    for i, s in enumerate(specs):
        r = None if recompute else store.load(s.params())
        if r is None:
            todo.append(i)
        else:
            results[i] = r
    if todo:
        store.check_writable()  # before minutes of computing, not after
    from tqdm import tqdm  # plain text bar: tqdm.auto warns on stderr without ipywidgets

    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=desc, disable=not progress,
               unit="run", dynamic_ncols=True)
    try:
        if todo and (n_jobs == 1 or len(todo) == 1 and backend is None):
            for i in todo:
                _, r = _run_indexed(i, specs[i])
                store.save(specs[i].params(), r)
                results[i] = r
                bar.update(1)
        elif todo:
            from joblib import Parallel, delayed, parallel_config

            # largest runs first: better load balance
            order = sorted(todo, key=lambda i: -specs[i].n * (specs[i].dim + 1))
            cfg = dict(backend=backend) if backend else dict(backend="loky", inner_max_num_threads=1)
            # workers elsewhere (Dask) check that they run the code the store files under
            expected = code_hash() if backend in REMOTE_BACKENDS else None
            with parallel_config(**cfg), _sigterm_as_interrupt():
                par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
                for i, r in par(delayed(_run_indexed)(i, specs[i], expected) for i in order):
                    store.save(specs[i].params(), r)
                    results[i] = r
                    bar.update(1)
    finally:
        bar.close()
    return results


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a CI timeout, ``kill``) handled like Ctrl-C while workers run.

    joblib shuts its worker processes down on KeyboardInterrupt but not on SIGTERM,
    whose default action ends this process at once and leaves the workers computing
    their runs to the end. Here SIGTERM raises KeyboardInterrupt, joblib terminates
    the workers, and the process then exits with status 143 (128 + SIGTERM).
    Only in the main thread (signal handlers cannot be set elsewhere).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except KeyboardInterrupt:
        if received:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
