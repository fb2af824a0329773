r"""Exports a pretrained (optionally edited) model as a Hugging Face GPT-NeoX checkpoint.

  python -m experiments.export --pretrained=runs/small --output=runs/small-hf
  python -m experiments.export --pretrained=runs/small --delta=runs/edit --output=runs/edited-hf

Writes OUTPUT/config.json (GPTNeoXForCausalLM), model.safetensors (float32), generation_config.json,
tokenizer.json and tokenizer_config.json (the dataset's word-level tokenizer, for AutoTokenizer) and
behemoth.json (where the weights came from). With --delta (an edit work dir or a delta directory) the
delta is merged into the weights first. OUTPUT appears only once complete; any invalid input is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import json
import pathlib

from absl import flags

from data_gen import cli
from data_gen.errors import OptionError, require

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir (python -m experiments.pretrain).")
_DELTA = flags.DEFINE_string("delta", None, "Edit work dir (its deltas/) or a delta directory to merge.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to create for the Hugging Face checkpoint.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.mark_flags_as_required(["pretrained", "output"])


def read_pretrained(workdir):
  """(params, model config, dataset, step) of the latest checkpoint of a pretraining work dir."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from behemoth_jax import pretrained  # pylint: disable=g-import-not-at-top
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


def delta_dir(path) -> pathlib.Path:
  """The delta directory a --delta value names: itself, or an edit work dir's deltas/."""
  require(bool(str(path)), "delta", "must name an edit work dir or a delta directory, got an empty value")
  p = pathlib.Path(path)
  require(p.is_dir(), "delta", f"{p} is not a directory (an edit work dir or a delta directory)")
  return p / "deltas" if (p / "deltas").is_dir() else p


def merge_delta(params, path):
  """params with the delta at `path` merged in; OptionError if it is not a delta of this model."""
  from behemoth_jax import deltas  # pylint: disable=g-import-not-at-top
  d = delta_dir(path)
  try:
    delta = deltas.load(d)
  except Exception as e:  # pylint: disable=broad-except
    # orbax errors span many lines; the first says what was wrong with the folder.
    raise OptionError("delta", f"{d} is not a readable delta: {str(e).splitlines()[0] if str(e) else e!r}")
  try:
    deltas.check_compatible(params, delta)
  except ValueError as e:
    raise OptionError("delta", f"{d} is a delta of another model: {e}") from None
  return deltas.merge(params, delta)


def export(pretrained, output, delta=None, overwrite: bool = False) -> pathlib.Path:
  """Writes the checkpoint folder `output`; OptionError (one line) for any invalid input, before writing."""
  from behemoth_jax import hf  # pylint: disable=g-import-not-at-top
  require(bool(str(output)), "output", "must name a folder to create, got an empty value")
  out = pathlib.Path(output)
  # Checked before the (slow) loading; atomic_directory checks again at the rename.
  require(overwrite or not out.exists(), "output",
          f"{out} already exists; choose a new folder or pass --overwrite")
  params, cfg, dataset, step = read_pretrained(pretrained)
  if delta:
    params = merge_delta(params, delta)
  provenance = {"pretrained": str(pathlib.Path(pretrained).absolute()), "step": int(step),
                "delta": str(delta_dir(delta).absolute()) if delta else None}
  with cli.atomic_directory(out, overwrite=overwrite, option="output") as tmp:
    hf.save(tmp, params, cfg, vocab=dataset.vocab, extra=provenance)
  return out


def main(argv):
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  out = export(_PRETRAINED.value, _OUTPUT.value, _DELTA.value, _OVERWRITE.value)
  print(f"wrote {out} (load with transformers.GPTNeoXForCausalLM.from_pretrained and AutoTokenizer)")


if __name__ == "__main__":
  cli.run(main)
