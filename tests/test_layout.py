"""The package layout: every import (lazy ones included) stays inside what its room may import, and no
module imports itself back through others. WORKSPACE "Layout" is the map these rules check."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("data_gen", "behemoth_jax", "experiments")

# room -> the rooms it may import (besides itself). A room is a package's sub-package; "data_gen" etc. alone
# name the modules at the package's top (the binaries).
_DATA = ["data_gen.common", "data_gen.world", "data_gen.export", "data_gen.edit_sets"]
ALLOWED = {
    "data_gen.common": [],
    "data_gen.world": ["data_gen.common"],
    "data_gen.export": ["data_gen.common", "data_gen.world"],
    "data_gen.edit_sets": ["data_gen.common", "data_gen.world", "data_gen.export"],
    "data_gen": _DATA,
    "behemoth_jax.model": _DATA,
    "behemoth_jax.evaluate": [*_DATA, "behemoth_jax.model"],
    "behemoth_jax.train": [*_DATA, "behemoth_jax.model", "behemoth_jax.evaluate"],
    "behemoth_jax.edit": [*_DATA, "behemoth_jax.model", "behemoth_jax.evaluate", "behemoth_jax.train"],
    "behemoth_jax.oracle": [*_DATA, "behemoth_jax.model", "behemoth_jax.evaluate", "behemoth_jax.train",
                            "behemoth_jax.edit"],
    "behemoth_jax.interop": [*_DATA, "behemoth_jax.model"],
    "behemoth_jax": [],
}
_LIB = [*_DATA, "behemoth_jax.model", "behemoth_jax.evaluate", "behemoth_jax.train", "behemoth_jax.edit",
        "behemoth_jax.oracle", "behemoth_jax.interop"]
ALLOWED.update({
    "experiments.configs": [*_LIB],
    "experiments.reporting": [*_LIB],
    "experiments.benchmarks": [*_LIB, "experiments.configs"],
    "experiments.replication": [*_LIB, "experiments.configs", "experiments.reporting"],
    # the binaries: any library room, never another binary
    "experiments": [*_LIB, "experiments.configs", "experiments.reporting", "experiments.benchmarks",
                    "experiments.replication"],
})


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for package in PACKAGES:
    for path in (REPO / package).rglob("*.py"):
      parts = path.relative_to(REPO).with_suffix("").parts
      name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
      out[name] = path
  return out


MODULES = _modules()


def _room(module: str) -> str:
  parts = module.split(".")
  if len(parts) >= 2 and ".".join(parts[:2]) in ALLOWED and (REPO / parts[0] / parts[1]).is_dir():
    return ".".join(parts[:2])
  return parts[0]


def _imports(module: str) -> set[str]:
  """Project modules that `module` imports anywhere in its file (top level, functions, lazily)."""
  found = set()
  for node in ast.walk(ast.parse(MODULES[module].read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        found.add(sub if sub in MODULES else node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
  return {m for m in found if m in MODULES}


def test_every_module_belongs_to_a_room_with_rules():
  assert len(MODULES) > 60
  assert {_room(m) for m in MODULES} <= set(ALLOWED)


def _violation(module: str, target: str) -> str | None:
  room, other = _room(module), _room(target)
  binary_to_binary = room == "experiments" and other == "experiments" and target != module
  if (other == room and not binary_to_binary) or other in ALLOWED[room]:
    return None
  return f"{module} (room {room}) imports {target} (room {other})"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle of `graph` (module -> modules it imports), or None: depth-first with colours."""
  colour, path = {}, []
  for root in sorted(graph):
    if root in colour:
      continue
    colour[root] = "grey"; path.append(root)
    todo = [iter(sorted(graph[root]))]
    while todo:
      child = next(todo[-1], None)
      if child is None:
        colour[path.pop()] = "black"; todo.pop()
      elif colour.get(child) == "grey":
        return path[path.index(child):] + [child]
      elif child not in colour:
        colour[child] = "grey"; path.append(child); todo.append(iter(sorted(graph.get(child, ()))))
  return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_inside_what_the_room_may_import(module):
  assert [v for t in sorted(_imports(module)) if (v := _violation(module, t))] == []


def test_no_import_cycle_between_modules():
  assert _find_cycle({m: _imports(m) - {m} for m in MODULES}) is None


def test_the_checks_catch_a_back_import_and_a_cycle():
  assert _violation("behemoth_jax.model.model", "behemoth_jax.edit.runner")  # a lower room importing a higher
  assert _violation("data_gen.world.corpus", "behemoth_jax.model.model")  # the generator never imports the model
  assert _violation("experiments.replication.runs", "experiments.paper")  # library code importing a binary
  assert _violation("experiments.paper", "experiments.edit")  # one binary importing another
  assert _violation("behemoth_jax.edit.runner", "behemoth_jax.train.loop") is None
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# ---- what the docs and the package metadata promise ------------------------------------------------------

_IMPORT_NAMES = {"orbax-checkpoint": "orbax", "absl-py": "absl", "ml_collections": "ml_collections"}


def _library_imports() -> set[str]:
  found = set()
  for path in MODULES.values():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found.update(a.name.split(".")[0] for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found.add(node.module.split(".")[0])
  return found


def test_every_runtime_dependency_is_imported_by_library_code():
  """A runtime dependency only tests use (chex was one) belongs in the dev extra."""
  import re  # pylint: disable=g-import-not-at-top
  import tomllib  # pylint: disable=g-import-not-at-top
  deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
  names = [re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in deps]
  used = _library_imports()
  assert [n for n in names if _IMPORT_NAMES.get(n, n.replace("-", "_")) not in used] == []


def test_make_commands_in_the_docs_name_real_targets_and_no_flags():
  """`make bench --suite=edit` (README once said so) is not a make invocation: make takes VAR=value."""
  import re  # pylint: disable=g-import-not-at-top
  targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
  for doc in ("README.md", "WORKSPACE.md"):
    for cmd in re.findall(r"`(make [^`]+)`", (REPO / doc).read_text()):
      words = cmd.split()[1:]
      assert words and words[0] in targets, f"{doc}: {cmd}"
      assert all(not w.startswith("-") for w in words), f"{doc}: {cmd} (make options are VAR=value)"
