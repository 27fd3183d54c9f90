"""kill -9 during a pull (downloading, installing, applying a delta, between deltas): the previous state stays
searchable, nothing half-made is visible, and the rerun continues where the killed one stopped (HTTP Range)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from legalsearch import pull, release
from legalsearch.search import LegalSearch

from . import test_pull
from .test_pull import answers, republish

origin = test_pull.origin  # the fixtures of test_pull.py: the publisher, and a copy of it served on 127.0.0.1
world = test_pull.world

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from legalsearch import pull
    from legalsearch.pull_transport import Transport

    index, url, key = sys.argv[1], sys.argv[2], sys.argv[3]
    transport = Transport(block=512, backoff=0.01)  # small blocks: a kill lands inside a file
    pull.pull(Path(index), url, [Path(key)] if key != "-" else [], transport=transport)
    """
)


def pull_in_child(world, kill_at: str | None, key: bool = True) -> int:
    env = {**os.environ, "LEGALSEARCH_KILL_AT": kill_at or ""}
    arguments = [str(world["follower"]), world["url"], str(world["pub"]) if key else "-"]
    child = subprocess.run([sys.executable, "-c", SCRIPT, *arguments], env=env, capture_output=True, text=True)
    if kill_at is None:
        assert child.returncode == 0, child.stderr[-2000:]
    return child.returncode


def hidden(world) -> list[str]:
    follower = world["follower"]
    return sorted(p.name for p in follower.parent.glob(f".{follower.name}.*") if not p.name.endswith(".lock"))


@pytest.mark.parametrize("stage", ["pull-downloading", "pull-building", "pull-installed"])
def test_a_first_pull_killed_leaves_nothing_visible_and_the_rerun_finishes(world, stage) -> None:
    assert pull_in_child(world, stage) == -signal.SIGKILL
    assert not world["follower"].exists(), "nothing visible until the release is whole"
    assert [name.split("-")[0] for name in hidden(world)] == [f".{world['follower'].name}.pull"]
    world["hits"].clear()
    pull_in_child(world, None)
    if stage == "pull-downloading":
        resumed = [path for path, wanted in world["hits"] if wanted]
        assert resumed, "the interrupted file was continued with a Range request"
    else:
        assert [path for path, _ in world["hits"]] == [f"/{release.MANIFEST}"], "nothing downloaded twice"
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])
    assert hidden(world) == []


@pytest.mark.parametrize("stage", ["pull-downloading", "segment-written", "before-commit", "committed"])
def test_a_delta_pull_killed_keeps_the_previous_state_searchable(world, stage) -> None:
    pull_in_child(world, None)
    before = answers(world["follower"], world["encoder"])
    republish(world, "add")
    republish(world, "change")
    assert pull_in_child(world, stage, key=False) == -signal.SIGKILL
    held = release.held_release(world["follower"])["sequence"]
    if stage == "committed":
        assert held == 2, "the first delta is committed, whole"
    else:
        assert held == 1
        assert answers(world["follower"], world["encoder"]) == before, "the previous state answers as before"
    LegalSearch.open(world["follower"], encoder=world["encoder"]).search("fianza en metálico", k=3)
    pull_in_child(world, None, key=False)
    assert release.held_release(world["follower"])["sequence"] == 3
    assert answers(world["follower"], world["encoder"]) == answers(world["index"], world["encoder"])
    assert hidden(world) == []
    assert pull.read_follow(world["follower"])["sequence"] == 3
