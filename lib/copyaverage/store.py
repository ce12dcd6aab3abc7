"""An on-disk store of gradient-flow results, keyed by parameters and code.

Every run is saved as one compressed ``.npz`` file named by the SHA-256 of
its parameters (a canonical JSON of activation, k, d, n, seed, initialization
and flow options), inside a directory named by :func:`code_hash`, a hash of
the library source that determines the result. So

* an unchanged run is loaded instead of recomputed;
* a change in that source gives a new directory: everything recomputes (old
  directories stay until :meth:`ResultStore.prune` removes them; it removes
  nothing but store directories, see there);
* an interrupted sweep resumes: finished runs are on disk;
* a partly written file is never read back: a result is written to a
  temporary file in the same directory (suffix ``.tmp``, never read) and moved
  into place with :func:`os.replace`, which is atomic on POSIX and Windows.
  A file that still fails to load (empty, truncated, damaged by a disk error,
  or of another format) is treated as missing: :meth:`ResultStore.load` warns
  with its path and returns None, so the run is recomputed;
* :meth:`ResultStore.check_writable` tells before any run is computed whether
  results can be saved.

Which source counts
-------------------
:func:`code_hash` hashes the modules that a stored result depends on: the
import closure (followed through the package's relative imports) of
:mod:`copyaverage.flow`, :mod:`copyaverage.sweep` and this module. Editing a
book-only module (say the one-neuron closed forms) therefore does not throw
away hours of stored gradient flows; editing anything the flow imports does.

Where the store lives
---------------------
:func:`default_store_dir`: the environment variable ``COPYAVERAGE_STORE`` if
set; else ``<repository root>/.cache/store`` when the package is imported from
a checkout of the repository (``lib/copyaverage`` next to ``pyproject.toml``;
``.cache/`` is git-ignored); else ``~/.cache/copyaverage/store``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .results import FlowResult, Trajectory

__all__ = [
    "ResultStore",
    "atomic_write",
    "code_hash",
    "default_store_dir",
    "source_files",
    "result_to_arrays",
    "result_from_arrays",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_ROOT_MODULES = ("flow", "sweep", "store")
FORMAT_VERSION = 3
#: How :func:`code_hash` reads a module: 1 = its bytes, 2 = its code without docstrings.
HASH_SCHEME = 2
#: Names of the directories a store writes (:attr:`ResultStore.dir`: 16 hex digits of a code
#: hash) and of the files in them (64 hex digits of a parameter hash + ``.npz``, or a
#: temporary ``.tmp`` file of :func:`atomic_write`); :meth:`ResultStore.prune` removes nothing else.
_CODE_DIR_NAME = re.compile(r"[0-9a-f]{16}")
_STORE_FILE_NAME = re.compile(r"[0-9a-f]{64}\.npz|[^/]*\.tmp")


def atomic_write(path: Path, write) -> Path:
    """Write a file all or nothing: ``write(f)`` fills a temporary file beside ``path``.

    The temporary file is flushed to disk and moved into place with
    :func:`os.replace`; on any error it is removed and ``path`` is untouched. The
    file gets the usual mode (0666 minus the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _relative_imports(path: Path):
    """Names of package modules imported by a module with ``from .x import`` / ``from . import x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def source_files(roots=_ROOT_MODULES, package_dir: Path = _PACKAGE_DIR) -> list[Path]:
    """The package modules in the import closure of ``roots``, sorted by name."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = package_dir / f"{name}.py"
        if not path.exists():
            continue
        seen.add(name)
        todo.extend(_relative_imports(path) - seen)
    return sorted(package_dir / f"{name}.py" for name in seen)


def _without_docstrings(path: Path) -> bytes:
    """The module's code as ``ast.unparse`` writes it, without docstrings or comments."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree).encode()


def code_hash(roots=_ROOT_MODULES, package_dir: Path = _PACKAGE_DIR,
              format_version: int = FORMAT_VERSION, scheme: int = HASH_SCHEME) -> str:
    """SHA-256 (hex) of the store format and the names and code of :func:`source_files`.

    Scheme 2 (this version) hashes each module's code without its docstrings and
    comments (``ast.unparse`` of the parsed module), so that editing
    documentation does not invalidate stored runs; scheme 1 hashed the file bytes.
    ``format_version`` and ``scheme`` are this module's unless given (to recompute
    the hash of an older version of the library from its files).
    """
    if scheme not in (1, 2):
        raise ValueError(f"unknown code-hash scheme {scheme!r}: 1 (file bytes) or 2 (code "
                         f"without docstrings)")
    h = hashlib.sha256()
    h.update(f"format {format_version}\n".encode())
    for path in source_files(roots, package_dir):
        h.update(path.name.encode() + b"\0")
        h.update((path.read_bytes() if scheme == 1 else _without_docstrings(path)) + b"\0")
    return h.hexdigest()


def default_store_dir() -> Path:
    """The store directory used when none is given (see the module docstring)."""
    env = os.environ.get("COPYAVERAGE_STORE")
    if env:
        return Path(env).expanduser()
    repo = _PACKAGE_DIR.parent.parent
    if _PACKAGE_DIR.parent.name == "lib" and (repo / "pyproject.toml").exists():
        return repo / ".cache" / "store"
    return Path.home() / ".cache" / "copyaverage" / "store"


# ------------------------------------------------------------ serialization --
def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot store {type(x).__name__} in JSON")


def result_to_arrays(result: FlowResult, params: dict | None = None) -> dict:
    """The arrays of one ``.npz`` file for a :class:`~copyaverage.results.FlowResult`."""
    meta = dict(
        format=FORMAT_VERSION, loss=result.loss, grad_norm=result.grad_norm,
        converged=result.converged, tol=result.tol, t_end=result.t_end, stop=result.stop.value,
        message=result.message, polish=result.polish, polish_distance=result.polish_distance,
        polish_loss_change=result.polish_loss_change, stats=result.stats,
        timings=result.timings, options=result.options, params=params or {},
        has_eigenvalues=result.hessian_eigenvalues is not None,
        has_theta=result.trajectory.theta is not None,
    )
    out = dict(
        meta=np.array(json.dumps(meta, default=_json_default, sort_keys=True)),
        a=result.a, W=result.W,
        eigenvalues=(result.hessian_eigenvalues if result.hessian_eigenvalues is not None
                     else np.zeros(0)),
        traj_t=result.trajectory.t, traj_loss=result.trajectory.loss,
        traj_grad_norm=result.trajectory.grad_norm,
        traj_param_norm=(result.trajectory.param_norm if result.trajectory.param_norm is not None
                         else np.zeros(0)),
    )
    if result.trajectory.theta is not None:
        out["traj_theta"] = result.trajectory.theta
    return out


def result_from_arrays(z) -> FlowResult:
    """Inverse of :func:`result_to_arrays` (``z`` maps names to arrays)."""
    meta = json.loads(str(z["meta"]))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"stored result has format {meta.get('format')}, expected {FORMAT_VERSION}")
    traj = Trajectory(np.array(z["traj_t"]), np.array(z["traj_loss"]),
                      np.array(z["traj_grad_norm"]),
                      np.array(z["traj_theta"]) if meta["has_theta"] else None,
                      np.array(z["traj_param_norm"]))
    return FlowResult(
        a=np.array(z["a"]), W=np.array(z["W"]), loss=meta["loss"], grad_norm=meta["grad_norm"],
        converged=meta["converged"], tol=meta["tol"],
        hessian_eigenvalues=np.array(z["eigenvalues"]) if meta["has_eigenvalues"] else None,
        trajectory=traj, t_end=meta["t_end"], stop=meta["stop"], message=meta["message"],
        polish=meta["polish"], polish_distance=meta["polish_distance"],
        polish_loss_change=meta["polish_loss_change"], stats=meta["stats"],
        timings=meta["timings"], options=meta["options"])


def params_key(params: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of a parameter dictionary."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ store ---
class ResultStore:
    """Directory of stored :class:`~copyaverage.results.FlowResult` objects.

    Parameters
    ----------
    root : path, optional
        Default :func:`default_store_dir`. An empty path is refused (it would
        put the store in the current directory).
    code : str, optional
        Code hash to file results under; default :func:`code_hash` (computed once).

    Examples
    --------
    >>> store = ResultStore("/tmp/my-store")                    # doctest: +SKIP
    >>> store.save(params, result); store.load(params)          # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike | None = None, code: str | None = None):
        if root is not None and not os.fsdecode(os.fspath(root)).strip():
            raise ValueError(f"the store directory must be a non-empty path, got {os.fspath(root)!r}; "
                             "leave it out (None) for the default, or give '.' for the "
                             "current directory")
        self.root = Path(root).expanduser() if root is not None else default_store_dir()
        self.code = code if code is not None else code_hash()
        if not isinstance(self.code, str) or not self.code:
            raise ValueError("code hash must be a non-empty string")
        self.dir = self.root / self.code[:16]

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r}, code={self.code[:16]})"

    def path(self, params: dict) -> Path:
        """The file a run with these parameters is stored in."""
        return self.dir / f"{params_key(params)}.npz"

    def __contains__(self, params: dict) -> bool:
        return self.path(params).exists()

    def load(self, params: dict) -> FlowResult | None:
        """The stored result for ``params``, or None (missing or unreadable).

        Any failure to read the file (empty, truncated or damaged, another
        format) gives a ``UserWarning`` naming the file and None: the run is
        then recomputed and the file overwritten.
        """
        path = self.path(params)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return result_from_arrays(z)
        except Exception as exc:  # noqa: BLE001 - every unreadable file counts as missing
            warnings.warn(f"ignoring unreadable stored result {path} "
                          f"({type(exc).__name__}: {exc}); it will be recomputed", stacklevel=2)
            return None

    def save(self, params: dict, result: FlowResult) -> Path:
        """Store ``result`` under ``params`` atomically (temporary file + os.replace)."""
        arrays = result_to_arrays(result, params)
        return atomic_write(self.path(params), lambda f: np.savez_compressed(f, **arrays))

    def keys(self) -> list[str]:
        """Parameter keys of the results stored for the current code."""
        if not self.dir.exists():
            return []
        return sorted(p.stem for p in self.dir.glob("*.npz"))

    def check_writable(self) -> None:
        """Make sure results can be saved, before any run is computed.

        Creates ``self.dir`` if needed and writes and removes a temporary file in it.

        Raises
        ------
        OSError
            Naming the directory, if it cannot be created or written to.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.dir, prefix="write-check.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OSError(exc.errno, f"the result store directory {self.dir} is not writable "
                          f"({exc.strerror or exc}); give a writable directory with --store "
                          "or $COPYAVERAGE_STORE") from exc

    @staticmethod
    def _is_store_dir(d: Path) -> bool:
        """True for a directory that a store wrote: a code-hash name, only store files in it."""
        if d.is_symlink() or not d.is_dir() or not _CODE_DIR_NAME.fullmatch(d.name):
            return False
        entries = list(d.iterdir())
        return bool(entries) and all(
            e.is_file() and not e.is_symlink() and _STORE_FILE_NAME.fullmatch(e.name)
            for e in entries)

    def prune(self, dry_run: bool = False) -> list[Path]:
        """Delete the stored results of other code versions and stray temporary files.

        Only *store directories* under ``self.root`` are removed: directories named
        by 16 lower-case hex digits (as ``self.dir`` is) that hold store files
        (``<64 hex digits>.npz`` or ``*.tmp``) and nothing else. Anything else in
        the root (``.git``, other folders, files) is left alone, whatever the root is.

        Parameters
        ----------
        dry_run : bool
            Only return what would be removed.

        Returns
        -------
        list of Path
            The directories and temporary files removed (or that would be).
        """
        removed = []
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                if d.name != self.dir.name and self._is_store_dir(d):
                    if not dry_run:
                        shutil.rmtree(d)
                    removed.append(d)
        if self.dir.is_dir() and not self.dir.is_symlink():
            for tmp in sorted(self.dir.glob("*.tmp")):
                if tmp.is_file():
                    if not dry_run:
                        tmp.unlink()
                    removed.append(tmp)
        return removed
