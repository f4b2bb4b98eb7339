import pytest

from cmg_eval.errors import CmgError
from cmg_eval.settings import resolve

DEFAULTS = {"ave": {"epochs": 30, "lr": 4e-4, "milestones": [10, 20]}, "other": {"epochs": 5, "alpha": 1.0}}


def test_plain_key_sets_every_task_that_has_it():
    settings = resolve(DEFAULTS, ["epochs=2", "lr=1e-3", "other.alpha=2"])
    assert settings["ave"]["epochs"] == 2 and settings["other"]["epochs"] == 2
    assert settings["ave"]["lr"] == pytest.approx(1e-3) and isinstance(settings["ave"]["lr"], float)
    assert settings["other"]["alpha"] == 2.0
    assert DEFAULTS["ave"]["epochs"] == 30


def test_lists_and_scoping():
    settings = resolve(DEFAULTS, ["ave.milestones=[1, 2]", "ave.epochs=7"])
    assert settings["ave"]["milestones"] == [1, 2] and settings["ave"]["epochs"] == 7
    assert settings["other"]["epochs"] == 5


@pytest.mark.parametrize("bad, message", [
    ("nope=1", "unknown setting 'nope'"),
    ("ave.alpha=1", "unknown setting 'alpha'"),
    ("missing.epochs=1", "task 'missing' is not in this run"),
    ("epochs=2.5", "not a valid value"),
    ("epochs", "expected KEY=VALUE"),
])
def test_bad_assignments(bad, message):
    with pytest.raises(CmgError, match=message):
        resolve(DEFAULTS, [bad])
