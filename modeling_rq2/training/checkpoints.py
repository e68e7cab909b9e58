"""What makes a run survive being stopped: atomic checkpoints and model folders, resuming, and stop requests.

A checkpoint is Accelerate's ``save_state`` written into a temporary folder and renamed into place with a
``progress.json`` (epoch, batches into it, optimizer steps, seconds trained, the settings that decide the run) and a
``manifest.json`` (size and sha256 of every file, written last), so a half-written checkpoint is never taken as
complete, a damaged one is found before it is loaded, and ``resume_from_checkpoint`` continues a killed run exactly
where it stopped (``latest``: the newest intact checkpoint).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from torch import nn

from ..models.modeling_rq2 import file_sha256

CHECKPOINT_PREFIX = "checkpoint-"
PROGRESS_FILE = "progress.json"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the folder is then not locked
    fcntl = None


@dataclass
class Progress:
    """Where a run is: the epoch, batches done in it, optimizer steps done, and the seconds trained up to this point
    (read from a checkpoint: the seconds of the processes a resumed run continues)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    seconds: float = 0.0
    processes: int | None = None
    """The process count of the run that saved it (None: a checkpoint of 0.1.0, which did not record it)."""
    settings: dict[str, Any] | None = None
    """The settings that decide the run (``arguments.deciding_settings``; None: a checkpoint of 0.1.0)."""

    @classmethod
    def read(cls, checkpoint: Path) -> "Progress":
        """The progress a checkpoint saved (older ones have no ``seconds``)."""
        return cls(**json.loads((checkpoint / PROGRESS_FILE).read_text(encoding="utf-8")))


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (with their progress file), oldest first."""
    found = [
        p
        for p in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / PROGRESS_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def write_manifest(folder: Path) -> None:
    """``manifest.json``: the size and sha256 of every file of ``folder``, so a later damage is found."""
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    with open(folder / MANIFEST_FILE, "w", encoding="utf-8") as f:
        json.dump(files, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_damage(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed (a file missing, truncated or altered since it was saved), None if intact.
    Checkpoints of 0.1.0 have no manifest: only their progress file is checked."""
    try:
        Progress.read(checkpoint)
    except (OSError, ValueError, TypeError) as error:
        return f"{PROGRESS_FILE} unreadable ({error})"
    if not (checkpoint / MANIFEST_FILE).is_file():
        return None
    try:
        files = json.loads((checkpoint / MANIFEST_FILE).read_text(encoding="utf-8"))
        entries = [(name, int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        return f"{MANIFEST_FILE} unreadable ({error})"
    for name, size, sha256 in entries:
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when saved"
        if file_sha256(path) != sha256:
            return f"{name} was altered since it was saved (sha256 differs)"
    return None


def resolve_checkpoint(output_dir: str, resume: str | None) -> Path | None:
    """``latest`` -> the newest intact checkpoint of the run (None if there is none; damaged newer ones are skipped
    with a warning naming them); a path must be an intact checkpoint."""
    if resume is None:
        return None
    if resume != "latest":
        path = Path(resume)
        if not (path / PROGRESS_FILE).is_file():
            raise ValueError(f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {PROGRESS_FILE})")
        damage = checkpoint_damage(path)
        if damage:
            raise ValueError(f"--resume_from_checkpoint {resume}: damaged, {damage}; resume from another checkpoint")
        return path
    damaged = []
    for checkpoint in reversed(list_checkpoints(Path(output_dir) / "checkpoints")):
        damage = checkpoint_damage(checkpoint)
        if damage is None:
            if damaged:
                names = "; ".join(f"{path} ({why})" for path, why in damaged)
                warnings.warn(f"skipped damaged checkpoints: {names}; resuming from {checkpoint}", stacklevel=2)
            return checkpoint
        damaged.append((checkpoint, damage))
    if damaged:
        names = "; ".join(f"{path} ({why})" for path, why in damaged)
        raise ValueError(f"--resume_from_checkpoint latest: every checkpoint is damaged: {names}; start again")
    return None


def check_writable(output_dir: str) -> None:
    """Fail before any work when the output folder cannot be created or written."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(output_dir) / f".write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise OSError(f"--output_dir {output_dir}: cannot write there ({err.strerror or err})") from err


@contextlib.contextmanager
def output_lock(output_dir: str) -> Iterator[None]:
    """Hold ``OUTPUT/.lock`` while a run lives: a second run on the same folder fails at once, instead of both
    exiting 0 with their logs interleaved and the second's models kept. An OS lock (``flock``), released when the
    process ends, killed too, so it never goes stale. Only the main process (``RANK`` 0) of a run takes it."""
    if fcntl is None or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    check_writable(output_dir)
    with open(Path(output_dir) / LOCK_FILE, "a+", encoding="utf-8") as f:
        owner = _lock(f)
        if owner:
            raise RuntimeError(
                f"--output_dir {output_dir}: in use by another run ({owner}); wait for it to end or use another folder"
            )
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lock_holder(output_dir: str | Path) -> str | None:
    """Who holds ``output_dir``'s run lock ("pid N on host, since T"), or None when no live run does."""
    path = Path(output_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    with open(path, "a+", encoding="utf-8") as f:
        owner = _lock(f)
        if owner is None:
            fcntl.flock(f, fcntl.LOCK_UN)
    return owner


def _lock(f) -> str | None:
    """Take the lock of the open lock file ``f``: None when taken, else who holds it (the line it wrote)."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        return f.read().strip() or "another process"
    return None


def save_checkpoint(accelerator: Accelerator, output_dir: str, progress: Progress, *, keep: int) -> Path:
    """``save_state`` into a temporary folder, then rename: a half-written checkpoint is never taken as complete.

    Older checkpoints are pruned only after the new one is complete; a failed write (disk full,
    permissions) removes its temporary folder and leaves the last complete checkpoint as it was.
    """
    root = Path(output_dir) / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{progress.global_step}"
    tmp = root / f".tmp-{final.name}"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            with open(tmp / PROGRESS_FILE, "w", encoding="utf-8") as f:
                json.dump(asdict(progress), f)
                f.flush()
                os.fsync(f.fileno())
            write_manifest(tmp)  # last: it covers every file above
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    except (OSError, RuntimeError, SafetensorError) as err:  # a full disk: torch.save and safetensors raise their own
        shutil.rmtree(tmp, ignore_errors=True)
        complete = list_checkpoints(root)
        last = f"the last complete one, {complete[-1]}, is intact" if complete else "no earlier checkpoint exists"
        reason = getattr(err, "strerror", None) or err
        raise OSError(f"could not write checkpoint {final} ({reason}); {last}") from err
    if accelerator.is_main_process:
        for old in list_checkpoints(root)[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_model(model: nn.Module, folder: Path, state_dict: dict | None = None) -> None:
    """``save_pretrained`` into a temporary folder renamed into place: never a half-written model folder.

    ``state_dict``: the weights to save (gathered by ``accelerator.get_state_dict`` when they are sharded, FSDP or
    DeepSpeed ZeRO-3), else the model's own."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
    except (OSError, RuntimeError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(err, "strerror", None) or err
        raise OSError(
            f"could not write {folder} ({reason}); the run's checkpoints are as they were: free space and resume"
        ) from err
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


class StopRequest:
    """SIGINT / SIGTERM ask the loop to checkpoint and exit after the current optimizer step.

    The first signal sets a flag and restores the previous handlers, so a second Ctrl-C stops at once.
    """

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        self.restore()

    def restore(self) -> None:
        """Put the handlers that were there before back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def requested(self, accelerator: Accelerator) -> bool:
        """Whether any process got a signal (all processes agree, so they stop at the same step)."""
        flag = torch.tensor([float(self.signal is not None)], device=accelerator.device)
        return bool((accelerator.gather(flag) if accelerator.num_processes > 1 else flag).max() > 0)
