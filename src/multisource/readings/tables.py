"""Tables in chapters, displayed so that re-executing a notebook gives byte-identical output.

A pandas Styler returned from a cell shows a random table id in its HTML and a memory address in
its plain-text form; `show_table` renders it with a fixed id and displays only the HTML.
"""

from __future__ import annotations

import pandas as pd
from pandas.io.formats.style import Styler


def table_html(table: Styler | pd.DataFrame, name: str) -> str:
    """HTML of a styled table (or a DataFrame) with the fixed id `name`."""
    styler = table.style if isinstance(table, pd.DataFrame) else table
    return styler.set_uuid(name).to_html()


def show_table(table: Styler | pd.DataFrame, name: str) -> None:
    """Display a table in a notebook with a fixed id (deterministic output)."""
    from IPython.display import HTML, display  # notebooks only: IPython is the kernel's

    display(HTML(table_html(table, name)))
