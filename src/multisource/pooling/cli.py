"""`multisource advise FILE.csv`: should these sources share one model?"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from multisource.common.validation import InputError, check_choice
from multisource.pooling.advise import Advice, advise
from multisource.pooling.csvdata import SOURCE_COLUMN, read_labelled_csv
from multisource.pooling.families import FAMILIES, get_family, specific_mask
from multisource.pooling.report import render
from multisource.pooling.sufficient import advise_sufficient, supports

# From this many rows on, the Gaussian families are scored from per-(fold, source) sums
# (`sufficient`: the same answer, in a fraction of the time); below, row by row.
SUFFICIENT_ROWS = 20_000


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `advise` subcommand."""
    parser = subparsers.add_parser(
        "advise", help="pooled, separate or partially pooled? (held-out likelihood)",
        description="Cross-validate pooled, separate and partially pooled fits of a model "
                    f"family on a CSV with a '{SOURCE_COLUMN}' column and numeric features, "
                    "and recommend one with its uncertainty.")
    parser.add_argument("file", help=f"CSV with a header, a '{SOURCE_COLUMN}' column and numeric "
                                     "feature columns")
    parser.add_argument("--family", default="gaussian", help=f"one of {', '.join(FAMILIES)}")
    parser.add_argument("--specific", nargs="+", default=None, metavar="COLUMN",
                        help="feature columns whose parameters stay per source in the pooled "
                             "fit (default: none, pooling shares everything)")
    parser.add_argument("--response", default=None, metavar="COLUMN",
                        help="family linear: the column modelled given the others")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (2..20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out-of-core", action="store_true",
                        help="Parquet files larger than memory: three streaming passes, one "
                             "batch of rows at a time (gaussian families)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `advise` on the file; bad input raises InputError (one line, exit 2 in the CLI)."""
    check_choice("family", args.family, FAMILIES)
    if args.out_of_core:
        from multisource.pooling.outofcore import advise_parquet

        if args.specific or args.response:
            raise InputError("--out-of-core takes neither --specific nor --response")
        result = advise_parquet(args.file, args.family, folds=args.folds, seed=args.seed)
        _write(result, args.json)
        return 0
    family = get_family(args.family)
    data = read_labelled_csv(args.file)
    if args.response is not None:
        if args.family != "linear":
            raise InputError("--response is for the linear family (--family linear)")
        if args.response not in data.columns:
            raise InputError(f"response column {args.response!r} is not a feature column; "
                             f"columns are {', '.join(data.columns)}")
        family = dataclasses.replace(family, response=data.columns.index(args.response))
    mask = specific_mask(data.columns, args.specific)
    import numpy as np

    # the REML profile is evaluated at huge between-source variances too, where it is
    # infinite (and treated so): no warnings about it on the user's screen
    sufficient = args.response is None and supports(family) and len(data.y) >= SUFFICIENT_ROWS
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (advise_sufficient if sufficient else advise)(
            data.values if sufficient else data.x, data.y, family, specific=mask,
            folds=args.folds, seed=args.seed, source_names=data.sources, columns=data.columns)
    _write(result, args.json)
    return 0


def _write(result: Advice, as_json: bool) -> None:
    if as_json:
        # allow_nan=False: NaN and infinity are not JSON (advise refuses non-finite scores)
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")
    else:
        sys.stdout.write(render(result) + "\n")
