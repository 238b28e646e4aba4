"""Experiment specs: strict validation with located errors, and idempotent submission."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reelbench.db.engine import open_database
from reelbench.db.models import Experiment, Item, Run, Variant
from reelbench.identity import seed_from_variant_key
from reelbench.spec import SpecError, load_spec
from reelbench.submit import submit_spec

BASE = """
[experiment]
name = "cats"
description = "two cats"

[retry]
max_attempts = 4
backoff_seconds = 1

[[items]]
id = "cat-surf"
prompt = "a cat surfing"

[[items]]
id = "cat-ski"
prompt = "a cat skiing"

[[variants]]
key = "orbit"
provider = "synthetic"
repeats = 2
params = { seconds = 1, width = 64, height = 48, fps = 8 }
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    return info.value


def test_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.name == "cats"
    assert [i.id for i in spec.items] == ["cat-surf", "cat-ski"]
    assert spec.canonical.width == 1280 and spec.canonical.fit == "pad"
    assert spec.retry.max_attempts == 4
    assert spec.run_count() == 4
    assert spec.variants[0].cache is True


def test_unknown_key_is_an_error_naming_its_location(tmp_path: Path) -> None:
    text = BASE.replace("repeats = 2", "repeats = 2\nrepeat_count = 3")
    error = spec_error(write(tmp_path, text))
    assert "variants[0].repeat_count: unknown key" in str(error)


def test_unknown_table_is_an_error(tmp_path: Path) -> None:
    error = spec_error(write(tmp_path, BASE + "\n[retyr]\nmax_attempts = 2\n"))
    assert "retyr: unknown key" in str(error)


def test_unknown_item_key_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace('prompt = "a cat skiing"', 'prompt = "a cat skiing"\npromt = "x"')
    assert "items[1].promt: unknown key" in str(spec_error(write(tmp_path, text)))


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    text = BASE.replace("repeats = 2", 'repeats = "two"')
    error = str(spec_error(write(tmp_path, text)))
    assert "variants[0].repeats" in error and "integer" in error


def test_canonical_values_are_validated(tmp_path: Path) -> None:
    text = BASE + '\n[canonical]\nfit = "squash"\n'
    error = str(spec_error(write(tmp_path, text)))
    assert "canonical.fit" in error and "pad" in error


def test_missing_required_key(tmp_path: Path) -> None:
    text = BASE.replace('name = "cats"\n', "")
    assert "experiment.name: required key is missing" in str(spec_error(write(tmp_path, text)))


def test_duplicate_item_ids_and_variant_keys_are_errors(tmp_path: Path) -> None:
    text = BASE.replace('id = "cat-ski"', 'id = "cat-surf"') + BASE[BASE.index("[[variants]]") :]
    error = str(spec_error(write(tmp_path, text)))
    assert "duplicate item id 'cat-surf'" in error
    assert "variants[1].key: duplicate variant key 'orbit'" in error


def test_missing_image_file_is_an_error_at_load(tmp_path: Path) -> None:
    text = BASE.replace(
        'prompt = "a cat surfing"', 'prompt = "a cat surfing"\nimage = "in/cat.png"'
    )
    error = str(spec_error(write(tmp_path, text)))
    assert f"items[0].image: file not found: {tmp_path / 'in' / 'cat.png'}" in error


def test_relative_paths_resolve_against_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cat.png").write_bytes(b"png")
    text = BASE.replace(
        'prompt = "a cat surfing"', 'prompt = "a cat surfing"\nimage = "in/cat.png"'
    )
    path = write(tmp_path, text)
    monkeypatch.chdir("/")
    spec = load_spec(path)
    assert spec.items[0].image == tmp_path / "in" / "cat.png"


