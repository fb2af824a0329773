"""One-line refusals for binaries driven by an ml_collections config flag (`--config=FILE:NAME`).

absl prints a usage screen for a bad flag, and ml_collections turns a config's own error into a traceback
(an unknown config name), a deferred IOError (a missing config file) or an AttributeError (an override of a
field the config lacks). `parse_flags` reports each as one line `error: --option: ...` and exits `status`:

  app.run(main, flags_parser=config_cli.parse_flags)
"""

from __future__ import annotations

import sys

from absl import flags

EXIT_INVALID, EXIT_NON_FINITE, EXIT_RUNTIME = 2, 3, 4


def fail(message: str, status: int = EXIT_INVALID) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def run_work(work, where):
  """`work()`, with its failures as one line and the run binaries' exit codes: 2 an invalid option
  (ValueError: nothing was written), 3 a non-finite loss, 4 a failure at run time (disk full, a file
  removed under the run, interrupted), followed by `where()`: what the work dir keeps for a rerun."""
  from behemoth_jax.train import loop  # pylint: disable=g-import-not-at-top
  try:
    return work()
  except ValueError as e:
    fail(str(e))
  except loop.NonFiniteLossError as e:
    fail(str(e), EXIT_NON_FINITE)
  except OSError as e:
    fail(f"{e}; {where()}", EXIT_RUNTIME)
  except KeyboardInterrupt:
    fail(f"interrupted; {where()}", EXIT_RUNTIME)


def config_path(argv: list[str], flag: str = "config") -> str:
  """The file part of the last `--config=FILE:NAME` in argv ('?' if none)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")]
  return values[-1].split(":", 1)[0] if values else "?"


def missing_config_file(argv: list[str], flag: str = "config") -> str:
  return f"--{flag}: cannot load {config_path(argv, flag)} (no such file); give --{flag}=FILE:NAME"


def _unknown_field(argv: list[str], error: Exception, flag: str) -> str:
  """`--config.a.b: not a field of the config; config.a has ...` for an override the config lacks."""
  field = str(error).strip("\"' ")
  overrides = [a[2:].split("=", 1)[0] for a in argv if a.startswith(f"--{flag}.")]
  name = next((o for o in overrides if field in o.split(".")), overrides[0] if overrides else flag)
  parent = name.rsplit(".", 1)[0]
  try:
    node = flags.FLAGS[flag].value  # None while the flags are being parsed: load the config again
    if node is None:
      node = flags.FLAGS[flag].parser.parse([a for a in argv if a.startswith(f"--{flag}=")][-1].split("=", 1)[1])
    for part in parent.split(".")[1:]:
      node = node[part]
    known = f"; {parent} has {', '.join(sorted(node.keys()))}"
  except Exception:  # pylint: disable=broad-except
    known = ""
  return f"--{name}: not a field of the config{known}"


def parse_flags(argv: list[str], status: int = EXIT_INVALID, flag: str = "config") -> list[str]:
  """flags.FLAGS(argv), with every refusal as one line on stderr and exit `status`."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) > 1 and "Error whilst parsing config file" in lines[0]:
      # ml_collections appends the traceback; its last line is the config's own message.
      reason = lines[-1].split(": ", 1)[-1]
      fail(reason if reason.startswith(f"--{flag}") else f"--{flag}: {reason}", status)
    fail(lines[0] if lines else type(e).__name__, status)
  except (AttributeError, KeyError) as e:  # an override of a field the config does not have
    fail(_unknown_field(argv, e, flag), status)
  except OSError:  # an override given, but the config file could not be loaded
    fail(missing_config_file(argv, flag), status)
