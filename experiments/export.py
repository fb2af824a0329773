r"""Exports a pretrained (optionally edited) model as a Hugging Face GPT-NeoX checkpoint.

  python -m experiments.export --pretrained=runs/small --output=runs/small-hf
  python -m experiments.export --pretrained=runs/small --delta=runs/edit --output=runs/edited-hf
  python -m experiments.export --pretrained=runs/small --delta=runs/edit_lora --edit_index=3 --output=DIR

Writes OUTPUT/config.json (GPTNeoXForCausalLM), model.safetensors (float32), generation_config.json,
tokenizer.json and tokenizer_config.json (the dataset's word-level tokenizer, for AutoTokenizer) and
behemoth.json (where the weights came from). With --delta (an edit work dir of python -m experiments.edit,
or a delta directory) the delta is merged into the weights first; an independent-mode run holds one delta
per edit, so --edit_index=i picks edit i (as numbered in its results.jsonl). OUTPUT appears only once
complete; any invalid input is one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import pathlib
import sys

from absl import flags

from data_gen.common import atomic, cli
from data_gen.common.errors import OptionError, require

_PRETRAINED = flags.DEFINE_string("pretrained", None,
                                  "Pretraining work dir (python -m experiments.pretrain).")
_DELTA = flags.DEFINE_string("delta", None, "Edit work dir (its deltas/) or a delta directory to merge.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to create for the Hugging Face checkpoint.")
_EDIT_INDEX = flags.DEFINE_integer(
    "edit_index", -1, "With --delta of an independent-mode edit run (one delta per edit): which edit "
    "(0-based, as in its results.jsonl); -1: none.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.mark_flags_as_required(["pretrained", "output"])


def read_pretrained(workdir):
  """(params, model config, dataset, step) of the latest checkpoint of a pretraining work dir."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from behemoth_jax.train import pretrained  # pylint: disable=g-import-not-at-top
  require(bool(str(workdir)), "pretrained", "must name a pretraining work dir, got an empty value")
  d = pathlib.Path(workdir)
  require(d.is_dir(), "pretrained", f"{d} is not a directory (a pretraining work dir is expected)")
  step = pretrained.latest_step(d)
  try:
    params, cfg, dataset = pretrained.load_pretrained(d, step)
  except pretrained.PretrainedError as e:
    raise OptionError("pretrained", str(e)) from None
  # Exported weights are float32 whatever the run computed in.
  return params, dataclasses.replace(cfg, compute_dtype="float32"), dataset, step


# What experiments.edit leaves in W/deltas/: one delta for the whole run (batch, sequential modes), or
# independent mode's chunk_<first edit>/ holding a chunk of per-edit deltas stacked on a leading axis.
_RUN_DELTAS = ("batch", "composed")
_CHUNK_PREFIX = "chunk_"


def _edit_run_delta(workdir: pathlib.Path, edit_index: int) -> tuple[pathlib.Path, int]:
  """(delta directory, index in its stack or -1) of an edit work dir."""
  root = workdir / "deltas"
  for name in _RUN_DELTAS:
    if (root / name).is_dir():
      require(edit_index < 0, "edit_index", f"only for independent-mode runs; {workdir} holds one delta "
              f"for all its edits ({root / name}), got {edit_index}")
      return root / name, -1
  chunks = sorted(int(c.name[len(_CHUNK_PREFIX):]) for c in root.glob(_CHUNK_PREFIX + "*")
                  if c.name[len(_CHUNK_PREFIX):].isdigit())
  require(bool(chunks), "delta", f"{root} holds no delta (was the edit run made with save_deltas=False, "
          f"or is it unfinished?)")
  require(edit_index >= 0, "edit_index", f"{workdir} is an independent-mode run (one delta per edit): "
          f"choose the edit to export, an integer >= 0")
  first = max(c for c in chunks if c <= edit_index) if chunks[0] <= edit_index else chunks[0]
  return root / f"{_CHUNK_PREFIX}{first:06d}", edit_index - first


def resolve_delta(path, edit_index: int = -1) -> tuple[pathlib.Path, int]:
  """(delta directory, index in a stacked delta or -1) that --delta and --edit_index name."""
  require(bool(str(path)), "delta", "must name an edit work dir or a delta directory, got an empty value")
  p = pathlib.Path(path)
  require(p.is_dir(), "delta", f"{p} is not a directory (an edit work dir or a delta directory)")
  if (p / "deltas").is_dir():
    return _edit_run_delta(p, edit_index)
  return p, edit_index


