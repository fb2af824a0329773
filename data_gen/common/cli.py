"""What every binary shares: app.run with flag errors and OptionErrors reported as one line."""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags

from data_gen.common.errors import OptionError


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl prints a usage screen; one line is what a script can act on
    _fail(str(e).splitlines()[0])


def run(main: Callable[[list[str]], None]) -> None:
  """app.run, with flag errors and OptionErrors reported as one line and exit status 1."""

  def guarded(argv):
    try:
      main(argv)
    except OptionError as e:
      _fail(str(e))

  app.run(guarded, flags_parser=_parse_flags)
