"""What each chapter shows and where its numbers came from (for `multisource status`).

Per chapter: how its committed notebook was executed and whether it is current (executed from
the present source, package code and stored results); per experiment it shows: whether the
stored results were produced by the current config and code.
"""

from __future__ import annotations

from multisource.book.inputs import notebook_record, notebook_state
from multisource.book.registry import CHAPTERS, Chapter
from multisource.common.validation import InputError
from multisource.experiments import PROFILES, get, names
from multisource.experiments.runner import interim_results, stored_state

DAMAGED = "DAMAGED"

STATE_WORDS = {
    "current": "current (produced by the present config and code)",
    "stale-config": "STALE: its config differs from the code's (not shown; rerun)",
    "stale-code": "STALE: the code that computes it has changed (not shown; rerun)",
}

NOTEBOOK_WORDS = {
    "current": "current (executed from the present source, code and stored results)",
    "stale-source": "STALE: the chapter source changed since (re-execute)",
    "stale-code": "STALE: the package code it uses changed since (re-execute)",
    "stale-results": "STALE: the stored results it loads changed since (re-execute)",
    "unrecorded": "not known (executed before inputs were recorded; re-execute)",
}


def _stored_results_summary(chapter_stem: str) -> list[str]:
    parts = []
    for name in names():
        if get(name).chapter != chapter_stem:
            continue
        for profile in PROFILES:
            state = stored_state(name, profile)
            if state.state == "missing":
                interim = interim_results(name, profile)
                if interim is not None:
                    parts.append(f"{name}[{profile}]: IN PROGRESS: {len(interim.tasks)} of "
                                 f"{interim.tasks_total} tasks finished (verified checkpoint; "
                                 f"`multisource run {name} --profile {profile}` resumes it)")
                continue
            if state.state == "invalid":
                parts.append(f"{name}[{profile}]: INVALID ({state.reason}); `git checkout -- "
                             f"{_results_file(name, profile)}` restores the committed table, "
                             f"`multisource run {name} --profile {profile}` computes it again")
                continue
            record = state.record or {}
            parts.append(f"{name}[{profile}]: {STATE_WORDS[state.state]}; "
                         f"{record.get('device')}, {record.get('wall_time_s')} s, "
                         f"commit {str(record.get('git_commit'))[:10]}, "
                         f"code {record.get('code_hash')}, config {record.get('config_hash')}"
                         + (f"; {migration_text(record['migration'])}"
                            if record.get("migration") else "")
                         + "".join(f"; {restamp_text(r)}" for r in record.get("restamps", [])))
    return parts or ["none: everything is computed when the notebook runs"]


def restamp_text(entry: dict) -> str:
    """One restamp record in words: what was carried over and on what evidence."""
    evidence = []
    if entry.get("static_commit"):
        evidence.append(f"code identical to commit {str(entry['static_commit'])[:10]} up to "
                        f"docstrings and module paths")
    if entry.get("tasks"):
        rerun = "byte-identical" if entry.get("rerun_identical") else (
            f"largest relative difference {entry.get('rerun_max_relative_difference', 0):.1e}")
        evidence.append(f"{len(entry['tasks'])} tasks rerun, {rerun}")
    return (f"restamped from code {entry.get('from_code_hash')} at commit "
            f"{str(entry.get('at_commit'))[:10]} ({'; '.join(evidence) or 'no evidence'})")


def migration_text(entry: dict) -> str:
    """A migration record in words: the source tables, the runs each gave, and the rule."""
    runs = entry.get("runs", {})
    sources = ", ".join(f"{s.get('experiment')} (sha256 {str(s.get('csv_sha256'))[:12]}, "
                        f"{runs.get(s.get('experiment'), 0)} runs)"
                        for s in entry.get("sources", []))
    return (f"migrated at commit {str(entry.get('sources_commit'))[:10]} from {sources}: "
            f"{entry.get('rule')} ({entry.get('alone')})")


def _execution_summary(chapter: Chapter) -> str:
    """How the committed notebook was executed and whether it is current; a notebook or
    source that cannot be read is reported as DAMAGED (the other chapters are still shown)."""
    if not chapter.source.exists():
        return "not written yet"
    try:
        record = notebook_record(chapter)
        if record is None:
            return "not executed"
        state = notebook_state(chapter)
    except InputError as error:
        return f"{DAMAGED}: {error}"
    words = NOTEBOOK_WORDS[state]
    profile = str(record.get("profile", "book"))
    invalid = _invalid_results(chapter, profile)
    if state == "stale-results" and invalid:
        # re-executing would stop on the same tables: the fix is the table, not the notebook
        words = (f"STALE: stored results it loads do not match their provenance record "
                 f"(edited or damaged?): {', '.join(f'{n}[{profile}]' for n in invalid)}; "
                 f"restore them with `git checkout` or compute them with "
                 + " and ".join(f"`multisource run {n} --profile {profile}`" for n in invalid))
    return (f"profile {record.get('profile')}, {record.get('device')}, "
            f"{record.get('wall_time_s')} s; {words}")


def _invalid_results(chapter: Chapter, profile: str) -> list[str]:
    """The chapter's experiments whose stored table at `profile` does not match its record."""
    from multisource.book.inputs import chapter_experiments

    return [name for name in chapter_experiments(chapter)
            if stored_state(name, profile).state == "invalid"]


def _results_file(name: str, profile: str) -> str:
    """The stored table's path as `git checkout` takes it (relative to the repository)."""
    from multisource.common.paths import REPO_ROOT
    from multisource.experiments.runner import _csv_path

    path = _csv_path(get(name), profile, None)
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def damaged_chapters(rows: list[dict[str, str | list[str]]]) -> list[str]:
    """Stems of the chapters whose status row reports a damaged notebook or source."""
    return [str(r["chapter"]) for r in rows if str(r["executed"]).startswith(DAMAGED)]


def status_rows() -> list[dict[str, str | list[str]]]:
    """One row per chapter: what it shows, how it was last executed, stored results used."""
    return [{"chapter": chapter.stem, "title": chapter.title, "shows": chapter.shows,
             "executed": _execution_summary(chapter),
             "results": _stored_results_summary(chapter.stem)} for chapter in CHAPTERS]


def status_table(*, markdown: bool = False,
                 rows: list[dict[str, str | list[str]]] | None = None) -> str:
    """The status rows as plain text or as a markdown table."""
    rows = status_rows() if rows is None else rows
    if markdown:
        lines = ["| chapter | shows | committed notebook | stored results |",
                 "|---|---|---|---|"]
        lines += [f"| {r['title']} | {r['shows']} | {r['executed']} | "
                  f"{'<br>'.join(r['results'])} |" for r in rows]
        return "\n".join(lines)
    blocks = []
    for r in rows:
        results = "\n            ".join(r["results"])
        blocks.append(f"{r['chapter']}: {r['title']}\n  shows:    {r['shows']}\n"
                      f"  notebook: {r['executed']}\n  results:  {results}")
    return "\n".join(blocks)
