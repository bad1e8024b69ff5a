"""What each chapter shows and where its numbers came from (for `multisource status`)."""

from __future__ import annotations

from multisource.chapters import CHAPTERS, notebook_record
from multisource.experiments import PROFILES, get, names
from multisource.experiments.runner import stored_state

STATE_WORDS = {
    "current": "produced by the current code",
    "stale-config": "STALE: its config differs from the code's (not shown; rerun)",
    "stale-code": "STALE: the code that computes it has changed (not shown; rerun)",
}


def _stored_results_summary(chapter_stem: str) -> str:
    parts = []
    for name in names():
        if get(name).chapter != chapter_stem:
            continue
        for profile in PROFILES:
            state = stored_state(name, profile)
            if state.state == "missing":
                continue
            if state.state == "invalid":
                parts.append(f"{name}[{profile}]: INVALID ({state.reason})")
                continue
            record = state.record or {}
            parts.append(f"{name}[{profile}] {STATE_WORDS[state.state]}; "
                         f"{record.get('device')}, {record.get('wall_time_s')} s, "
                         f"commit {str(record.get('git_commit'))[:10]}, "
                         f"code {record.get('code_hash')}, config {record.get('config_hash')}")
    return "; ".join(parts) if parts else "computed when the notebook runs"


def status_rows() -> list[dict[str, str]]:
    """One row per chapter: what it shows, how it was last executed, stored results used."""
    rows = []
    for chapter in CHAPTERS:
        record = notebook_record(chapter) if chapter.source.exists() else None
        if not chapter.source.exists():
            executed = "not written yet"
        elif record is None:
            executed = "not executed"
        else:
            executed = (f"profile {record['profile']}, {record['device']}, "
                        f"{record['wall_time_s']} s")
        rows.append({"chapter": chapter.stem, "title": chapter.title, "shows": chapter.shows,
                     "executed": executed, "results": _stored_results_summary(chapter.stem)})
    return rows


def status_table(*, markdown: bool = False) -> str:
    """The status rows as plain text or as a markdown table."""
    rows = status_rows()
    if markdown:
        lines = ["| chapter | shows | last execution | stored results |",
                 "|---|---|---|---|"]
        lines += [f"| {r['title']} | {r['shows']} | {r['executed']} | {r['results']} |"
                  for r in rows]
        return "\n".join(lines)
    blocks = [f"{r['chapter']}: {r['title']}\n  shows:    {r['shows']}\n"
              f"  executed: {r['executed']}\n  results:  {r['results']}" for r in rows]
    return "\n".join(blocks)
