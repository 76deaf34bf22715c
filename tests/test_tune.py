"""`mnistres tune`: the space file, trials as run directories, pruning, resuming, two processes on one
study, Dask, and the report of a search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnistres.cli import app
from mnistres.runs import rundir

optuna = pytest.importorskip("optuna", reason='mnistres tune needs pip install "mnistres[tune]"')

runner = CliRunner()
SPACE = {"lr": {"low": 0.003, "high": 0.05, "log": True}, "batch_size": [16, 32], "width": 8, "blocks": 1,
         "precise_bn": 0}


def space_file(path: Path, data: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(SPACE if data is None else data))
    return path


def quick(fast: list[str]) -> list[str]:
    """The `fast` run options, less those the space decides."""
    dropped = {"--lr", "--batch-size"}
    out, skip = [], False
    for arg in fast:
        if skip:
            skip = False
        elif arg in dropped:
            skip = True
        elif arg not in ("--set",) and not arg.startswith(("width=", "blocks=", "precise_bn=")):
            out.append(arg)
    return out


def invoke(*args: str):
    return runner.invoke(app, ["tune", *args])


def study_of(directory: Path, storage: Path | None = None):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = storage or directory / rundir.STUDY_JOURNAL
    return optuna.load_study(study_name=directory.name, storage=JournalStorage(JournalFileBackend(str(journal))))


def counted(study) -> list:
    """The study's trials that count (surplus asks by processes racing for the last place left out)."""
    return [t for t in study.get_trials() if not t.system_attrs.get("mnistres_surplus")]


def trial_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("trial-*") if p.is_dir())


def summary(run: Path) -> dict:
    return json.loads((run / rundir.SUMMARY).read_text())


# --- the space file -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, fragment", [
    ({"lr": {"low": 0.1, "high": 0.01}}, "lr: low 0.1 must be below high 0.01"),
    ({"lr": {"low": 0.1}}, "a range needs low and high"),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "lr low: lr=0.0"),
    ({"lr": {"low": 0.01, "high": 0.1, "step": 0.5}}, "step 0.5 must be above 0 and at most high - low"),
    ({"lr": {"low": 0.01, "high": 0.1, "spread": 2}}, "a range takes low, high, log, step, not spread"),
    ({"learning_rate": [0.1, 0.01]}, "unknown key 'learning_rate'"),
    ({"optimizer": ["adam", "sgdd"]}, "sgd"),  # the unknown name, and the closest one
    ({"optimizer": []}, "optimizer has no choices"),
    ({"optimizer": ["adam", "ADAM"]}, "lists the same setting more than once"),
    ({"activation": {"low": 1, "high": 2}}, "only numbers have ranges"),
    ({"device": ["cpu", "cuda"]}, "device cannot be searched"),
    ({"callbacks": [["progress"], ["per_class_accuracy"]]}, "cannot be searched"),
    ({"batch_size": [16, 0]}, "batch_size"),
    ({"epochs": 3}, "searches nothing"),
    ({"lr": [0.1], "val_split": 0.0}, "val_split must be above 0"),
    ({"lr": [0.1], "callbacks": ["tune_trial"]}, "added to each trial by tune itself"),
])
def test_a_bad_space_file_is_one_line_and_exit_2(data, fragment, tmp_path, fast):
    result = invoke(str(space_file(tmp_path / "space.yaml", data)), *quick(fast))
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not Path("runs").exists()  # nothing written


def test_a_missing_space_file_and_bad_options_are_refused(tmp_path, fast):
    assert "not found" in invoke("nope.yaml", *quick(fast)).output
    space = str(space_file(tmp_path / "space.yaml"))
    for args, fragment in ((["--trials", "0"], "--trials 0"), (["--sampler", "bayes"], "--sampler bayes"),
                           (["--pruner", "asha"], "--pruner asha")):
        result = invoke(space, *quick(fast), *args)
        assert result.exit_code == 2 and fragment in result.output, result.output


def test_without_optuna_tune_says_how_to_get_it(monkeypatch, tmp_path, fast):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    result = invoke(str(space_file(tmp_path / "space.yaml")), *quick(fast))
    assert result.exit_code == 2 and 'pip install "mnistres[tune]"' in result.output, result.output
    assert not Path("runs").exists()


