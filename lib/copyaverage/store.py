"""An on-disk store of gradient-flow results, keyed by parameters and code.

Every run is saved as one compressed ``.npz`` file named by the SHA-256 of
its parameters (a canonical JSON of activation, k, d, n, seed, initialization
and flow options), inside a directory named by :func:`code_hash`, a hash of
the library source that determines the result. So

* an unchanged run is loaded instead of recomputed;
* a change in that source gives a new directory: everything recomputes (old
  directories stay until :meth:`ResultStore.prune` removes them);
* an interrupted sweep resumes: finished runs are on disk;
* a partly written file is never read back: a result is written to a
  temporary file in the same directory (suffix ``.tmp``, never read) and moved
  into place with :func:`os.replace`, which is atomic on POSIX and Windows.
  A file that still fails to load (e.g. a disk error) is treated as missing.

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
import shutil
import tempfile
import warnings
import zipfile
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


def code_hash(roots=_ROOT_MODULES, package_dir: Path = _PACKAGE_DIR) -> str:
    """SHA-256 (hex) of the names and contents of :func:`source_files`."""
    h = hashlib.sha256()
    h.update(f"format {FORMAT_VERSION}\n".encode())
    for path in source_files(roots, package_dir):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
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
    """The arrays of one ``.npz`` file for a :class:`FlowResult`."""
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
    """Directory of stored :class:`FlowResult` objects.

    Parameters
    ----------
    root : path, optional
        Default :func:`default_store_dir`.
    code : str, optional
        Code hash to file results under; default :func:`code_hash` (computed once).

    Examples
    --------
    >>> store = ResultStore("/tmp/my-store")                    # doctest: +SKIP
    >>> store.save(params, result); store.load(params)          # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike | None = None, code: str | None = None):
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
        """The stored result for ``params``, or None (missing or unreadable)."""
        path = self.path(params)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return result_from_arrays(z)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            warnings.warn(f"ignoring unreadable stored result {path.name}: {exc}", stacklevel=2)
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

    def prune(self) -> list[Path]:
        """Delete the directories of other code versions and stray temporary files."""
        removed = []
        if self.root.exists():
            for d in self.root.iterdir():
                if d.is_dir() and d.name != self.dir.name:
                    shutil.rmtree(d)
                    removed.append(d)
        if self.dir.exists():
            for tmp in self.dir.glob("*.tmp"):
                tmp.unlink()
                removed.append(tmp)
        return removed