def merge_delta(params, path, edit_index: int = -1):
  """params with the delta that `path` (and `edit_index`) name merged in; OptionError if it is not a
  delta of this model."""
  from behemoth_jax.model import deltas  # pylint: disable=g-import-not-at-top
  d, index = resolve_delta(path, edit_index)
  try:
    delta = deltas.load(d)
  except Exception as e:  # pylint: disable=broad-except
    # orbax errors span many lines; the first says what was wrong with the folder.
    raise OptionError("delta", f"{d} is not a readable delta: {str(e).splitlines()[0] if str(e) else e!r}")
  stack = _stack_size(params, delta)
  if stack:
    first = edit_index - index  # the chunk's first edit (0 for a stack named directly)
    require(0 <= index < stack, "edit_index", f"{d} holds {stack} per-edit deltas (independent mode): "
            f"must be in [0, {first + stack - 1}], got {edit_index}" if edit_index >= 0 else
            f"{d} holds {stack} per-edit deltas (independent mode): choose one with --edit_index")
    delta = _take(delta, index)
  else:
    require(edit_index < 0, "edit_index", f"only for per-edit deltas (independent mode); {d} is one "
            f"delta, got {edit_index}")
  try:
    deltas.check_compatible(params, delta)
  except ValueError as e:
    raise OptionError("delta", f"{d} is a delta of another model: {e}") from None
  return deltas.merge(params, delta)


def _take(delta, index: int):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda x: x[index], delta)


def _stack_size(params, delta) -> int:
  """F if every leaf of `delta` is F deltas of this model stacked on a leading axis, else 0."""
  from behemoth_jax.model import deltas  # pylint: disable=g-import-not-at-top
  flat_p = deltas.flatten(params)
  sizes = set()
  for path, leaf in deltas.flatten(delta).items():
    if path not in flat_p:
      return 0
    shape = flat_p[path].shape
    if isinstance(leaf, deltas.LowRank):
      lead, tail = leaf.a.shape[:-2], (leaf.a.shape[-2], leaf.b.shape[-1])
    else:
      lead, tail = leaf.shape[:leaf.ndim - len(shape)], leaf.shape[leaf.ndim - len(shape):]
    if len(lead) != 1 or tuple(tail) != tuple(shape):
      return 0
    sizes.add(lead[0])
  return sizes.pop() if len(sizes) == 1 else 0


def export(pretrained, output, delta=None, overwrite: bool = False, edit_index: int = -1) -> pathlib.Path:
  """Writes the checkpoint folder `output`; OptionError (one line) for any invalid input, before writing."""
  from behemoth_jax.interop import hf  # pylint: disable=g-import-not-at-top
  require(bool(str(output)), "output", "must name a folder to create, got an empty value")
  out = pathlib.Path(output)
  # Checked before the (slow) loading; atomic_directory checks again at the rename.
  require(overwrite or not out.exists(), "output",
          f"{out} already exists; choose a new folder or pass --overwrite")
  require(delta is not None or edit_index < 0, "edit_index", f"needs --delta, got {edit_index}")
  params, cfg, dataset, step = read_pretrained(pretrained)
  provenance = {"pretrained": str(pathlib.Path(pretrained).absolute()), "step": int(step), "delta": None}
  if delta is not None:
    params = merge_delta(params, delta, edit_index)
    d, index = resolve_delta(delta, edit_index)
    provenance["delta"] = str(d.absolute())
    if index >= 0:
      provenance.update(edit_index=edit_index, index_in_delta=index)
  with atomic.atomic_directory(out, overwrite=overwrite, option="output") as tmp:
    hf.save(tmp, params, cfg, vocab=dataset.vocab, extra=provenance)
  return out


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected positional arguments {argv[1:]}: options are --pretrained, --output, --delta, "
          "--edit_index, --overwrite", file=sys.stderr)
    sys.exit(1)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  out = export(_PRETRAINED.value, _OUTPUT.value, _DELTA.value, _OVERWRITE.value, _EDIT_INDEX.value)
  print(f"wrote {out} (load with transformers.GPTNeoXForCausalLM.from_pretrained and AutoTokenizer)")


if __name__ == "__main__":
  cli.run(main)
