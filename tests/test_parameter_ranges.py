"""Every parameter of every chapter has a declared range, checked before any work.

The ranges live in `multisource.parameters.PARAMETER_RANGES`, not in the chapters: a parameter
added to a chapter's `parameters` cell without a range fails here, so none slips through.
"""

from __future__ import annotations

import pytest

from multisource import cli
from multisource.book import execution
from multisource.book.parameters import PARAMETER_RANGES, check_parameters
from multisource.book.registry import CHAPTERS, OPTION_PARAMETERS, chapter_parameters, find_chapter
from multisource.common.validation import InputError

PRESENT = [c for c in CHAPTERS if c.source.exists()]


@pytest.mark.parametrize("chapter", PRESENT, ids=[c.stem for c in PRESENT])
def test_every_parameter_has_a_declared_range_and_its_default_is_in_it(chapter) -> None:
    parameters = set(chapter_parameters(chapter)) - set(OPTION_PARAMETERS)
    declared = set(PARAMETER_RANGES.get(chapter.stem, {}))
    assert parameters - declared == set(), (
        f"declare a range for each new parameter of {chapter.stem} in "
        f"multisource.parameters.PARAMETER_RANGES")
    for profile in ("smoke", "book", "paper"):
        assert check_parameters(chapter, {}, profile=profile) == {}


@pytest.mark.parametrize("stem, overrides, message", [
    ("04", {"seed": -1}, "seed of 04_gaussian must be an integer in [0, 4294967295]; got -1"),
    ("04", {"n_grid_points": 1}, "n_grid_points of 04_gaussian must be an integer in [2, 100]"),
    ("04", {"n_grid_points": 0}, "in [2, 100]; got 0"),
    ("04", {"n_grid_points": -5}, "in [2, 100]; got -5"),
    ("01", {"d": 3}, "d of 01_formulation must be an integer in [2, 2]"),
    ("01", {"K": 4, "n": 30}, "n of 01_formulation must be an integer in [10 * K = 40,"),
    ("02", {"d": 3}, "d1 of 02_theorem_3_2 must be an integer in [0, d = 3]; got 5 (its "
                     "default; change it with -p)"),
    ("02", {"n_grid": (500, 200, 1000)}, "must be strictly increasing"),
    ("02", {"n_grid": (5, 200, 1000)}, "must be a tuple of integers in [10, 1000000] (5 is"),
    ("02", {"p_small": 0.5}, "p_small of 02_theorem_3_2 must be a number in [0.0001, 1 / K"),
    ("03", {"eps_min": 0.2}, "eps_min of 03_bracketing_numbers must be a number in [1e-12, "
                             "eps_max = 0.1)"),
    ("05", {"level": 1.0}, "level of 05_autoregressive must be a number in [0.5, 0.999]"),
    ("06", {"level": 0.2}, "level of 06_energy_based must be a number in [0.5, 0.999]"),
    ("07", {"seed": 9}, "seed of 07_edm2_diffusion must be a seed of the edm2_miniature run"),
    ("08", {"check_settings": ((1, 0.5),)}, "2-tuples whose entry 1 is an integer in [2, 100]"),
    ("08", {"collapse_generations": 0}, "collapse_generations of 08_when_pooling_hurts"),
])
def test_values_outside_the_declared_range_are_refused(stem, overrides, message) -> None:
    chapter = find_chapter(stem)
    if not chapter.source.exists():
        pytest.skip(f"{chapter.stem} is not in this checkout")
    parameters = chapter_parameters(chapter)
    if not set(overrides) <= set(parameters):
        pytest.skip(f"{chapter.stem} no longer has {sorted(set(overrides) - set(parameters))}")
    with pytest.raises(InputError) as refused:
        check_parameters(chapter, overrides)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_seed_of_the_stored_run_is_accepted_per_profile() -> None:
    chapter = find_chapter("07")
    if "seed" not in chapter_parameters(chapter):
        pytest.skip("chapter 7 has no seed parameter")
    assert check_parameters(chapter, {"seed": 4}, profile="book") == {"seed": 4}
    with pytest.raises(InputError, match="one of 0;"):
        check_parameters(chapter, {"seed": 4}, profile="smoke")


@pytest.mark.parametrize("argv", [["execute", "04", "-p", "seed", "-1"],
                                  ["execute", "04", "-p", "n_grid_points", "1"],
                                  ["execute", "4", "-p", "n_grid_points", "0"]])
def test_the_cli_refuses_before_the_kernel_starts(argv, monkeypatch, capsys) -> None:
    import papermill

    def never(*args, **kwargs):
        raise AssertionError("the kernel started before the parameters were checked")

    monkeypatch.setattr(papermill, "execute_notebook", never)
    monkeypatch.setattr(execution, "execute_chapter", never)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("multisource: error: parameter ")
