"""The one content fingerprint: key order does not matter, the value does, and the length is as asked."""

from data_gen.common import digest


def test_json_digest_ignores_key_order_and_sees_values():
  a = digest.json_digest({"b": 1, "a": [1, 2]}, 16)
  assert a == digest.json_digest({"a": [1, 2], "b": 1}, 16)
  assert a != digest.json_digest({"a": [1, 2], "b": 2}, 16)
  assert len(a) == 16 and len(digest.json_digest({}, 12)) == 12
  # the form results.jsonl's config_hash has had: sha256 of key-sorted JSON, first 16 hex digits
  assert digest.json_digest({"x": 1}, 16) == "613fe5aa65343dbb"
