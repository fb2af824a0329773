"""Test-side decoding of rendered tokens back into facts, written independently of the renderer."""

import numpy as np

from data_gen.world.vocab import DOT, EOT, PAD, QQ, Vocab


class Roles:
  """Maps token ids to (block name, member) by binary search over block starts."""

  def __init__(self, vocab: Vocab):
    self.vocab = vocab
    self.starts = np.array([b.start for b in vocab.blocks])
    self.names = [b.name for b in vocab.blocks]

  def block_of(self, token: int) -> str:
    if token < self.starts[0]:
      return "reserved"
    return self.names[int(np.searchsorted(self.starts, token, side="right")) - 1]

  def sentences(self, row):
    """Splits a document row into sentences (lists of ids without '.')."""
    out, cur = [], []
    for t in row:
      if t in (PAD, EOT):
        continue
      if t == DOT:
        out.append(cur)
        cur = []
      else:
        cur.append(int(t))
    assert not cur, "a sentence without its '.'"
    return out

  def fact(self, sentence):
    """(kind, head member, relationship, tail member, is_question) of one sentence."""
    by_role = {}
    for t in sentence:
      by_role.setdefault(self.block_of(t), []).append(t)
    rel_blocks = [n for n in by_role if n.endswith("relationships")]
    assert len(rel_blocks) == 1, sentence
    rel_block = self.vocab.block(rel_blocks[0])
    r = by_role[rel_blocks[0]][0] - rel_block.start
    kind = {"relationships": 0, "subject_nested_relationships": 1, "object_nested_relationships": 2}[rel_block.name]
    objects = [n for n in by_role if n.startswith("objects/")]
    nested = [n for n in by_role if n.startswith("nested_objects/")]
    if kind == 2:
      head = int(self.vocab.block(objects[0]).members(np.array(by_role[objects[0]]))[()])
      tail = int(self.vocab.block(nested[0]).members(np.array(by_role[nested[0]]))[()])
    else:
      head = int(self.vocab.subjects.members(np.array(by_role["subjects"]))[()])
      tail_block = objects[0] if kind == 0 else nested[0]
      assert tail_block.endswith(f"/{r}")
      tail = int(self.vocab.block(tail_block).members(np.array(by_role[tail_block]))[()])
    return kind, head, int(r), tail, QQ in sentence
