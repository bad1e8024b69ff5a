"""The decision rule's findings in words (kept apart from the computation it reports)."""

from __future__ import annotations

from multisource.pooling.advise import STRATEGIES, Advice


def describe(advice: Advice) -> str:
    """The recommendation in words."""
    if advice.recommendation == "partial":
        return (f"partial pooling with weight {advice.weight:.2f} "
                "(0 = separate models, 1 = one pooled model)")
    return {"pooled": "one pooled (multi-source) model",
            "separate": "separate models, one per source"}[advice.recommendation]


def render(advice: Advice) -> str:
    """A short human-readable report: scores, recommendation, its uncertainty."""
    percent = f"{100 * advice.level:.0f}%"
    sizes = ", ".join(f"{s}: {c}" for s, c in zip(advice.sources, advice.counts, strict=True))
    lines = [f"{len(advice.sources)} sources ({sizes}); family {advice.family}; "
             f"{advice.folds}-fold cross-validation",
             f"held-out log-likelihood per sample (mean, {percent} t interval):"]
    for name in STRATEGIES:
        score = advice.scores[name]
        label = f"partial (w={advice.weight:.2f})" if name == "partial" else name
        lines.append(f"  {label:<18} {score.mean:10.4f}  [{score.low:.4f}, {score.high:.4f}]")
    if len(advice.comparisons) < len(STRATEGIES) - 1:
        lines.append("  (partial pooling chose w = 0 or w = 1 in every fold: it is one of the "
                     "plain fits)")
    lines.append(f"recommendation: {describe(advice)}")
    for comparison in advice.comparisons:
        d = comparison.difference
        verdict = "clear" if d.low > 0 else "within noise"
        lines.append(f"  better than {comparison.other} by {d.mean:.4f} nats/sample "
                     f"[{d.low:.4f}, {d.high:.4f}] ({verdict})")
    close = [c.other for c in advice.comparisons if c.difference.low <= 0]
    lines.append("confidence: " + ("clear (every interval excludes 0)" if not close else
                                   f"not distinguishable from {' or '.join(close)} (interval "
                                   "includes 0): they fit about equally well here"))
    return "\n".join(lines)
