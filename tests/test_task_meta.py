"""Task metadata: one frozen object per task, read by `ls tasks`, results.json and the report's average."""

import dataclasses
import subprocess
import sys

import pytest

from cmg_eval import registry
from cmg_eval.report.table import averages
from cmg_eval.task import TaskMeta
from conftest import cli

SEVEN = {"ave", "ave_avvp", "avvp", "clotho_at", "mscoco_vt", "msrvtt_vt", "ucf_vgg"}
OPEN_SET = {"ave_os", "ucf51_os", "ucf_vgg_os"}


def test_every_task_states_its_metadata_once():
    assert set(registry.tasks.names()) == SEVEN | OPEN_SET
    for name in SEVEN | OPEN_SET:
        task = registry.tasks.get(name)
        meta = task.meta
        assert meta.name == name and meta.reference and meta.files
        assert (task.name, task.primary_metric, task.metrics, task.directions) == \
            (meta.name, meta.primary_metric, meta.metrics, meta.directions)
        with pytest.raises(dataclasses.FrozenInstanceError):
            meta.in_average = not meta.in_average
    assert {n for n in SEVEN | OPEN_SET if registry.tasks.get(n).meta.in_average} == {"ave", "ave_avvp", "avvp",
                                                                                        "ucf_vgg"}


def test_a_primary_metric_outside_the_metrics_is_refused():
    with pytest.raises(ValueError, match="not among its metrics"):
        TaskMeta("x", "1", "ref", ("f",), "f1", ("accuracy",), (("audio", "video"),))


def test_ls_tasks_prints_the_metadata():
    result = cli("ls", "tasks")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert SEVEN <= set(rows)
    assert "ECCV 2018" in result.output


def document(in_average):
    """Two tasks whose primary metric names say nothing about the average: the field alone decides."""
    tasks = {"cls": {"primary_metric": "r10", "directions": ["V->A"], "in_average": in_average["cls"]},
             "ret": {"primary_metric": "accuracy", "directions": ["V->T"], "in_average": in_average["ret"]}}
    rows = [{"model": "m", "task": "cls", "direction": "V->A", "metric": "r10", "value": 40.0},
            {"model": "m", "task": "ret", "direction": "V->T", "metric": "accuracy", "value": 10.0}]
    rows = [{**r, "primary": True, "std": 0.0, "n_seeds": 1} for r in rows]
    return {"meta": {"tasks": tasks, "models": [{"label": "m"}]}, "results": rows}


@pytest.mark.parametrize("flags, expected", [({"cls": True, "ret": False}, 40.0), ({"cls": False, "ret": True}, 10.0),
                                             ({"cls": True, "ret": True}, 25.0), ({"cls": False, "ret": False}, None)])
def test_the_average_reads_the_in_average_field(flags, expected):
    assert averages(document(flags))["m"] == expected


def test_tasks_folder_installs_under_the_package_not_as_a_top_level_tasks(tmp_path):
    """A user project's own `tasks` module must not collide with ours: outside the repository, `import tasks`
    fails and the built-in tasks import as `cmg_eval.tasks`."""
    run = lambda code: subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    assert "No module named 'tasks'" in run("import tasks").stderr
    found = run("import cmg_eval.tasks.ave, cmg_eval.registry as r; print(','.join(r.tasks.names()))")
    assert found.returncode == 0, found.stderr
    assert set(found.stdout.strip().split(",")) == SEVEN | OPEN_SET
