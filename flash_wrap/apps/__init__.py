"""The applications built on flash-wrap's library: the command line and everything it runs
(demo, eval, benchmark, sample, training), plus their image loading, metrics and figures.

Nothing in the library proper imports this package.
"""
