"""Parameter accounting for networks whose hidden units split into shared and per-source ones."""

from __future__ import annotations


class SharedUnitSplit:
    """Mixin for specs with `shared_units`, `specific_units` and a `params_per_unit` property.

    Every hidden unit carries the same number of parameters, so beta_sim (the paper's fraction
    of shared parameters) is the fraction of shared units.
    """

    shared_units: int
    specific_units: int

    @property
    def params_per_unit(self) -> int:  # pragma: no cover - defined by each spec
        raise NotImplementedError

    @property
    def shared_parameters(self) -> int:
        """|psi|: parameters shared by all sources."""
        return self.shared_units * self.params_per_unit

    @property
    def specific_parameters(self) -> int:
        """|phi_k|: parameters owned by one source."""
        return self.specific_units * self.params_per_unit

    @property
    def beta_sim(self) -> float:
        """Fraction of shared parameters in one source's network: H_s / (H_s + H_p)."""
        return self.shared_units / (self.shared_units + self.specific_units)
