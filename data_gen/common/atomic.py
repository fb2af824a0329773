"""All-or-nothing outputs: files written through a temporary sibling and a rename, folders likewise."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile

from data_gen.common.errors import OptionError


def write_bytes_atomic(path, data: bytes) -> None:
  """Writes a file through a temporary sibling and a rename: readers see the old or the new, never half."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.partial")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def write_text_atomic(path, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj, allow_nan: bool = False) -> None:
  """One indented, key-sorted JSON document (the work dirs' config/summary files), written atomically."""
  write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=allow_nan) + "\n")


@contextlib.contextmanager
def atomic_directory(path, overwrite: bool = False, option: str = "output_dir"):
  """Yields a temporary folder beside `path`; renames it to `path` only if the block succeeds."""
  path = pathlib.Path(path)
  if path.exists() and not overwrite:
    raise OptionError(option, f"{path} already exists; choose a new folder or pass --overwrite")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
  except OSError as e:  # a parent is a file, or not writable
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    reason = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
    raise OptionError(option, f"cannot create {path}: {reason}") from None
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if path.exists():
    old = path.with_name(f".{path.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
    path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
  else:
    tmp.rename(path)
