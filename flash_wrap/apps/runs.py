"""What keeps a run's word: output folders checked before work, an exclusive lock while a run
writes, and fingerprints that tell whether a resumed run still has the same model and data.

Rules (README, "Runs that keep their word"):

* an output folder must not be a file, lie below a file, be unwritable, or be (or lie inside) the
  data folder, since figures written there would overwrite inputs or be evaluated next time;
* one process at a time writes an output folder (``.flash-wrap.lock``, an ``fcntl`` lock that
  the operating system releases when the process dies, so a crash leaves no stale lock);
* a resume continues only what provably belongs to the same run: the same arguments, the same
  model content and the same image files; when the folder's state is unclear it refuses and
  deletes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import InvalidInput

LOCK_NAME = ".flash-wrap.lock"


class RunFolderError(InvalidInput):
    """An output folder that cannot be used as asked (what, where, and how to fix it)."""


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_output_folder(out: str | Path, *, inputs: Sequence[str | Path] = (), option: str = "--out",
                        may_contain_inputs: bool = False) -> Path:
    """Check (and create) an output folder before any heavy work; returns it resolved.

    Args:
        out: the folder to write.
        inputs: folders the run reads (``--data``, ``--model``): ``out`` must be none of them, lie
            inside none of them and (unless ``may_contain_inputs``) contain none of them.
        option: how the command line calls ``out``, for the messages.
    """
    path = Path(out).expanduser()
    resolved = path.resolve()
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{option} {path} is a file, not a folder; choose a folder path")
    for parent in resolved.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"{option} {path} lies below {parent}, which is a file")
    for folder in inputs:
        source = Path(folder).expanduser().resolve()
        if resolved == source or _is_within(resolved, source):
            raise RunFolderError(
                f"{option} {path} is inside the input folder {folder}: results written there would overwrite "
                "or add to the inputs; choose an output folder outside it"
            )
        if not may_contain_inputs and _is_within(source, resolved):
            raise RunFolderError(
                f"the input folder {folder} lies inside {option} {path}: files written there could overwrite the "
                "inputs; choose an output folder that does not contain them"
            )
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        probe = resolved / f".flash-wrap-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = "the file system is read-only" if err.errno == errno.EROFS else err.strerror or str(err)
        raise RunFolderError(f"{option} {path} cannot be written: {reason}") from None
    return resolved


@contextmanager
def exclusive(folder: str | Path, *, what: str = "flash-wrap") -> Iterator[Path]:
    """Hold the folder's lock for the ``with`` block; refuses at once if another process holds it."""
    lock_path = Path(folder) / LOCK_NAME
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderError(
                f"{folder} is being written by {holder} (lock {lock_path}); wait for it to finish or choose "
                "another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        try:
            yield Path(folder)
        finally:
            lock_path.unlink(missing_ok=True)  # leave no file behind in the user's folder
    finally:
        handle.close()  # closing releases the lock


def fingerprint_files(files: Sequence[Path], root: Path | None = None) -> str:
    """SHA-256 over the files' relative names and contents, in the order given."""
    digest = hashlib.sha256()
    for file in files:
        name = file.relative_to(root).as_posix() if root is not None else file.name
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


#: Files that describe a model without being part of it (model cards, figures, git metadata):
#: editing them does not change the model, so they are outside its fingerprint.
DOCUMENT_SUFFIXES = frozenset({".md", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"})
DOCUMENT_NAMES = frozenset({".gitattributes", ".gitignore", "LICENSE"})


def fingerprint_folder(folder: Path, *, skip: Sequence[str] = ("training",), documents: bool = False) -> str:
    """SHA-256 over the files of a model folder that define the model (weights, configs, tokenizer
    files), following symbolic links to folders (each real folder once), except the top-level
    folders in ``skip`` (training checkpoints do not change the model) and, unless ``documents``,
    the model card and figures (:data:`DOCUMENT_SUFFIXES`, :data:`DOCUMENT_NAMES`)."""
    folder = Path(folder)
    files: list[Path] = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link loop, or the same folder twice
            dirs[:] = []
            continue
        seen.add(real)
        if Path(root) == folder:
            dirs[:] = [d for d in dirs if d not in skip]
        files += [Path(root) / n for n in names if n != LOCK_NAME and (documents or not _is_document(n))]
    return fingerprint_files(sorted(f for f in files if f.is_file()), folder)


def _is_document(name: str) -> bool:
    return name in DOCUMENT_NAMES or Path(name).suffix.lower() in DOCUMENT_SUFFIXES


def _shown(value: object) -> str:
    """An argument's recorded value as a message shows it (``unset`` for ``None`` or absent)."""
    if value is None or value is False:
        return "unset"
    if value is True:
        return "set"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return str(value)


def identity_differences(previous: dict, current: dict) -> list[str]:
    """What differs between two run identities (``run.json``: ``arguments``, ``model``, ``data``,
    ``model_fingerprint``, ``data_fingerprint``, ``images``), named as a user would."""
    then, now = previous["arguments"], current["arguments"]
    changed = [f"--{k.replace('_', '-')} ({_shown(then.get(k))} then, {_shown(now.get(k))} now)"
               for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
    if previous["model_fingerprint"] != current["model_fingerprint"]:
        changed.append(f"model (its weights, configs or tokenizer files changed: {previous['model']} then, "
                       f"{current['model']} now)")
    if previous["data_fingerprint"] != current["data_fingerprint"] or previous["images"] != current["images"]:
        changed.append(f"set of images ({previous['images']} then, {current['images']} now, or their content)")
    if previous.get("severity_fingerprint") != current.get("severity_fingerprint"):
        changed.append(f"--severity-from bundle ({previous.get('severity_from') or 'none'} then, "
                       f"{current.get('severity_from') or 'none'} now, or its content)")
    return changed


#: Identity entries only some runs have (``eval --severity-from``).
OPTIONAL_IDENTITY = frozenset({"severity_from", "severity_fingerprint"})


def open_run(out: Path, identity: dict, *, records: str, run_file: str, resume: bool, command: str) -> bool:
    """Start or resume the run whose results go to the folder ``out``; returns whether the records
    already in ``out/records`` belong to this run (a resume), so the caller may keep them.

    A fresh run refuses a folder that holds records and writes ``identity`` to ``out/run_file``.
    A resume continues only a run whose recorded identity equals ``identity`` (see
    :func:`identity_differences`); records without a ``run_file`` are refused. Nothing is deleted
    when refusing."""
    config_file, records_file = out / run_file, out / records
    if resume:
        if not config_file.is_file():
            if records_file.is_file() and records_file.stat().st_size > 0:
                raise RunFolderError(
                    f"--resume: {out} has {records} but no {run_file}, so nothing says which run wrote "
                    "those records; nothing was deleted: move them away or choose another --out"
                )
            # nothing there yet: a resume of nothing is a fresh run
            config_file.write_text(json.dumps(identity, indent=2))
            return False
        previous = json.loads(config_file.read_text())
        if previous.get("seed_rule") != identity.get("seed_rule"):
            then = previous.get("seed_rule") or "the file name's bytes as a little-endian integer (seeds that collide)"
            raise RunFolderError(f"--resume: {out} drew its per-image seeds by {then}, this version by "
                                 f"{identity.get('seed_rule')}, and a run never mixes the two; start a new run in "
                                 "another --out")
        if set(previous) - OPTIONAL_IDENTITY != set(identity) - OPTIONAL_IDENTITY:
            raise RunFolderError(f"--resume: {config_file} was written by another version of {command}; "
                                 "start a new run in another --out")
        changed = identity_differences(previous, identity)
        if changed:
            raise RunFolderError(f"--resume: {out} was run with a different {', '.join(changed)}; "
                                 "resume with the same model, data and arguments, or choose another --out")
        return True
    if records_file.is_file() and records_file.stat().st_size > 0:
        raise RunFolderError(f"{records_file} exists: pass --resume to continue that run, or choose another --out")
    records_file.unlink(missing_ok=True)  # empty: a run that failed before its first batch
    config_file.write_text(json.dumps(identity, indent=2))
    return False


def run_identity(arguments: dict, model: str | Path, data: str | Path, model_folder: Path,
                 files: Sequence[Path]) -> dict:
    """What ``run.json`` records and a resume must match (``eval`` and ``tune``): the comparable
    arguments, and fingerprints of the model folder's content and of the image files."""
    return {
        "arguments": arguments,
        "model": str(model),
        "data": str(data),
        "model_fingerprint": fingerprint_folder(model_folder),
        "data_fingerprint": fingerprint_files(files),
        "images": len(files),
    }


def check_new_file(path: str | Path, *, option: str = "--out", force: bool = False,
                   inputs: Sequence[str | Path] = ()) -> Path:
    """Check a single output file before any work: not an existing file unless ``force``, not a
    folder, its folder creatable and writable, and not inside an input folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise RunFolderError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not force:
        raise RunFolderError(f"{option} {path} exists; choose another name or pass --force to overwrite it")
    # a single file written next to the inputs cannot overwrite them, so only "inside" matters here
    check_output_folder(path.parent, inputs=inputs, option=f"the folder of {option}", may_contain_inputs=True)
    return path


def main_process() -> bool:
    """Rank 0 under a launcher (torchrun / accelerate set ``RANK``), or a lone process."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def exclusive_if_main(folder: str | Path, *, what: str) -> Iterator[None]:
    """:func:`exclusive` on the main process only (the other ranks of a launch share its lock)."""
    if main_process():
        Path(folder).mkdir(parents=True, exist_ok=True)
        with exclusive(folder, what=what):
            yield
    else:
        yield