def test_items_file_jsonl_adds_items(tmp_path: Path) -> None:
    lines = [{"id": "dog", "prompt": "a dog"}, {"id": "fox", "prompt": "a fox", "meta": {"k": 1}}]
    (tmp_path / "more.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    text = BASE.replace('description = "two cats"', 'items_file = "more.jsonl"')
    spec = load_spec(write(tmp_path, text))
    assert [i.id for i in spec.items] == ["cat-surf", "cat-ski", "dog", "fox"]
    assert spec.items[3].meta == {"k": 1}


def test_items_file_txt_numbers_lines(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("a red ball\n\na blue cube\n")
    text = BASE.replace('description = "two cats"', 'items_file = "prompts.txt"')
    spec = load_spec(write(tmp_path, text))
    assert [(i.id, i.prompt) for i in spec.items[2:]] == [("1", "a red ball"), ("3", "a blue cube")]


def test_items_file_errors_name_file_and_line(tmp_path: Path) -> None:
    items = tmp_path / "more.jsonl"
    items.write_text('{"id": "dog", "prompt": "a dog"}\n{"id": "fox", "promt": "a fox"}\nnope\n')
    text = BASE.replace('description = "two cats"', 'items_file = "more.jsonl"')
    error = str(spec_error(write(tmp_path, text)))
    assert f"{items}:2: prompt: required key is missing" in error
    assert f"{items}:2: promt: unknown key" in error
    assert f"{items}:3: not valid JSON" in error


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    error = str(spec_error(write(tmp_path, "[experiment\nname=1")))
    assert "not valid TOML" in error


def test_unknown_provider_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace('provider = "synthetic"', 'provider = "synthetc"')
    error = str(spec_error(write(tmp_path, text)))
    assert "variants[0]" in error and "unknown provider 'synthetc'" in error


def test_explicit_seed_wins_over_derived_seed(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    variant = spec.variants[0]
    assert variant.seed("cat-surf", 1) == seed_from_variant_key("orbit", "cat-surf", 1)
    seeded = variant.model_copy(update={"params": {**variant.params, "seed": 7}})
    assert seeded.seed("cat-surf", 1) == 7


def _counts(url: str) -> tuple[int, int, int, int]:
    db = open_database(url)
    try:
        with db.sessions() as s:
            return tuple(  # type: ignore[return-value]
                s.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Experiment, Item, Variant, Run)
            )
    finally:
        db.dispose()


def test_submit_creates_one_run_per_cell_and_is_idempotent(
    database_url: str, tmp_path: Path
) -> None:
    spec = load_spec(write(tmp_path, BASE))
    db = open_database(database_url)
    try:
        first = submit_spec(db.sessions, spec)
        assert (first.created_experiment, first.runs_created, first.runs_total) == (True, 4, 4)
        again = submit_spec(db.sessions, spec)
        assert (again.created_experiment, again.runs_created, again.runs_existing) == (False, 0, 4)
        with db.sessions() as s:
            seeds = s.execute(select(Run.repeat, Run.seed, Run.max_attempts)).all()
        assert {(r, m) for r, _, m in seeds} == {(0, 4), (1, 4)}
    finally:
        db.dispose()
    assert _counts(database_url) == (1, 2, 1, 4)


def test_extended_spec_adds_only_new_runs(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url)
    try:
        submit_spec(db.sessions, load_spec(write(tmp_path, BASE)))
        with db.sessions() as s:
            before = set(s.execute(select(Run.id, Run.item_id, Run.variant_id)).all())
        extended = (
            BASE.replace("repeats = 2", "repeats = 3")
            + '\n[[items]]\nid = "cat-nap"\nprompt = "a cat napping"\n'
            + '\n[[variants]]\nkey = "bars"\nprovider = "synthetic"\n'
        )
        result = submit_spec(db.sessions, load_spec(write(tmp_path, extended)))
        # 3 items x (3 + 1) repeats = 12 cells; 4 existed.
        assert (result.runs_created, result.runs_total) == (8, 12)
        assert (result.items_created, result.variants_created) == (1, 1)
        with db.sessions() as s:
            after = set(s.execute(select(Run.id, Run.item_id, Run.variant_id)).all())
        assert before <= after
    finally:
        db.dispose()


def test_changed_variant_params_are_refused_and_nothing_is_written(
    database_url: str, tmp_path: Path
) -> None:
    db = open_database(database_url)
    try:
        submit_spec(db.sessions, load_spec(write(tmp_path, BASE)))
        changed = BASE.replace("fps = 8", "fps = 12") + (
            '\n[[items]]\nid = "cat-nap"\nprompt = "a cat napping"\n'
        )
        with pytest.raises(SpecError, match=r"variant 'orbit' already exists .* params"):
            submit_spec(db.sessions, load_spec(write(tmp_path, changed)))
    finally:
        db.dispose()
    assert _counts(database_url) == (1, 2, 1, 4)


def test_concurrent_submitters_create_each_run_once(database_url: str, tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE.replace("repeats = 2", "repeats = 50")))
    db = open_database(database_url)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            submit_spec(db.sessions, spec)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=submit) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        db.dispose()
    assert errors == []
    assert _counts(database_url) == (1, 2, 1, 100)
