"""What the chapters show: stored result tables turned into intervals, verdicts, figures and
tables. May import theory, metrics, `multisource.common` and the experiments' registry (to load
stored tables); never the book machinery, and nothing here computes an experiment's rows."""
