r"""Causal tracing of a pretrained model's facts (behemoth_jax/edit/tracing.py).

  python -m experiments.trace --pretrained=runs/small --workdir=runs/trace_small --num_probes=100

Probes: `num_probes` subjects (drawn by --seed) with relationship --relationship, in the statement form
("sro", the edit sets' remapping template) whose next token is the object; only probes the model answers
correctly clean are kept. Writes W/trace.json (per component, layer and position: mean indirect effect
= restored - corrupted probability, with a 95% normal-approximation CI over probes; the clean and corrupted
means; `traced_layer`: the layer whose MLP restoration at the subject's last token has the largest mean
effect; `mlp_peak`: the (layer, position) of the largest MLP effect anywhere) and W/trace_<component>.png
heatmaps. Invalid options: one line, exit 2, nothing written.
"""

from __future__ import annotations

import json
import math
import pathlib

from absl import app, flags, logging

from experiments.configs import config_cli

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir (python -m experiments.pretrain).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (must not exist yet).")
_NUM = flags.DEFINE_integer("num_probes", 100, "Subjects traced.")
_REL = flags.DEFINE_integer("relationship", 0, "Relationship of the traced facts.")
_NOISE = flags.DEFINE_float("noise", 3.0, "Noise scale in standard deviations of the embedding table (ROME: 3).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the probe draw and the noise.")
_SAMPLES = flags.DEFINE_integer("samples", 1, "Noise draws per probe, probabilities averaged (ROME's code: 10).")
_WINDOW = flags.DEFINE_integer("window", 1, "MLP / attention layers restored at once around each layer "
                               "(ROME's code: 10).")
flags.mark_flags_as_required(["pretrained", "workdir"])


def main(argv):
  fail = config_cli.fail
  if len(argv) > 1:
    fail(f"unexpected positional arguments {argv[1:]}: options are --pretrained=DIR, --workdir=DIR, "
         "--num_probes=N, --relationship=R, --noise=X, --seed=S, --samples=K, --window=W")
  if _NUM.value < 1:
    fail(f"--num_probes: must be >= 1, got {_NUM.value}")
  if _SAMPLES.value < 1:
    fail(f"--samples: must be >= 1, got {_SAMPLES.value}")
  if _WINDOW.value < 1:
    fail(f"--window: must be >= 1, got {_WINDOW.value}")
  if not (math.isfinite(_NOISE.value) and _NOISE.value > 0):
    fail(f"--noise: must be a finite number > 0, got {_NOISE.value}")
  workdir = pathlib.Path(_WORKDIR.value)
  if workdir.exists():
    fail(f"--workdir: must not exist yet (traces are not resumed), got {workdir}")
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from behemoth_jax.edit import runner, tracing  # pylint: disable=g-import-not-at-top
  from data_gen.common import atomic  # pylint: disable=g-import-not-at-top
  from data_gen.edit_sets.edits import EVAL, EditSplit  # pylint: disable=g-import-not-at-top
  from data_gen.world.corpus import SUBJECT_OBJECT  # pylint: disable=g-import-not-at-top
  try:
    params, cfg, ds = runner.load_pretrained_checked(_PRETRAINED.value)
  except ValueError as e:
    fail(str(e))
  S, R = ds.graph.objects_SxR.shape
  if not 0 <= _REL.value < R:
    fail(f"--relationship: must be in [0, {R - 1}], got {_REL.value}")
  rng = np.random.default_rng(_SEED.value)
  heads = np.sort(rng.choice(S, size=min(_NUM.value, S), replace=False)).astype(np.int32)
  rel = np.full_like(heads, _REL.value)
  tail = ds.graph.objects_SxR[heads, _REL.value].astype(np.int32)
  split = EditSplit("trace", EVAL, SUBJECT_OBJECT, "remapping", heads, rel, tail, tail, np.ones_like(tail))
  prompt, answer, subject, last_subject = tracing.fact_probes(ds, split)
  ok = tracing.known(params, cfg, prompt, answer)
  prompt, answer, subject, last_subject = prompt[ok], answer[ok], subject[ok], last_subject[ok]
  if not len(prompt):
    fail(f"--relationship: the model answers none of the {len(heads)} traced facts of relationship {_REL.value}")
  eff = tracing.mean_effects(params, cfg, prompt, subject, answer, jax.random.key(_SEED.value), _NOISE.value,
                             samples=_SAMPLES.value, window=_WINDOW.value)
  out = {"num_probes": int(len(prompt)), "num_drawn": int(len(heads)), "relationship": _REL.value,
         "noise_std": eff["noise_std"], "positions": prompt.shape[1],
         "subject_last_position": sorted(set(last_subject.tolist())), "components": {},
         "clean_p": eff["clean_p"], "corrupted_p": eff["corrupted_p"]}
  for component, e in eff["components"].items():
    mean, sem = e["mean"], e["sem"]
    out["components"][component] = {"mean_indirect_effect": mean.tolist(),
                                    "ci95": [(mean - 1.96 * sem).tolist(), (mean + 1.96 * sem).tolist()]}
  pos = int(np.bincount(last_subject).argmax())  # prompts of one relationship share one layout
  mlp = eff["components"]["mlp"]["mean"]
  out["traced_layer"] = tracing.pick_layer(mlp, pos)
  # Where the MLPs matter most over every position (on models trained here: the last prompt token, not the
  # subject; the edit configs' layer -1 traces at their key position, experiments/configs/edit.py).
  peak = np.unravel_index(mlp.argmax(), mlp.shape)
  out["mlp_peak"] = {"layer": int(peak[0]), "position": int(peak[1]), "effect": float(mlp[peak])}
  workdir.mkdir(parents=True)
  atomic.write_text_atomic(workdir / "trace.json", json.dumps(out, indent=1) + "\n")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  for component, v in out["components"].items():
    fig, ax = plt.subplots(figsize=(6, 3))
    im = ax.imshow(np.asarray(v["mean_indirect_effect"]), aspect="auto", cmap="Purples")
    ax.set_xlabel("position (subject's last token: %d)" % pos)
    ax.set_ylabel("layer")
    ax.set_title(f"restore {component}: mean indirect effect, {len(prompt)} probes")
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(workdir / f"trace_{component}.png", dpi=100)
    plt.close(fig)
  print(f"traced layer (MLP at the subject's last token): {out['traced_layer']}; clean p {out['clean_p']:.3f}, "
        f"corrupted p {out['corrupted_p']:.3f}; written to {workdir}")


def _parse(argv):
  """absl's parser with its errors as one `error: ...` line (exit 2), like the config-driven binaries."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    config_cli.fail(str(e).splitlines()[0])
  return argv


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
