"""The decision rule's findings in words (kept apart from the computation it reports)."""

from __future__ import annotations

from multisource.pooling.advise import Advice


def partial_label(advice: Advice) -> str:
    """Partial pooling as scored: the weight it chose inside each outer training fold."""
    low, high = min(advice.fold_weights), max(advice.fold_weights)
    chosen = f"w={low:.2f} in every fold" if low == high else f"w={low:.2f}-{high:.2f} by fold"
    return f"partial ({chosen})"


def describe(advice: Advice) -> str:
    """The recommendation in words."""
    if advice.equivalent:
        return ("either: the pooled and separate fits are the same model here "
                f"({advice.reasons[0]}), so there is nothing to choose")
    if advice.recommendation == "shrunk":
        return ("per-source means shrunk towards the pooled mean by each source's sample size "
                "(random intercept), one shared variance")
    if advice.recommendation == "partial":
        if advice.weight in (0.0, 1.0):
            plain = "one pooled model" if advice.weight == 1.0 else "separate models"
            return (f"partial pooling with its weight chosen by cross-validation; on all the "
                    f"data that choice is w = {advice.weight:.2f}, i.e. {plain}")
        return (f"partial pooling with weight {advice.weight:.2f} "
                "(0 = separate models, 1 = one pooled model)")
    return {"pooled": "one pooled (multi-source) model",
            "separate": "separate models, one per source"}[advice.recommendation]


def render(advice: Advice) -> str:
    """A short human-readable report: scores, recommendation, its uncertainty."""
    percent = f"{100 * advice.level:.0f}%"
    sizes = ", ".join(f"{s}: {c}" for s, c in zip(advice.sources, advice.counts, strict=True))
    scaled = "; features standardised" if advice.standardised else ""
    lines = [f"{len(advice.sources)} sources ({sizes}); family {advice.family}; "
             f"{advice.folds}-fold cross-validation{scaled}",
             f"held-out log-likelihood per sample (mean, {percent} t interval):"]
    labels = {"pooled": "pooled", "separate": "separate",
              "partial": "partial (any w: the same model)" if advice.equivalent
              else partial_label(advice), "shrunk": "shrunk by sample size"}
    width = max(len(v) for v in labels.values())
    for name in advice.strategies:
        score = advice.scores[name]
        lines.append(f"  {labels[name]:<{width}} {score.mean:10.4f}  "
                     f"[{score.low:.4f}, {score.high:.4f}]")
    if advice.equivalent:
        lines.append(f"recommendation: {describe(advice)}")
        lines.append("confidence: not applicable (identical fits)")
        return "\n".join(lines + per_source_lines(advice))
    if not advice.partial_distinct:
        lines.append("  (partial pooling chose w = 0 or w = 1 in every fold: it is one of the "
                     "plain fits)")
    lines.append(f"recommendation: {describe(advice)}")
    for comparison in advice.comparisons:
        d = comparison.difference
        verdict = "clear" if d.low > 0 else "within noise"
        lines.append(f"  better than {labels[comparison.other]} by {d.mean:.4f} nats/sample "
                     f"[{d.low:.4f}, {d.high:.4f}] ({verdict})")
    close = [labels[c.other] for c in advice.comparisons if c.difference.low <= 0]
    if advice.reasons:
        lines.append(f"confidence: undecided: {'; '.join(advice.reasons)}")
    else:
        lines.append("confidence: " + (
            f"clear (every interval excludes 0, {100 * advice.comparison_level:.1f}% each: "
            "corrected for picking the best)" if not close else
            f"not distinguishable from {' or '.join(close)} (interval includes 0): they fit "
            "about equally well here"))
    return "\n".join(lines + per_source_lines(advice))


def per_source_lines(advice: Advice) -> list[str]:
    """Who gains and who loses from pooling: one line per source."""
    percent = f"{100 * advice.level:.0f}%"
    lines = [f"per source: pooled minus separate, nats/sample ({percent} t interval)"
             + (", and shrunk minus separate" if any(a.shrunk_gain for a in advice.per_source)
                else "")]
    width = max(len(a.source) for a in advice.per_source)
    for a in advice.per_source:
        g = a.pooled_gain
        text = (f"  {a.source:<{width}} n={a.count:<6d} {g.mean:9.4f} [{g.low:.4f}, "
                f"{g.high:.4f}] -> {a.answer}")
        if a.shrunk_gain is not None:
            s = a.shrunk_gain
            text += f"; shrunk {s.mean:.4f} [{s.low:.4f}, {s.high:.4f}]"
        lines.append(text)
    return lines
