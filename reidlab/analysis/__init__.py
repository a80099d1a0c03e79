"""Analyses that go beyond a paper's own evidence (built on runs, feature sets and the synthetic sidecar).

Nothing in :mod:`reidlab.data`, :mod:`reidlab.eval` or :mod:`reidlab.models` imports this package.
"""
