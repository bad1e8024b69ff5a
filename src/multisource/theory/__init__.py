"""The paper's bounds and what they are computed from: rates, bracketing numbers, complexity
terms, Fisher-information predictions, lower bounds. May import `multisource.common`,
`multisource.sources` and the scientific stack; never experiments, readings or the book."""
