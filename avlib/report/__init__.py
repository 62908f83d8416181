"""Reporting: results with provenance (:mod:`~avlib.report.results`), the notebooks' run records
(:mod:`~avlib.report.runs`), the paper's numbers and claims with the one rule that says whether a claim holds
(:mod:`~avlib.report.claims`), and the comparison table and ``results/README.md`` index built from them
(:mod:`~avlib.report.index`).

Nothing is imported here, so that low-level modules can write files through :mod:`avlib.report.results`
without loading pandas.
"""