def test_the_grid_sampler_needs_a_finite_grid(tmp_path, fast):
    result = invoke(str(space_file(tmp_path / "s.yaml")), *quick(fast), "--sampler", "grid")
    assert result.exit_code == 2 and "lr has neither" in result.output
    assert not Path("runs").exists()  # refused before anything is written
    stepped = dict(SPACE, lr={"low": 0.01, "high": 0.03, "step": 0.01})
    result = invoke(str(space_file(tmp_path / "s.yaml", stepped)), *quick(fast), "--sampler", "grid", "--trials", "7")
    assert result.exit_code == 2 and "the grid has 6 points" in result.output


# --- a search -------------------------------------------------------------------------------------------


def test_every_trial_is_a_run_directory_and_the_best_is_measured_on_the_test_set(tmp_path, fast):
    result = invoke(str(space_file(tmp_path / "space.yaml")), *quick(fast), "--trials", "3", "--jobs", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    directory = Path("runs/space-tune")
    assert out["directory"] == str(directory) and out["trials"]["completed"] == 3
    runs = trial_dirs(directory)
    assert [p.name for p in runs] == ["trial-0000", "trial-0001", "trial-0002"]
    study = study_of(directory)
    for run, trial in zip(runs, study.get_trials()):
        config = yaml.safe_load((run / rundir.CONFIG).read_text())
        assert config["name"] == run.name and "tune_trial" in config["callbacks"]
        assert config["val_split"] == 0.1  # chosen on held-out training images
        assert summary(run)["val_set"] == "held-out"
        assert config["lr"] == trial.params["lr"] and str(config["batch_size"]) == trial.params["batch_size"]
        assert trial.value == summary(run)["best"]["val_acc"]
        assert sorted(trial.intermediate_values) == [1, 2]  # reported from inside the run, each epoch
    best = max(study.get_trials(), key=lambda t: (t.value, -t.number))
    assert out["best"]["trial"] == best.number and out["best"]["held_out_acc"] == best.value
    assert isinstance(out["best"]["params"]["batch_size"], int)  # typed as RunConfig takes it
    test = json.loads((directory / rundir.TEST_RESULT).read_text())
    assert test["trial"] == best.number and test["test_images"] == 160 and 0 <= test["test_acc"] <= 1
    assert out["best"]["test"] == test
    record = rundir.read_tune(directory)
    assert record["space"]["batch_size"] == {"choices": [16, 32]} and "lr" not in record["base"]
    # `runs` and `report` read the trials like any runs.
    listed = runner.invoke(app, ["runs", str(directory), "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)["runs"]) == 3


def test_running_again_goes_on_to_the_count_in_all_and_another_search_is_refused(tmp_path, fast):
    space = str(space_file(tmp_path / "space.yaml"))
    assert invoke(space, *quick(fast), "--trials", "2", "--jobs", "1").exit_code == 0
    again = invoke(space, *quick(fast), "--trials", "2", "--jobs", "1")
    assert again.exit_code == 0 and "2 trials in the study: 2 completed" in again.output
    more = invoke(space, *quick(fast), "--trials", "3", "--jobs", "1")
    assert more.exit_code == 0 and "3 trials in the study: 3 completed" in more.output, more.output
    study = study_of(Path("runs/space-tune"))
    assert len(study.get_trials()) == 3
    params = [(t.params["lr"], t.params["batch_size"]) for t in study.get_trials()]
    assert len(set(params)) == 3  # the resumed sampler did not draw its first parameters again
    other = invoke(space, *quick(fast), "--trials", "3", "--epochs", "3")
    assert other.exit_code == 2 and "other settings" in other.output and "epochs: 2 -> 3" in other.output


@pytest.fixture
def interrupt_once(tmp_path):
    """A callback that sends Ctrl-C once, during trial-0001's second epoch (a marker file says it did)."""
    from mnistres.api import Callback
    from mnistres.registry import callbacks

    marker = tmp_path / "interrupted-once"

    class InterruptOnce(Callback):
        def on_batch_end(self, trainer, step):
            if trainer.run_dir.name == "trial-0001" and trainer.epoch == 2 and not marker.exists():
                marker.write_text("x")
                raise KeyboardInterrupt

    if "interrupt_once" not in callbacks.names():
        callbacks.register("interrupt_once", help="test: Ctrl-C once, in trial-0001's second epoch")(InterruptOnce)
    return marker


def test_ctrl_c_stops_a_trial_resumably_and_the_rerun_reaches_the_count_without_repeats(tmp_path, fast,
                                                                                          interrupt_once):
    space = str(space_file(tmp_path / "space.yaml", {**SPACE, "epochs": 3}))
    args = [space, *quick(fast), "--epochs", "3", "--trials", "4", "--jobs", "1", "--callback", "interrupt_once"]
    stopped = invoke(*args)
    assert stopped.exit_code == 130, stopped.output
    assert "run the same command again to resume" in stopped.output
    directory = Path("runs/space-tune")
    assert summary(directory / "trial-0001")["status"] == "interrupted"
    assert summary(directory / "trial-0001")["epochs_completed"] == 1
    assert not (directory / "trial-0002").exists()
    states = [t.state.name for t in study_of(directory).get_trials()]
    assert states == ["COMPLETE", "RUNNING"]  # the stopped trial stays the study's, to be resumed
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "4 trials in the study: 4 completed" in again.output, again.output
    study = study_of(directory)
    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3]
    assert len({(t.params["lr"], t.params["batch_size"]) for t in study.get_trials()}) == 4
    resumed = rundir.read_history(directory / "trial-0001" / rundir.METRICS)
    assert [row["epoch"] for row in resumed] == [1, 2, 3]  # went on from its last epoch, no epoch twice
    assert "Resuming" in (directory / "logs" / "trial-0001.log").read_text()
    assert summary(directory / "trial-0001")["status"] == "completed"


def test_a_trial_finished_before_the_study_heard_is_told_not_run_again(tmp_path, fast):
    """A process stopped between a trial's end and telling the study: the next one reads the outcome."""
    space = str(space_file(tmp_path / "space.yaml"))
    assert invoke(space, *quick(fast), "--trials", "1", "--jobs", "1").exit_code == 0
    directory = Path("runs/space-tune")
    # Make the study forget how trial 0 ended, as if its process died right after the run recorded it.
    study = study_of(directory)
    before = (directory / "trial-0000" / rundir.SUMMARY).stat().st_mtime_ns
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                              params=study.trials[0].params,
                                              distributions=study.trials[0].distributions,
                                              system_attrs={"mnistres_owner": "a-process-that-is-gone"}))
    os.rename(directory / "trial-0000", directory / "trial-0001")  # the running one is trial 1
    result = invoke(space, *quick(fast), "--trials", "2", "--jobs", "1")
    assert result.exit_code == 0, result.output
    trials = study_of(directory).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert (directory / "trial-0001" / rundir.SUMMARY).stat().st_mtime_ns == before  # not trained again


