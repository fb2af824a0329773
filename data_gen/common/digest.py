"""Content fingerprints: a short sha256 of a JSON-serialisable value, computed one way wherever it is needed."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable


def json_digest(obj: Any, length: int, default: Callable[[Any], Any] | None = None) -> str:
  """The first `length` hex digits of sha256 over `obj` as key-sorted JSON (`default` as in json.dumps)."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()[:length]
