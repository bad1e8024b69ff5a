"""When pooling hurts, and how to decide from data (the book's chapter 8; our constructions).
May import `multisource.models`, `multisource.metrics` and `multisource.common`; never
experiments, readings or the book.

- `quadform`      P(Q < 0) for quadratic forms in Gaussians (central and non-central), averaged
                  over random sample counts, by the Gil-Pelaez / Imhof inversion on a log grid.
- `misspecified`  exact risks of pooled and separate Gaussian MLEs when the "shared" part
                  differs between sources (psi_k = psi + Delta_k), under the simulators' law of
                  the counts (every source non-empty), crossover sample size n*.
- `asymptotics`   the large-n limit of n* / n*_MSE (the K-dependent factor of the rule).
- `crossover`     where a simulated risk difference changes sign, with a bootstrap interval.
- `tabular`       the same phenomenon for tabular autoregressive sources (exact TV by enumeration).
- `families`      model families the decision rule can fit (pooled / separate / partially pooled).
- `shrinkage`     the random-intercept model (REML from per-source sums): shrinkage by size.
- `conditional`   the `linear` family, y given x per source, pooled or with shrunk intercepts.
- `advise`        the cross-validated decision rule; `report` puts its findings in words.
- `evaluate`      how often the rule picks the estimator with the lower true risk, on the KL
                  at the training size the score estimates and on TV at n; ties, regret.
- `csvdata`       reading and checking a CSV of samples labelled by source (`fastread`: the
                  pyarrow reader of clean CSV and Parquet files).
- `cellsums`      the Gaussian families' rule from per-(fold, source) sums: fits, held-out
                  means and variances (shared by `sufficient` and `outofcore`).
- `sufficient`    `advise` for the Gaussian families on large data in memory, from those sums
                  (the same answer; `cli` uses it from 20,000 rows on).
- `outofcore`     `advise` on Parquet files larger than memory: three streaming passes
                  (per-(fold, source) sums, then the rows' paired differences), the same rule
                  and checks from them (`sufficient.conclude`).
- `streamfolds`   folds stratified by source, assigned batch by batch as a file streams.
- `collapse`      recursive training on generated data (model collapse), pooled against separate.
- `cli`           `multisource advise FILE.csv`.
"""
