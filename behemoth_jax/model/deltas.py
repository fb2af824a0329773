"""Weight deltas: what an edit changes, as a pytree keyed by parameter path.

A delta mirrors the parameter dict on the leaves it changes only, e.g.
`{"layers": {"3": {"mlp": {"down": {"kernel": LowRank(...)}}}}}`. A leaf is either
- dense: an array shaped like the parameter, added to it (fine-tuning, closed-form edits), or
- `LowRank(a [in, r], b [r, out], scale)`: W + scale * a @ b, which the forward applies as
  x W + scale * (x a) b, so that a vmap over F edits never holds F copies of a kernel.

Deltas compose (sequential edits: `compose(first, second)`), merge into the parameters (`merge`, for export
or as the frozen base of the next edit), report their rank and norm, and save/load with orbax.

Targets select parameters by regex over paths (big_vision's masks) with named presets (`TARGET_PRESETS`);
`resolve_targets(params, "mlp_down&layer:2")` returns the matching paths.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class LowRank:
  a: jax.Array  # [in, r] (LoRA's A, transposed to our x @ W layout)
  b: jax.Array  # [r, out]
  # LoRA's alpha / r: static, so optimizers over a delta never train it and vmapped edits share it.
  scale: float = flax.struct.field(pytree_node=False, default=1.0)

  @property
  def rank(self) -> int:
    return self.a.shape[-1]

  def dense(self) -> jax.Array:
    return self.scale * (self.a @ self.b)


def is_leaf(x) -> bool:
  return isinstance(x, LowRank)


def add_dense(param: jax.Array, leaf) -> jax.Array:
  """param + delta for a parameter used other than as a matmul kernel (bias, norm scale, embedding)."""
  if leaf is None:
    return param
  return param + (leaf.dense() if isinstance(leaf, LowRank) else leaf)


def matmul(x, kernel, leaf, dtype):
  """x @ (kernel + delta) in `dtype`; a low-rank delta as two thin matmuls beside the frozen one."""
  xd = x.astype(dtype)
  if leaf is None:
    return xd @ kernel.astype(dtype)
  if isinstance(leaf, LowRank):
    y = xd @ kernel.astype(dtype)
    return y + (leaf.scale * ((xd @ leaf.a.astype(dtype)) @ leaf.b.astype(dtype))).astype(dtype)
  return xd @ (kernel + leaf).astype(dtype)


# ---- paths and targets ------------------------------------------------------------------------------

_L = r"layers/\d+"
TARGET_PRESETS = {
    "all": r".*",
    "blocks": rf"{_L}/.*",
    "mlp": rf"{_L}/mlp/.*",
    "attn": rf"{_L}/attn/.*",
    "mlp_down": rf"{_L}/mlp/down/.*",
    "mlp_up": rf"{_L}/mlp/up/.*",
    "attn_qkv": rf"{_L}/attn/qkv/.*",
    "attn_out": rf"{_L}/attn/out/.*",
    "kernels": r".*/kernel",
    "embed": r"embed/.*",
    "head": r"head/.*",
}
TARGETS_HELP = ("comma-separated union of terms; a term is an `&`-joined intersection of presets "
                f"({', '.join(TARGET_PRESETS)}), layer:<k> (or layer:<a>-<b>), or a regex over parameter "
                "paths such as layers/3/mlp/down/kernel")


def path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def flatten(tree) -> dict[str, Any]:
  """{"layers/3/mlp/down/kernel": leaf}; LowRank leaves stay whole."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
  return {path_name(p): x for p, x in flat}


def unflatten(flat: dict[str, Any]) -> dict:
  out: dict = {}
  for name, leaf in flat.items():
    node = out
    *parents, last = name.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = leaf
  return out


def _term_regex(term: str) -> re.Pattern:
  if term in TARGET_PRESETS:
    return re.compile(TARGET_PRESETS[term])
  m = re.fullmatch(r"layer:(\d+)(?:-(\d+))?", term)
  if m:
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    return re.compile("layers/(" + "|".join(str(i) for i in range(lo, hi + 1)) + ")/.*")
  try:
    return re.compile(term)
  except re.error as e:
    raise ValueError(f"not a preset, layer:<k> or a valid regex: {term!r} ({e})") from e


