"""What makes two provider requests the same (the provider-call cache key)."""

from __future__ import annotations

from dataclasses import replace

from reelbench.call_cache import request_hash, request_record
from reelbench.providers import GenerationRequest

BASE = GenerationRequest("synthetic", "orbit", {"seconds": 1}, "a cat", 7, item_id="cat")


def _key(request: GenerationRequest, image_sha: str | None = None) -> str:
    return request_hash(request_record(request, image_sha))


def test_attempt_and_stop_are_not_part_of_the_request() -> None:
    assert _key(BASE) == _key(replace(BASE, attempt=5))


def test_every_asked_field_changes_the_key() -> None:
    variants = [
        replace(BASE, provider="command"),
        replace(BASE, model="bars"),
        replace(BASE, params={"seconds": 2}),
        replace(BASE, prompt="a dog"),
        replace(BASE, seed=8),
        replace(BASE, item_id="dog"),
    ]
    keys = {_key(v) for v in variants}
    assert len(keys) == len(variants)
    assert _key(BASE) not in keys


def test_input_image_counts_by_content_not_path() -> None:
    here = replace(BASE, image="/a/cat.png")
    there = replace(BASE, image="/b/cat.png")
    assert _key(here, "ab" * 32) == _key(there, "ab" * 32)
    assert _key(here, "ab" * 32) != _key(here, "cd" * 32)


def test_param_order_does_not_matter() -> None:
    one = replace(BASE, params={"a": 1, "b": 2})
    two = replace(BASE, params={"b": 2, "a": 1})
    assert _key(one) == _key(two)
