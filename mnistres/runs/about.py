"""What a user says about a run, a sweep or a search: its tags and a note, in `about.yaml` in its directory.

Kept apart from config.yaml and summary.json, which record what was run and how it went and are never
edited afterwards: tags and the note may be given when the run starts (`--tag`, `--note`) and changed at any
time later (`mnistres runs tag`), while the run trains too. A sweep's or a search's tags hold for its points
and trials as well (`inherited`). No torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from mnistres.core import atomic, yamlfile
from mnistres.core.values import echo
from mnistres.errors import ConfigError, MnistresError
from mnistres.runs import rundir
from mnistres.runs.rundir import ABOUT

TAG = re.compile(r"^[\w][\w.:+/=@-]{0,49}$")  # a word: no spaces or commas, so that `--tag a --tag b` and CSV read alike
MAX_NOTE = 2000  # characters
MAX_TAGS = 50


@dataclass
class About:
    tags: list[str] = field(default_factory=list)
    note: str = ""

    def __bool__(self) -> bool:
        return bool(self.tags or self.note)

    def record(self) -> dict:
        return {"tags": list(self.tags), "note": self.note}


def check_tag(tag: str) -> str:
    """`tag` if it is one: up to 50 letters, digits and . : + / = @ - _, starting with a letter, digit or _."""
    if not isinstance(tag, str) or not TAG.match(tag):
        raise ConfigError(f"tag {echo(tag)}: a tag is one word of up to 50 letters, digits and . : + / = @ - _ "
                          f"(no spaces or commas), e.g. baseline or lr-study")
    return tag


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE:
        raise ConfigError(f"a note of {len(note):,} characters: at most {MAX_NOTE:,}")
    return note


def check_directory(directory: Path) -> None:
    """Tags and notes are kept on runs, sweeps and searches: anything else is a mistake."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a folder: tags go on a run, sweep or tune directory")
    if not rundir.kind(directory):
        raise ConfigError(f"{directory} is not a run, sweep or tune directory (none of summary.json, "
                          f"{rundir.SWEEP_FILE}, {rundir.TUNE_FILE} is there)")


def checked(tags: Iterable[str], note: Optional[str]) -> tuple[tuple[str, ...], Optional[str]]:
    """--tag and --note as given to train, sweep or tune, checked before any work (None: no note given)."""
    return tuple(check_tag(tag) for tag in tags), None if note is None else check_note(note)


def read(directory: Path) -> About:
    """The directory's tags and note (none when it has no about.yaml); a damaged file is a MnistresError."""
    path = Path(directory) / ABOUT
    if not path.is_file():
        return About()
    document = yamlfile.load(path, "about file")
    if document is None:
        return About()
    tags, note = (document.get("tags", []), document.get("note", "")) if isinstance(document, dict) else (None, None)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or not isinstance(note, str):
        raise ConfigError(f"{path}: expected `tags:` (a list of words) and `note:` (text)")
    return About(list(dict.fromkeys(tags)), note)


def read_quietly(directory: Path) -> tuple[About, str]:
    """(the tags and note, "") or (nothing, why it could not be read): for listings, which go on."""
    try:
        return read(directory), ""
    except MnistresError as error:
        return About(), str(error)


def write(directory: Path, about: About) -> None:
    """Replace the directory's about.yaml (removed when there is nothing to say)."""
    path = Path(directory) / ABOUT
    if not about:
        path.unlink(missing_ok=True)
        return
    atomic.write_text(path, yamlfile.dump(about.record()))


def changed(about: About, *, add: Iterable[str] = (), remove: Iterable[str] = (), note: Optional[str] = None) -> About:
    """`about` with tags added and removed (each checked) and the note replaced when given."""
    removing = {check_tag(tag) for tag in remove}
    tags = [tag for tag in dict.fromkeys([*about.tags, *(check_tag(tag) for tag in add)]) if tag not in removing]
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"{len(tags)} tags: at most {MAX_TAGS}")
    return About(tags, about.note if note is None else check_note(note))


def add(directory: Path, tags: Iterable[str] = (), note: Optional[str] = None) -> None:
    """Add `tags` to the directory's and set its note (when given): what --tag and --note do."""
    before = read(directory)
    after = changed(before, add=tags, note=note)
    if after != before:
        write(directory, after)


def inherited(run_dir: Path, top: Path, known: Optional[dict[Path, list[str]]] = None) -> list[str]:
    """The tags of the folders between `top` and `run_dir` (a sweep's, a search's), outermost first. `known`:
    folders' tags already read (a listing passes one dict, so a sweep's about.yaml is read once, not per point)."""
    run_dir, top = Path(run_dir), Path(top)
    known = {} if known is None else known
    tags: list[str] = []
    for folder in reversed([parent for parent in run_dir.parents if parent == top or top in parent.parents]):
        if folder not in known:
            known[folder] = read_quietly(folder)[0].tags
        tags += known[folder]
    return list(dict.fromkeys(tags))