def resolve_targets(params: dict, spec: str, kernels_only: bool = False) -> list[str]:
  """Parameter paths selected by `spec` (see TARGETS_HELP), in parameter order; ValueError if none."""
  paths = list(flatten(params))
  terms = [t.strip() for t in spec.split(",") if t.strip()]
  if not terms:
    raise ValueError(f"empty target spec; {TARGETS_HELP}")
  chosen = set()
  for term in terms:
    regexes = [_term_regex(part.strip()) for part in term.split("&")]
    chosen |= {p for p in paths if all(r.fullmatch(p) for r in regexes)}
  if kernels_only:
    chosen = {p for p in chosen if p.endswith("/kernel")}
  selected = [p for p in paths if p in chosen]
  if not selected:
    what = "matmul kernels" if kernels_only else "parameters"
    raise ValueError(f"{spec!r} matches no {what}; {TARGETS_HELP}")
  return selected


def target_layers(paths: list[str]) -> list[int]:
  return sorted({int(p.split("/")[1]) for p in paths if p.startswith("layers/")})


def first_layer(paths: list[str], num_layers: int) -> int:
  """The lowest layer a delta on `paths` touches: everything below it is frozen (0 for the embedding)."""
  if any(p.startswith("embed/") for p in paths):
    return 0
  return min(target_layers(paths), default=num_layers)


# ---- making deltas ----------------------------------------------------------------------------------


def zeros(params: dict, paths: list[str]) -> dict:
  """A dense delta of zeros on `paths` (fine-tuning starts at the frozen weights)."""
  flat = flatten(params)
  return unflatten({p: jnp.zeros_like(flat[p]) for p in paths})


def full_rank(params: dict, path: str) -> int:
  shape = flatten(params)[path].shape
  return int(min(shape))


def lora(key: jax.Array, params: dict, paths: list[str], rank: int, alpha: float | None = None) -> dict:
  """LoRA factors on kernel `paths`: a ~ N(0, 1/in), b = 0 (the edit starts at the identity), scale
  alpha / rank (alpha defaults to rank: scale 1)."""
  flat = flatten(params)
  out = {}
  for i, p in enumerate(paths):
    n_in, n_out = flat[p].shape
    a = jax.random.normal(jax.random.fold_in(key, i), (n_in, rank), jnp.float32) / np.sqrt(n_in)
    out[p] = LowRank(a=a, b=jnp.zeros((rank, n_out), jnp.float32),
                     scale=float(alpha if alpha is not None else rank) / rank)
  return unflatten(out)


# ---- operations ---------------------------------------------------------------------------------------


def densify(delta: dict) -> dict:
  return jax.tree.map(lambda x: x.dense() if isinstance(x, LowRank) else x, delta, is_leaf=is_leaf)


def merge(params: dict, delta: dict | None) -> dict:
  """The parameters with the delta folded in (params untouched where the delta has no leaf)."""
  if not delta:
    return params
  flat_d = flatten(delta)
  unknown = set(flat_d) - set(flatten(params))
  if unknown:
    raise ValueError(f"delta has leaves the model does not: {sorted(unknown)[:3]}")
  return jax.tree_util.tree_map_with_path(
      lambda path, w: add_dense(w, flat_d.get(path_name(path))), params)


def _compose_leaf(first, second):
  if isinstance(first, LowRank) and isinstance(second, LowRank):
    return LowRank(a=jnp.concatenate([first.a, second.a], -1),
                   b=jnp.concatenate([first.scale * first.b, second.scale * second.b], -2),
                   scale=1.0)
  dense = lambda x: x.dense() if isinstance(x, LowRank) else x
  return dense(first) + dense(second)


