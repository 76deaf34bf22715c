"""Runs as a library of results: tags and notes (at train, sweep and tune, and later with `runs tag`), the
`--tag` filter, `--csv` (runs and report) and `mnistres.results` (rows, and a DataFrame where pandas is)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnistres import results
from mnistres.cli import app

runner = CliRunner()


def invoke(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def two(fast) -> list[str]:
    """runs/a (lr 0.01, tagged baseline and good, with a note) and runs/b (lr 0.02, untagged)."""
    invoke("train", *fast, "--name", "a", "--tag", "baseline", "--tag", "good", "--note", "first | try\nline 2")
    invoke("train", *[arg if arg != "0.01" else "0.02" for arg in fast], "--name", "b")
    return fast


def test_tags_and_a_note_given_at_train_are_kept_listed_and_filtered(two):
    assert yaml.safe_load(Path("runs/a/about.yaml").read_text()) == {"tags": ["baseline", "good"],
                                                                     "note": "first | try\nline 2"}
    assert not Path("runs/b/about.yaml").exists()
    listed = invoke("runs").output
    assert "#baseline #good" in listed and "a (note): first | try" in listed
    only = json.loads(invoke("runs", "--tag", "good", "--json").stdout)
    assert [run["name"] for run in only["runs"]] == ["a"]
    assert only["runs"][0]["about"] == {"tags": ["baseline", "good"], "note": "first | try\nline 2"}
    assert json.loads(invoke("runs", "--tag", "good", "--tag", "other", "--json").stdout)["runs"] == []
    assert "No #other runs under runs." in invoke("runs", "--tag", "other").output
    invoke("runs", "--tag", "not a tag", code=2)


def test_runs_tag_adds_removes_sets_the_note_and_shows(two):
    shown = invoke("runs", "tag", "runs/b", "later", "x:y").output
    assert "runs/b: #later #x:y" in shown
    invoke("runs", "tag", "runs/b", "--remove", "x:y", "--note", "looked at")
    assert json.loads(invoke("runs", "tag", "runs/b", "--json").stdout) == {"path": "runs/b", "tags": ["later"],
                                                                            "note": "looked at"}
    invoke("runs", "tag", "runs/b", "--remove", "later", "--note", "")
    assert not Path("runs/b/about.yaml").exists()  # nothing left to say
    # Mistakes: one line, exit 2, nothing written.
    for bad in (["runs", "tag", "runs/b", "two words"], ["runs", "tag", "runs/b", "a,b"],
                ["runs", "tag", "runs/nothing", "x"], ["runs", "tag", "runs", "x"]):
        result = runner.invoke(app, bad)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (bad, result.output)
    assert not Path("runs/b/about.yaml").exists() and not Path("runs/about.yaml").exists()
    Path("runs/b/about.yaml").write_text("tags: [1, {x: y}]\n")  # damaged by hand: listed all the same, with why
    listed = json.loads(invoke("runs", "--json").stdout)
    assert "about.yaml" in next(run for run in listed["runs"] if run["name"] == "b")["note"]


def test_a_new_run_in_the_same_place_drops_the_earlier_tags_and_resume_adds(two):
    invoke("train", *two, "--name", "a", "--overwrite")
    assert not Path("runs/a/about.yaml").exists()  # they were about the run it replaced
    invoke("train", *two, "--name", "a", "--overwrite", "--tag", "again")
    summary = json.loads(Path("runs/a/summary.json").read_text())
    assert summary["status"] == "completed"
    invoke("runs", "tag", "runs/a", "--note", "kept")
    assert yaml.safe_load(Path("runs/a/about.yaml").read_text()) == {"tags": ["again"], "note": "kept"}


def test_resume_adds_its_tags_to_the_runs(data_dir):
    from test_resume import InterruptAt

    from mnistres.config import RunConfig
    from mnistres.trainer import train

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, batch_size=32, width=8,
                       blocks=1, precise_bn=0, threads=1, name="cut")
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=[InterruptAt(2, 2)], tags=["first"], note="started")
    assert yaml.safe_load(Path("runs/cut/about.yaml").read_text()) == {"tags": ["first"], "note": "started"}
    invoke("train", "--resume", "runs/cut", "--tag", "resumed")
    assert yaml.safe_load(Path("runs/cut/about.yaml").read_text()) == {"tags": ["first", "resumed"], "note": "started"}
    with pytest.raises(Exception, match="tag"):  # the library checks them before any work, as the CLI does
        train(config.replace(name="other"), tags=["no good"])
    assert not Path("runs/other").exists()


def test_a_sweeps_tags_are_its_points_too_and_the_report_says_them(fast):
    invoke("sweep", "lr", "0.01", "0.02", *[a for a in fast if a not in ("--lr", "0.01")], "--name", "s",
           "--tag", "study", "--note", "the lr study")
    assert yaml.safe_load(Path("runs/s/about.yaml").read_text()) == {"tags": ["study"], "note": "the lr study"}
    names = [run["name"] for run in json.loads(invoke("runs", "--tag", "study", "--json").stdout)["runs"]]
    assert sorted(names) == ["s/lr=0.01,seed=0", "s/lr=0.02,seed=0"]
    invoke("runs", "tag", "runs/s/lr=0.01,seed=0", "best")
    report = Path("runs/s/report.md")
    invoke("report", "runs/s")
    text = report.read_text()
    assert "| the sweep's tags" in text and "#study" in text and "the lr study" in text
    assert "#best: lr=0.01,seed=0" in text


def test_runs_csv_has_every_run_and_setting_and_reads_back(two):
    result = invoke("runs", "--csv")
    rows = csv_rows(result.stdout)
    assert [row["name"] for row in rows] == ["b", "a"]  # newest first, as listed
    by_name = {row["name"]: row for row in rows}
    assert float(by_name["a"]["lr"]) == 0.01 and float(by_name["b"]["lr"]) == 0.02
    assert by_name["a"]["tags"] == "baseline good" and by_name["a"]["note"] == "first | try\nline 2"
    assert by_name["b"]["tags"] == "" and by_name["b"]["status"] == "completed"
    for row in rows:  # the same numbers as the runs' own files
        summary = json.loads(Path(row["path"], "summary.json").read_text())
        assert float(row["final_val_acc"]) == summary["final"]["val_acc"]
        assert int(row["epochs_done"]) == summary["epochs_completed"] == 2
        assert row["width"] == "8" and row["channels_last"] == "true"
    # The Python rows are the same, with numbers as numbers.
    found = results.rows("runs")
    assert [row["name"] for row in found] == ["b", "a"]
    assert found[1]["lr"] == 0.01 and found[1]["final_val_acc"] == float(by_name["a"]["final_val_acc"])
    assert found[1]["tags"] == "baseline good"
    assert [row["name"] for row in results.rows("runs", tags=["good"])] == ["a"]
    invoke("runs", "--csv", "--json", code=2)


def test_the_rows_as_a_pandas_dataframe(two):
    pandas = pytest.importorskip("pandas")
    frame = results.dataframe("runs")
    assert list(frame["name"]) == ["b", "a"] and list(frame["lr"]) == [0.02, 0.01]
    read = pandas.read_csv(io.StringIO(invoke("runs", "--csv").stdout))
    assert list(read["name"]) == list(frame["name"])
    assert list(read["final_val_acc"]) == list(frame["final_val_acc"])
    assert str(frame["started"].dtype).startswith("datetime64")


def test_report_csv_leads_each_row_with_its_study_and_variant(two):
    result = runner.invoke(app, ["report", "runs/a", "runs/b", "--csv", "-o", "r.md"])
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.stdout)
    assert {(row["variant"], row["name"]) for row in rows} == {("lr=0.01", "a"), ("lr=0.02", "b")}
    assert Path("r.md").is_file()  # written all the same


def test_tune_takes_tags_and_its_trials_show_them(tmp_path, fast):
    pytest.importorskip("optuna")
    from test_tune import quick, space_file

    space = space_file(tmp_path / "space.yaml")
    invoke("tune", str(space), "--trials", "2", "--jobs", "1", "--pruner", "none", *quick(fast), "--tag", "search1")
    listed = json.loads(invoke("runs", "--tag", "search1", "--json").stdout)["runs"]
    assert sorted(run["name"] for run in listed) == ["space-tune/trial-0000", "space-tune/trial-0001"]


def test_runs_help_shows_the_listing_and_tag_has_its_own():
    assert "--csv" in invoke("runs", "--help").output and "--tag" in invoke("runs", "--help").output
    text = invoke("runs", "tag", "--help").output
    assert "--remove" in text and "--note" in text
    Path("runs").mkdir()
    assert "No runs under runs." in invoke("runs").output  # the bare command lists runs/, as it always has


# --- removing runs and freeing space -------------------------------------------------------------


def size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def hold(run: Path) -> None:
    """A lock held by a live process (this one), as a training run holds its directory."""
    import os
    import socket

    (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def test_removing_a_sweep_point_makes_it_pending_and_the_sweep_trains_only_it_again(fast):
    options = [a for a in fast if a not in ("--lr", "0.01")]
    invoke("sweep", "lr", "0.01", "0.02", *options, "--name", "s", "--no-report")
    kept = Path("runs/s/lr=0.02,seed=0/summary.json").read_text()
    result = invoke("runs", "rm", "runs/s/lr=0.01,seed=0", "--yes")
    assert "Removed 1 directory" in result.output
    assert not Path("runs/s/lr=0.01,seed=0").exists()
    points = {p["name"]: p for p in yaml.safe_load(Path("runs/s/sweep.yaml").read_text())["points"]}
    assert points["lr=0.01,seed=0"]["status"] == "pending" and points["lr=0.02,seed=0"]["status"] == "completed"
    again = invoke("sweep", "lr", "0.01", "0.02", *options, "--name", "s", "--no-report")
    assert "2 completed (1 kept from an earlier run)" in again.output
    assert Path("runs/s/lr=0.02,seed=0/summary.json").read_text() == kept  # not trained again
    assert json.loads(Path("runs/s/lr=0.01,seed=0/summary.json").read_text())["status"] == "completed"


def test_rm_asks_first_refuses_running_runs_and_never_removes_half(two, monkeypatch):
    # Off a terminal, without --yes: one line, exit 2, nothing removed; --dry-run says what would go.
    refused = runner.invoke(app, ["runs", "rm", "runs/a"])
    assert refused.exit_code == 2 and "add --yes" in refused.output and Path("runs/a").is_dir()
    dry = invoke("runs", "rm", "runs/a", "runs/b", "--dry-run", "--json")
    assert sorted(item["name"] for item in json.loads(dry.stdout)["chosen"]) == ["runs/a", "runs/b"]
    assert Path("runs/a").is_dir() and Path("runs/b").is_dir()
    # At a terminal it asks; "n" keeps everything.
    monkeypatch.setattr("mnistres.cli.runs._at_terminal", lambda: True)
    answered = runner.invoke(app, ["runs", "rm", "runs/a"], input="n\n")
    assert answered.exit_code == 0 and "Nothing removed." in answered.output and Path("runs/a").is_dir()
    # A run a live process holds is never removed: named, the command is refused; chosen by a filter, kept.
    hold(Path("runs/a"))
    busy = runner.invoke(app, ["runs", "rm", "runs/a", "runs/b", "--yes"])
    assert busy.exit_code == 2 and "in use" in busy.output and Path("runs/b").is_dir()
    filtered = invoke("runs", "rm", "runs", "--status", "completed", "--yes")
    assert "a running process works in it" in filtered.output
    assert Path("runs/a").is_dir() and not Path("runs/b").exists()
    # Mistakes: a plain folder without a filter, a path that is not there, a bad date.
    for bad in (["runs", "rm", "runs", "--yes"], ["runs", "rm", "runs/zz", "--yes"],
                ["runs", "rm", "runs", "--before", "yesterday", "--yes"]):
        result = runner.invoke(app, bad)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (bad, result.output)
    assert Path("runs/a").is_dir()


def test_rm_chooses_by_status_date_and_tag(fast, data_dir):
    from test_runs_listing import StopAt

    from mnistres.config import RunConfig
    from mnistres.errors import PluginError
    from mnistres.trainer import train

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, batch_size=32, width=8,
                       blocks=1, precise_bn=0, threads=1)
    with pytest.raises(PluginError):
        train(config.replace(name="broken"), extra_callbacks=[StopAt(2, RuntimeError("boom"))])
    invoke("train", *fast, "--name", "fine", "--tag", "keep")
    invoke("train", *fast, "--name", "old")
    summary = json.loads(Path("runs/old/summary.json").read_text())
    summary["started"] = "2026-01-02T00:00:00+00:00"
    Path("runs/old/summary.json").write_text(json.dumps(summary))
    assert [i["name"] for i in json.loads(invoke("runs", "rm", "runs", "--status", "failed", "--dry-run",
                                                 "--json").stdout)["chosen"]] == ["broken"]
    assert [i["name"] for i in json.loads(invoke("runs", "rm", "runs", "--before", "2026-06-01", "--dry-run",
                                                 "--json").stdout)["chosen"]] == ["old"]
    assert [i["name"] for i in json.loads(invoke("runs", "rm", "runs", "--tag", "keep", "--dry-run",
                                                 "--json").stdout)["chosen"]] == ["fine"]
    invoke("runs", "rm", "runs", "--status", "failed", "--yes")
    assert sorted(p.name for p in Path("runs").iterdir()) == ["fine", "old"]


def test_a_searchs_trials_go_only_with_the_search(tmp_path, fast):
    pytest.importorskip("optuna")
    from test_tune import quick, space_file

    invoke("tune", str(space_file(tmp_path / "space.yaml")), "--trials", "1", "--jobs", "1", "--pruner", "none",
           *quick(fast))
    alone = runner.invoke(app, ["runs", "rm", "runs/space-tune/trial-0000", "--yes"])
    assert alone.exit_code == 2 and "remove the search whole" in alone.output
    filtered = invoke("runs", "rm", "runs", "--status", "completed", "--yes")
    assert "a trial of a search" in filtered.output and Path("runs/space-tune/trial-0000").is_dir()
    invoke("runs", "rm", "runs/space-tune", "--yes")
    assert not Path("runs/space-tune").exists()


def test_gc_halves_a_folder_of_finished_runs_and_every_reader_still_works(fast, data_dir, tmp_path):
    bigger = [a if a != "width=8" else "width=32" for a in fast]
    invoke("sweep", "lr", "0.01", "0.02", *[a for a in bigger if a not in ("--lr", "0.01")], "--name", "s")
    invoke("train", *bigger, "--name", "one")
    before = size(Path("runs"))
    lasts = sum(path.stat().st_size for path in Path("runs").rglob("last.pt"))
    dry = json.loads(invoke("runs", "gc", "--dry-run", "--json").stdout)
    assert dry["bytes"] == lasts and size(Path("runs")) == before
    freed = json.loads(invoke("runs", "gc", "--json").stdout)
    assert freed["bytes"] == lasts and not list(Path("runs").rglob("last.pt"))
    after = size(Path("runs"))
    assert after == before - lasts and after <= 0.55 * before, (before, after)
    # Everything that reads finished runs works as before.
    assert len(json.loads(invoke("runs", "--json").stdout)["runs"]) == 3
    invoke("report", "runs/s")
    invoke("eval", "runs/one/best.pt", "--data-dir", str(data_dir), "--no-download", "--device", "cpu")
    invoke("summary", "--set", "width=32")
    invoke("export", "runs/one/best.pt", "-o", str(tmp_path / "model.pt2"), "--data-dir", str(data_dir))
    again = invoke("sweep", "lr", "0.01", "0.02", *[a for a in bigger if a not in ("--lr", "0.01")], "--name", "s")
    assert "(2 kept from an earlier run)" in again.output
    resumed = runner.invoke(app, ["train", "--resume", "runs/one"])
    assert resumed.exit_code == 2 and "already completed" in resumed.output and "runs gc" in resumed.output
    assert "Freed 0 B in 0 files" in invoke("runs", "gc").output  # nothing left to free


def test_gc_keeps_what_unfinished_runs_need_and_clears_what_cut_short_work_left(two, data_dir):
    from test_resume import InterruptAt

    from mnistres.config import RunConfig
    from mnistres.trainer import train

    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, batch_size=32, width=8,
                        blocks=1, precise_bn=0, threads=1, name="cut"), extra_callbacks=[InterruptAt(2, 2)])
    aside = Path("runs/.mnistres-removing-12345678")  # a removal cut short
    (aside / "x").mkdir(parents=True)
    (aside / "x" / "last.pt").write_bytes(b"0" * 1000)
    partial = Path("runs/a/.summary.json.abc.tmp")  # a write killed before its rename
    partial.write_text("{")
    invoke("runs", "gc")
    assert Path("runs/cut/last.pt").is_file()  # it can be resumed: it keeps it
    assert not aside.exists() and not partial.exists()
    invoke("train", "--resume", "runs/cut")
