"""The fact graph: subjects x relationships -> objects, drawn vectorized from one seed.

All members are indices local to their kind: subject s in [0, S), relationship r in [0, R), object o in
[0, O) scoped to its relationship (object 3 of r=0 and object 3 of r=1 are different words), nested value
n in [0, N) scoped the same way. `vocab.Vocab` turns them into token ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_gen.common.errors import OptionError, check_fraction, check_positive, require

NONE = -1  # "no such value" in every int array (no minority object, no nesting).


@dataclasses.dataclass(frozen=True)
class GraphConfig:
  """Shape and statistics of the fact graph. Defaults are the original's."""

  num_subjects: int = 100_000
  num_relationships: int = 6
  num_objects: int = 400
  # Dissenting facts: this fraction of all (s, r) pairs gets a second, different object.
  minority_position_entity_frac: float = 0.0
  correlated_pair: bool = False
  correlation_strength: float = 1.0
  binarize_first_correlated: bool = False
  num_nested_objects: int = 0
  # Subjects whose facts also appear as questions in pretraining (when the corpus's questions_frac > 0);
  # the rest are held out for the Q/A probes.
  questions_entity_frac: float = 0.5

  def validate(self) -> None:
    check_positive(self.num_subjects, "subjects")
    check_positive(self.num_relationships, "relationships")
    check_positive(self.num_objects, "objects")
    check_fraction(self.minority_position_entity_frac, "minority_position_entity_frac")
    check_fraction(self.questions_entity_frac, "questions_entity_frac")
    require(self.num_nested_objects >= 0, "num_nested_objects",
            f"must be >= 0 (0 disables nesting), got {self.num_nested_objects}")
    if self.minority_position_entity_frac > 0:
      require(self.num_objects >= 2, "objects", "must be >= 2 when there are dissenting facts")
    if self.num_nested_objects:
      require(self.num_objects % self.num_nested_objects == 0, "num_nested_objects",
              f"must divide --objects={self.num_objects}, got {self.num_nested_objects}")
      require(self.minority_position_entity_frac == 0, "minority_position_entity_frac",
              "must be 0 with --num_nested_objects (dissenting facts do not combine with nesting)")
    if self.binarize_first_correlated and not self.correlated_pair:
      raise OptionError("binarize_first_correlated", "needs --correlated_pair")
    if self.correlated_pair:
      require(self.minority_position_entity_frac == 0, "minority_position_entity_frac",
              "must be 0 with --correlated_pair (dissenting facts do not combine with correlation)")
      require(self.num_relationships >= 2, "relationships", "must be >= 2 with --correlated_pair")
      require(self.num_objects >= 2, "objects", "must be >= 2 with --correlated_pair")
      c = self.correlation_strength
      require(1.0 / self.num_objects < c <= 1.0, "correlation_strength",
              f"must be in (1/objects, 1] = ({1.0 / self.num_objects:.4g}, 1], got {c}")
      if self.binarize_first_correlated:
        require(c > 0.5, "correlation_strength",
                f"must be in (0.5, 1] with --binarize_first_correlated, got {c}")

  @property
  def nested(self) -> bool:
    return self.num_nested_objects > 0


@dataclasses.dataclass(frozen=True, eq=False)
class FactGraph:
  """The drawn facts. Arrays are numpy, int32, `NONE` where absent."""

  config: GraphConfig
  objects_SxR: np.ndarray  # majority object of every (s, r)
  minority_SxR: np.ndarray  # dissenting object, NONE for most pairs
  nested_RxO: np.ndarray  # nested value of object o of relationship r; NONE-filled without nesting
  qa_subject_S: np.ndarray  # bool: the subject's facts also appear as questions in pretraining

  @property
  def num_subjects(self) -> int:
    return self.objects_SxR.shape[0]

  @property
  def num_relationships(self) -> int:
    return self.objects_SxR.shape[1]

  @property
  def num_objects(self) -> int:
    return self.config.num_objects

  def subject_nested_SxR(self) -> np.ndarray:
    """The inherited (s, r'', n) facts: the nested value of each subject's object."""
    if not self.config.nested:
      return np.full_like(self.objects_SxR, NONE)
    r = np.arange(self.num_relationships)[None, :]
    return self.nested_RxO[r, self.objects_SxR]

  def arrays(self) -> dict[str, np.ndarray]:
    return {"objects_SxR": self.objects_SxR, "minority_SxR": self.minority_SxR,
            "nested_RxO": self.nested_RxO, "qa_subject_S": self.qa_subject_S}

  def equals(self, other: "FactGraph") -> bool:
    return self.config == other.config and all(
        np.array_equal(a, b) for a, b in zip(self.arrays().values(), other.arrays().values()))


def _other_value(rng: np.random.Generator, value: np.ndarray, num_values: int) -> np.ndarray:
  """A value uniform over the num_values - 1 values other than `value` (the original biased this)."""
  return (value + 1 + rng.integers(0, num_values - 1, size=value.shape)) % num_values


def make_graph(config: GraphConfig, seed: int) -> FactGraph:
  """Draws a fact graph; a pure function of (config, seed)."""
  config.validate()
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A09E667]))
  S, R, O = config.num_subjects, config.num_relationships, config.num_objects
  objects = rng.integers(0, O, size=(S, R), dtype=np.int64)

  if config.correlated_pair:
    if config.binarize_first_correlated:
      objects[:, 0] = rng.integers(0, 2, size=S)
    agree = rng.random(S) < config.correlation_strength
    objects[:, 1] = np.where(agree, objects[:, 0], _other_value(rng, objects[:, 0], O))

  minority = np.full((S, R), NONE, dtype=np.int64)
  num_dissenting = int(round(config.minority_position_entity_frac * S * R))
  if num_dissenting:
    flat = rng.choice(S * R, size=num_dissenting, replace=False)
    minority.reshape(-1)[flat] = _other_value(rng, objects.reshape(-1)[flat], O)

  nested = np.full((R, O), NONE, dtype=np.int64)
  if config.nested:
    N = config.num_nested_objects
    balanced = np.repeat(np.arange(N), O // N)
    nested = rng.permuted(np.broadcast_to(balanced, (R, O)), axis=1)

  qa_subject = np.zeros(S, dtype=bool)
  num_qa = int(config.questions_entity_frac * S)  # the original's count
  if num_qa:
    qa_subject[rng.choice(S, size=num_qa, replace=False)] = True

  return FactGraph(config=config, objects_SxR=objects.astype(np.int32),
                   minority_SxR=minority.astype(np.int32), nested_RxO=nested.astype(np.int32),
                   qa_subject_S=qa_subject)
