"""Run-directory I/O shared by ``simulators`` and ``llm_rl``: atomic writes and the resolved config.

Every file a run writes goes through :func:`atomic_write_bytes` (temp file in the same directory,
fsync, ``os.replace``), so a killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def temp_prefix(path: str | os.PathLike) -> str:
    """``.NAME.PID.``: the prefix of this process's temp files and folders for ``path`` (with
    :data:`TEMP_SUFFIX`, the pattern :func:`sweep_stale_temps` recognises)."""
    return f".{Path(path).name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files and folders (``.NAME.PID.XXXX.tmp``) in ``folder`` left by writers that died
    mid-write (``kill -9``: no ``finally`` ran); those of live processes are kept.
    Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_NAME.match(p.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); create parent dirs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic JSON write (dataclasses, numpy and torch values converted)."""
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def atomic_save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic ``torch.save``."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def environment_info() -> dict[str, Any]:
    """Versions and host facts to store next to every run (for reproducing it later)."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    for mod in ("numpy", "scipy", "torch", "transformers", "tokenizers", "sympy"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        info[mod] = getattr(m, "__version__", "?")
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None:
        info["cuda"] = torch_mod.cuda.is_available()
        info["torch_threads"] = torch_mod.get_num_threads()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        if sha.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                                   timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
            info["git"] = sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def save_run_config(run_dir: str | os.PathLike, config: Any, name: str = "config.json") -> Path:
    """Write ``{"config": <resolved config>, "environment": environment_info()}`` atomically."""
    return atomic_write_json(Path(run_dir) / name, {"config": config, "environment": environment_info()})


def read_json(path: str | os.PathLike) -> Any:
    """The JSON content of ``path``; ``ValueError`` naming the file when it is missing or not valid JSON
    (e.g. cut short by a full disk)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable or not valid JSON ({err})") from None


def load_npz(path: str | os.PathLike) -> dict:
    """Every array of an ``.npz`` file, loaded; ``ValueError`` naming the file when it is missing,
    truncated or corrupt."""
    import zipfile

    import numpy as np

    path = Path(path)
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: truncated or corrupt .npz file ({err}); rerun the run that wrote it") \
            from None
