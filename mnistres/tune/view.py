"""The live view of a search: the sweep's table with each trial's number and parameters."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from rich.text import Text

from mnistres.core.values import brief
from mnistres.core.wording import plural
from mnistres.sweep.view import STYLES, PointState, SweepView, progress_cells


class TuneView(SweepView):
    """Trials appear as they are asked for; a log gets one line as each starts and ends."""

    def __init__(self, states: list[PointState], console: Any, search: Any, before: int) -> None:
        super().__init__(states, console)
        self.search, self.before = search, before

    def __enter__(self) -> "TuneView":
        search = self.search
        earlier = f"; the study holds {plural(self.before, 'trial')} already" if self.before else ""
        self.console.print(f"Search of {plural(search.trials, 'trial')} in all ({search.sampler} sampler, "
                           f"{search.pruner['name']} pruner) into {search.directory}{earlier}",
                           markup=False, highlight=False, soft_wrap=True)
        if self.live:
            self.live.start()
        return self

    def _line(self, state: PointState, text: str) -> None:
        values = ", ".join(f"{key}={brief(key, value)}" for key, value in state.point.values.items())
        self.console.print(f"{state.point.name} ({values}): {text}", markup=False, highlight=False, soft_wrap=True)

    def _done(self) -> str:
        return ""  # trials are asked for as the search goes: there is no whole to count against

    def __rich__(self) -> Table:
        table = Table(title_justify="left", box=None, pad_edge=False)
        keys = list(self.search.space.params)
        for header, justify in (("trial", "left"), ("status", "left"), *((key, "right") for key in keys),
                                ("epoch", "right"), ("val acc", "right"), ("time", "right"), ("on", "left")):
            table.add_column(header, justify=justify)
        now = time.time()
        for state in self.states[-40:]:  # the latest: a long search would not fit a terminal
            table.add_row(Text(state.point.name), Text(state.status, style=STYLES.get(state.status, "")),
                          *(Text(brief(key, state.point.values[key])) for key in keys), *progress_cells(state, now),
                          Text(state.device))
        return table