def compose(first: dict, second: dict) -> dict:
  """The delta of applying `first`, then `second` on top of it (additive; low-rank ranks add up)."""
  a, b = flatten(first), flatten(second)
  out = dict(a)
  for p, leaf in b.items():
    out[p] = _compose_leaf(a[p], leaf) if p in a else leaf
  return unflatten(out)


def scale_by(delta: dict, factor: float) -> dict:
  def f(x):
    return x.replace(scale=x.scale * float(factor)) if isinstance(x, LowRank) else x * factor
  return jax.tree.map(f, delta, is_leaf=is_leaf)


def ranks(delta: dict, rtol: float = 1e-5) -> dict[str, int]:
  """Numerical rank of each leaf's change (singular values above rtol * the largest); 1-D leaves count 1
  if non-zero."""
  out = {}
  for p, leaf in flatten(delta).items():
    d = np.asarray(leaf.dense() if isinstance(leaf, LowRank) else leaf, np.float64)
    if d.ndim < 2:
      out[p] = int(np.any(d != 0))
      continue
    s = np.linalg.svd(d, compute_uv=False)
    out[p] = int((s > rtol * s.max()).sum()) if s.size and s.max() > 0 else 0
  return out


def norms(delta: dict) -> dict[str, float]:
  """Frobenius norm of each leaf's change, and "total" over all of them."""
  out = {p: float(jnp.linalg.norm((leaf.dense() if isinstance(leaf, LowRank) else leaf).ravel()))
         for p, leaf in flatten(delta).items()}
  out["total"] = float(np.sqrt(sum(v * v for v in out.values())))
  return out


def describe(delta: dict) -> dict:
  """JSON-able summary: per path the kind, shape, rank and norm."""
  r, n = ranks(delta), norms(delta)
  rows = {}
  for p, leaf in flatten(delta).items():
    kind = f"lowrank{leaf.rank}" if isinstance(leaf, LowRank) else "dense"
    shape = leaf.dense().shape if isinstance(leaf, LowRank) else leaf.shape
    rows[p] = {"kind": kind, "shape": list(shape), "rank": r[p], "norm": n[p]}
  return {"leaves": rows, "norm": n["total"]}


def check_compatible(params: dict, delta: dict) -> None:
  """ValueError naming the first leaf whose path or shape the model does not have."""
  flat_p = flatten(params)
  for p, leaf in flatten(delta).items():
    if p not in flat_p:
      raise ValueError(f"the delta changes {p}, which this model does not have")
    shape = tuple(leaf.dense().shape if isinstance(leaf, LowRank) else leaf.shape)
    if shape != tuple(flat_p[p].shape):
      raise ValueError(f"the delta's {p} is {shape}, the model's is {tuple(flat_p[p].shape)}")


# ---- saving -----------------------------------------------------------------------------------------

_LOWRANK_KEYS = ("lowrank_a", "lowrank_b", "lowrank_scale")


def to_storable(delta: dict) -> dict:
  """Plain nested dicts of arrays (a LowRank leaf becomes {lowrank_a, lowrank_b, lowrank_scale})."""
  return unflatten({p: ({k: v for k, v in zip(_LOWRANK_KEYS, (x.a, x.b, np.float32(x.scale)))}
                        if isinstance(x, LowRank) else x) for p, x in flatten(delta).items()})


def from_storable(tree: dict) -> dict:
  def walk(node):
    if isinstance(node, dict):
      if set(node) == set(_LOWRANK_KEYS):
        return LowRank(a=jnp.asarray(node["lowrank_a"]), b=jnp.asarray(node["lowrank_b"]),
                       scale=float(np.asarray(node["lowrank_scale"])))
      return {k: walk(v) for k, v in node.items()}
    return jnp.asarray(node)
  return walk(tree)


def save(path, delta: dict) -> None:
  """Writes the delta as an orbax checkpoint directory at `path` (atomic: orbax renames when complete)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(pathlib.Path(path).absolute(), jax.device_get(to_storable(delta)))


def load(path) -> dict:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"no delta at {path}")
  with ocp.StandardCheckpointer() as ckptr:
    return from_storable(ckptr.restore(path))