def test_a_trial_behind_the_others_is_pruned(tmp_path, fast):
    """Five good trials (enqueued), then a hopeless one: the median pruner stops it at epoch 2 as `pruned`."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "shared.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="prune-tune", storage=storage, direction="maximize")
    for lr in (0.01, 0.012, 0.015, 0.02, 0.03):
        study.enqueue_trial({"lr": lr})
    study.enqueue_trial({"lr": 1e-7})
    space = space_file(tmp_path / "prune-tune.yaml", {"lr": {"low": 1e-7, "high": 0.05, "log": True}, "width": 8,
                                                      "blocks": 1, "precise_bn": 0, "epochs": 4})
    result = invoke(str(space), *quick(fast), "--epochs", "4", "--batch-size", "16", "--trials", "6", "--jobs", "1",
                    "--storage", str(journal))
    assert result.exit_code == 0, result.output
    directory = Path("runs/prune-tune")
    pruned = summary(directory / "trial-0005")
    assert pruned["status"] == "pruned" and pruned["epochs_completed"] == 2, pruned
    assert "pruned after epoch 2" in pruned["message"]
    assert study_of(directory, journal).get_trials()[5].state.name == "PRUNED"
    assert "5 completed, 1 pruned" in result.output
    listed = json.loads(runner.invoke(app, ["runs", str(directory), "--json", "--status", "pruned"]).stdout)
    assert [run["name"] for run in listed["runs"]] == ["trial-0005"]
    resumed = runner.invoke(app, ["train", "--resume", str(directory / "trial-0005")])
    assert resumed.exit_code == 2 and "pruned" in resumed.output


def test_two_tune_processes_on_one_study_make_the_count_in_all(tmp_path, data_dir):
    space = space_file(tmp_path / "space.yaml")
    # No pruner: which trial the median pruner stops depends on the order the two processes finish in, and this
    # test is about the count (a pruned trial counts the same; test_a_trial_behind_the_others_is_pruned covers pruning).
    command = [sys.executable, "-m", "mnistres", "tune", str(space), "--trials", "6", "--jobs", "1", "--threads", "1",
               "--epochs", "2", "--data-dir", str(data_dir), "--no-download", "--device", "cpu",
               "--out-dir", str(tmp_path / "runs"), "--pruner", "none"]
    env = {**os.environ, "MNISTRES_DEBUG": ""}
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=env) for _ in range(2)]
    try:
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert all(process.returncode == 0 for process in processes), outputs
    directory = tmp_path / "runs" / "space-tune"
    trials = counted(study_of(directory))
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    runs = trial_dirs(directory)
    assert [p.name for p in runs] == [rundir.trial_name(t.number) for t in trials]
    assert all(summary(run)["status"] == "completed" for run in runs)
    owners = {t.system_attrs["mnistres_owner"] for t in trials}
    assert len(owners) == 2, owners  # both worked on it
    assert not any((directory / rundir.OWNERS).iterdir())  # each took its lock away as it ended


def test_trials_run_on_dask_workers_and_report_from_there(tmp_path, fast):
    pytest.importorskip("distributed")
    space = str(space_file(tmp_path / "space.yaml"))
    result = invoke(space, *quick(fast), "--trials", "3", "--jobs", "2", "--executor", "dask")
    assert result.exit_code == 0, result.output
    directory = Path("runs/space-tune")
    study = study_of(directory)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    # Each epoch was reported to the study by the tune_trial callback in the worker's process.
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.get_trials())
    assert all(summary(run)["pid"] != os.getpid() for run in trial_dirs(directory))


def test_the_report_of_a_search_has_its_figures(tmp_path, fast):
    space = str(space_file(tmp_path / "space.yaml"))
    assert invoke(space, *quick(fast), "--trials", "8", "--jobs", "1", "--pruner", "none").exit_code == 0
    result = runner.invoke(app, ["report", "runs/space-tune"])
    assert result.exit_code == 0, result.output
    text = Path("runs/space-tune/report.md").read_text()
    for heading in ("## The search", "## Best trials", "## Optimisation history", "## Parameter importances",
                    "## Parallel coordinates", "## Per-class held-out accuracy of the best trial",
                    "## Confusion matrix of the best run"):
        assert heading in text, heading
    assert "measured once after the search" in text
    for figure in ("history", "importances", "parallel", "confusion"):
        path = Path(f"runs/space-tune/report-space-tune-{figure}.png")
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG", figure
        assert path.name in text
    best = json.loads(Path("runs/space-tune", rundir.TEST_RESULT).read_text())["run"]
    assert f"(`{best}`" in text  # the best trial is the one the search chose


def test_the_tune_trial_callback_outside_a_search_is_one_line(fast):
    result = runner.invoke(app, ["train", *fast, "--callback", "tune_trial", "--name", "x"])
    assert result.exit_code == 2 and "the tune_trial callback runs trials of `mnistres tune`" in result.output


@pytest.mark.parametrize("sampler, pruner", [("random", "hyperband"), ("cmaes", "median"), ("grid", "none")])
def test_each_sampler_and_pruner_runs_a_search(sampler, pruner, tmp_path, fast):
    if sampler == "cmaes":
        pytest.importorskip("cmaes")
    data = {**SPACE, "lr": {"low": 0.01, "high": 0.03, "step": 0.01}} if sampler == "grid" else SPACE
    result = invoke(str(space_file(tmp_path / "space.yaml", data)), *quick(fast), "--trials", "3", "--jobs", "1",
                    "--sampler", sampler, "--pruner", pruner)
    assert result.exit_code == 0, result.output
    assert f"({sampler} sampler, {pruner} pruner)" in result.output
    trials = study_of(Path("runs/space-tune")).get_trials()
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    if sampler == "grid":  # three different points of the grid of 6
        assert len({(t.params["lr"], t.params["batch_size"]) for t in trials}) == 3


def study_module_place(given: str) -> str:
    from mnistres.tune import study as study_module

    return study_module.storage_place(given, Path("runs/x"))


def test_a_database_storage_works_with_heartbeats(tmp_path, fast):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    assert study_module_place("sqlite:///tune.db") == url  # a relative file, made absolute for every process
    result = invoke(str(space_file(tmp_path / "space.yaml")), *quick(fast), "--trials", "2", "--jobs", "1",
                    "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["storage"] == url
    study = optuna.load_study(study_name="space-tune", storage=url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert rundir.read_tune(Path("runs/space-tune"))["storage"] == url
    other = invoke(str(space_file(tmp_path / "space.yaml")), *quick(fast), "--trials", "2")  # the journal
    assert other.exit_code == 2 and "same --storage" in other.output


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_tune_process_loses_no_trial(how, tmp_path, data_dir):
    """SIGTERM (stops its trials, exit 130) or SIGKILL (its trials' processes stop themselves) while trials run
    in child processes: the next tune resumes them, and the search ends with the count asked for."""
    import signal

    from processes import processes_mentioning, status, wait_for

    space = space_file(tmp_path / "space.yaml", {**SPACE, "epochs": 40})
    command = [sys.executable, "-m", "mnistres", "tune", str(space), "--trials", "3", "--jobs", "2", "--threads", "1",
               "--epochs", "40", "--pruner", "none", "--data-dir", str(data_dir), "--no-download", "--device", "cpu",
               "--out-dir", str(tmp_path / "runs")]
    directory = tmp_path / "runs" / "space-tune"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "MNISTRES_DEBUG": ""})
    try:
        def two_epochs_in() -> bool:
            try:
                return len(rundir.read_history(directory / "trial-0000" / rundir.METRICS)) >= 2
            except Exception:
                return False
        wait_for(two_epochs_in, process)
        process.send_signal(getattr(signal, how))
        assert process.wait(timeout=60) == (130 if how == "SIGTERM" else -signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 60  # its trials' processes notice and stop themselves
    while processes_mentioning(str(directory)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(str(directory))
    assert status(directory / "trial-0000") == "interrupted"
    assert [t.state.name for t in study_of(directory).get_trials()][:2] == ["RUNNING", "RUNNING"]
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "MNISTRES_DEBUG": ""})
    assert again.returncode == 0, again.stdout + again.stderr
    trials = study_of(directory).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 and [t.number for t in trials] == [0, 1, 2]
    assert "Resuming" in (directory / "logs" / "trial-0000.log").read_text()
    assert [row["epoch"] for row in rundir.read_history(directory / "trial-0000" / rundir.METRICS)] == \
        list(range(1, 41))


def test_retried_and_surplus_trials_do_not_count():
    from types import SimpleNamespace

    from mnistres.tune import study as study_module

    def trial(number, **attrs):
        return SimpleNamespace(number=number, system_attrs=attrs)

    trials = [trial(0), trial(1),  # 1 went stale on another machine and was retried as 3, which was retried as 4
              trial(2, mnistres_surplus=True),  # asked by a process racing another for the last place
              trial(3, failed_trial=1, retry_history=[1]), trial(4, failed_trial=1, retry_history=[1, 3])]
    assert study_module.counted(trials) == 2  # 0 and 4
    assert study_module.counted(trials, up_to=0) == 1
    assert [t.number for t in trials if study_module.counts(t, trials)] == [0, 4]


def test_a_signal_while_the_study_is_written_waits_until_it_is(monkeypatch):
    """A Ctrl-C (or the tune process gone) that lands while a trial reports to its study interrupts the trial
    after the report, not inside it: cut in the middle of Optuna's journal lock release, it came out as a
    FileNotFoundError and the trial as failed."""
    import signal
    from types import SimpleNamespace

    from mnistres.tune.pruning import TuneTrial

    class Trial:
        reported = asked = False

        def report(self, value, step):
            os.kill(os.getpid(), signal.SIGINT)  # arrives here, in the middle of writing
            time.sleep(0.2)
            self.reported = True

        def should_prune(self):
            self.asked = True
            return False

    callback = TuneTrial()
    callback.trial = Trial()
    with pytest.raises(KeyboardInterrupt):
        callback.on_epoch_end(SimpleNamespace(config=SimpleNamespace(epochs=3)), 1, {"val_acc": 0.5})
    assert callback.trial.reported and callback.trial.asked
