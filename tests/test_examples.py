"""The example files in examples/ load as the README says: the baseline as a run config, tune.yaml as a search,
the others as sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistres import config
from mnistres.sweep import plan as sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STUDIES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name not in ("baseline.yaml", "tune.yaml"))


def test_the_baseline_is_the_reports_recipe():
    run = config.build(EXAMPLES / "baseline.yaml", {}, [])
    assert (run.activation, run.optimizer, run.lr, run.batch_size, run.epochs, run.schedule) == \
        ("relu", "adam", 0.001, 32, 10, "constant")


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_each_study_plans_with_the_reports_settings(path):
    plan = sweep.plan_from(path, [], {}, [], None)
    assert plan.base.schedule == "constant" and plan.base.epochs == 10 and plan.base.threads == 1
    assert len(plan.seeds) == 3 and plan.directory.name == f"report-{path.stem.replace('_sgd_lr0.01', '-sgd-lr0.01')}"
    if path.stem == "optimizer_sgd_lr0.01":
        assert [p.values for p in plan.points[:1]] == [{"optimizer": "sgd"}] and plan.base.lr == 0.01
    else:
        assert plan.base.lr == 0.001 or "lr" in plan.axes


def test_the_search_example_searches_the_reports_factors_around_its_recipe():
    pytest.importorskip("optuna")
    from mnistres.tune import search

    found = search.plan_from(EXAMPLES / "tune.yaml", {}, [], [], None, trials=24, sampler="tpe", pruner="median",
                             storage=None)
    assert list(found.space.params) == ["lr", "optimizer", "batch_size", "activation", "label_smoothing"]
    assert found.base.schedule == "constant" and found.base.val_split == 0.1
    assert found.directory.name == "report-tune"
    assert found.space.params["lr"].log and found.space.params["optimizer"].choices == ("adam", "sgd:momentum=0.9",
                                                                                       "rmsprop")
