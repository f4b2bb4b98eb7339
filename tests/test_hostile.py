"""Hostile and careless input, round 2: nothing written outside --out, no silently wrong numbers from malformed
data or broken models, reports that escape what they render, one-line errors for careless settings."""

import csv
import io
import json
import shutil

import pytest

from conftest import cli

FAST = ["--set", "epochs=1", "--seeds", "1", "--bootstrap", "0"]


def run_ave(root, out, *ckpt_args, extra=()):
    return cli("run", "ave", *ckpt_args, "--data-root", root, "--out", out, "--cache-dir", out.parent / "cache",
               *FAST, *extra)


def one_line_error(result, expected):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    path = tmp_path_factory.mktemp("oracle") / "oracle.pt"
    write_oracle(World(0), path)
    return path


# ------------------------------------------------------------------------------------------ 3: nothing outside --out


@pytest.mark.parametrize("label", ["../../escaped", "ABSOLUTE", "a/b"])
def test_ckpt_label_never_names_a_path(tmp_path, micro_data, oracle, label):
    label = str(tmp_path / "escaped") if label == "ABSOLUTE" else label
    out = tmp_path / "deep" / "out"
    result = run_ave(micro_data, out, f"--ckpt={label}={oracle}")
    one_line_error(result, f"label {label.partition('@')[0]!r} is not a safe folder name")
    assert not (tmp_path / "escaped").exists() and not (out / "predictions").exists()


@pytest.mark.parametrize("first, second", [("Model", "model"), ("a@x:y", "a@x_y")])
def test_labels_sharing_a_folder_are_refused_up_front(tmp_path, micro_data, oracle, first, second):
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt={first}={oracle}", f"--ckpt={second}={oracle}")
    one_line_error(result, f"labels {first!r} and {second!r} would share one folder under --out")
    assert not (tmp_path / "out" / "jobs").exists()


def test_label_from_a_file_name_is_made_safe(tmp_path, micro_data, oracle):
    odd = tmp_path / "...pt"          # stem '..'
    shutil.copy(oracle, odd)
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt={odd}")
    assert result.exit_code == 0, result.output
    assert [m["label"] for m in json.loads((tmp_path / "out" / "results.json").read_text())["meta"]["models"]] == \
        ["model"]
    assert sorted(p.name for p in (tmp_path / "out" / "predictions").iterdir()) == ["model"]


# ------------------------------------------------------------------------------------------ 6: reports escape what they render

HOSTILE = '=cmd|"/C calc"!A0 \\textbf{\\input{/etc/passwd}} ^~ [/bold] $\\notacommand$ <script>x</script> | `y`'


@pytest.fixture(scope="module")
def ave_run(tmp_path_factory, micro_data, oracle):
    base = tmp_path_factory.mktemp("ave-run")
    result = run_ave(micro_data, base / "run", f"--ckpt=oracle={oracle}")
    assert result.exit_code == 0, result.output
    return base / "run"


def hostile_copy(run, folder):
    """The run's results.json with its label, task name and a class name replaced by strings that are markup in
    every output format (a document anyone could hand to `cmg-eval report` or `compare`)."""
    folder.mkdir()
    text = (run / "results.json").read_text().replace('"oracle"', json.dumps(HOSTILE)).replace(
        '"ave"', json.dumps("ave$_[/red]"))
    document = json.loads(text)
    document["meta"]["tasks"]["ave$_[/red]"]["about"] = {"class": HOSTILE}
    (folder / "results.json").write_text(json.dumps(document))
    return folder


def test_reports_escape_every_user_string(ave_run, tmp_path):
    run = hostile_copy(ave_run, tmp_path / "hostile")
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    assert "[/bold]" in result.output   # rich printed the label as text
    latex = (run / "table.tex").read_text()
    assert "\\input{" not in latex and "\\textbf{\\input" not in latex and "$\\notacommand$" not in latex
    assert "\\textbackslash{}input\\{/etc/passwd\\}" in latex and "\\textasciicircum{}\\textasciitilde{}" in latex
    rows = list(csv.DictReader(io.StringIO((run / "table.csv").read_text())))
    assert {row["model"] for row in rows} == {"'" + HOSTILE}
    page = (run / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    markdown = (run / "table.md").read_text()
    assert "<script>" not in markdown and "\\[/bold\\]" in markdown and "\\|" in markdown
    assert cli("compare", run / "results.json", run / "results.json").exit_code == 0


def test_latex_escape_is_one_pass():
    from cmg_eval.report.text import latex_escape

    assert latex_escape("a\\b{c}") == "a\\textbackslash{}b\\{c\\}"
    assert latex_escape("V->A ± 1†_%&#") == "V$\\to$A $\\pm$ 1$^\\dagger$\\_\\%\\&\\#"


def test_a_failing_renderer_keeps_the_finished_run(tmp_path, micro_data, oracle, monkeypatch):
    def broken(document):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("cmg_eval.report.latex_report", broken)
    out = tmp_path / "out"
    result = run_ave(micro_data, out, f"--ckpt=oracle={oracle}")
    one_line_error(result, "results.json is complete, but 1 report file(s) could not be rendered: table.tex "
                           "(RuntimeError: renderer bug)")
    assert json.loads((out / "results.json").read_text())["results"]
    assert {p.name for p in out.iterdir()} >= {"results.json", "table.md", "table.csv", "index.html"}
    assert not (out / "table.tex").exists()


def test_validate_prints_a_class_name_holding_markup(tmp_path, micro_clip_data):
    lists = tmp_path / "data" / "AVVP" / "data"
    shutil.copytree(micro_clip_data / "AVVP" / "data", lists)
    names = (lists / "AVVP_Categories.txt").read_text().splitlines()
    (lists / "AVVP_Categories.txt").write_text("\n".join(["[/red]", "[/red]", *names[2:]]) + "\n")
    result = cli("validate", "--data-root", tmp_path / "data", "avvp")
    assert result.exit_code == 1
    assert "avvp: " in result.output and "class '[/red]' listed twice" in result.output
