"""Item files inside the spec's folder are stored relative to it: checkouts do not matter."""

from __future__ import annotations

import shutil
from pathlib import Path

from processor_support import Lab, work
from sqlalchemy import select
from videos import encode_video, moving_pattern

from reelbench.db.models import Artifact, Item
from reelbench.spec import load_spec
from reelbench.submit import submit_spec

SPEC = """
[experiment]
name = "moved"

[canonical]
width = 64
height = 48
fps = 8
preset = "ultrafast"

[[items]]
id = "cat"
prompt = "a cat"
image = "inputs/cat.png"
reference = "refs/cat.mp4"

[[variants]]
key = "orbit"
provider = "synthetic"
params = { seconds = 0.25, width = 64, height = 48, fps = 8 }
"""


def checkout(root: Path) -> Path:
    (root / "inputs").mkdir(parents=True)
    (root / "refs").mkdir()
    import av

    frame = av.VideoFrame(16, 16, "rgb24")
    frame.to_image().save(root / "inputs" / "cat.png")
    encode_video(root / "refs" / "cat.mp4", moving_pattern(64, 48, 4, seed=1), fps=8)
    (root / "spec.toml").write_text(SPEC)
    return root / "spec.toml"


def test_the_same_spec_from_another_checkout_is_the_same_experiment(
    database_url: str, tmp_path: Path
) -> None:
    first = checkout(tmp_path / "alice" / "repo")
    lab = Lab.open(database_url, tmp_path / "artifacts")
    try:
        made = submit_spec(lab.db.sessions, load_spec(first))
        assert made.runs_created == 1
        with lab.db.sessions() as session:
            item = session.scalars(select(Item)).one()
            assert (item.image_path, item.reference_path) == ("inputs/cat.png", "refs/cat.mp4")

        # Another checkout: another absolute path, the original one gone.
        second = tmp_path / "bob" / "work" / "repo"
        shutil.copytree(first.parent, second)
        shutil.rmtree(tmp_path / "alice")
        again = submit_spec(lab.db.sessions, load_spec(second / "spec.toml"))
        assert (again.created_experiment, again.runs_created, again.runs_total) == (False, 0, 1)

        # The worker finds the files under the spec as last submitted.
        assert work(lab, "moved").succeeded == 1
        with lab.db.sessions() as session:
            ref = session.scalars(select(Artifact).where(Artifact.kind == "reference")).one()
        assert ref.uri == (second / "refs" / "cat.mp4").resolve().as_uri()
    finally:
        lab.db.dispose()


def test_files_outside_the_spec_folder_stay_absolute(database_url: str, tmp_path: Path) -> None:
    spec = checkout(tmp_path / "repo")
    outside = tmp_path / "shared" / "ref.mp4"
    outside.parent.mkdir()
    shutil.copyfile(tmp_path / "repo" / "refs" / "cat.mp4", outside)
    spec.write_text(SPEC.replace('"refs/cat.mp4"', f'"{outside}"'))
    lab = Lab.open(database_url, tmp_path / "artifacts")
    try:
        submit_spec(lab.db.sessions, load_spec(spec))
        with lab.db.sessions() as session:
            item = session.scalars(select(Item)).one()
        assert item.reference_path == str(outside)
    finally:
        lab.db.dispose()
