"""The applications built on flash-wrap's library: the command line and everything it runs
(demo, eval, benchmark, sample, tune, training) and the commands' own plots. Image loading,
metrics, figure helpers and reproducible degradations are public modules below this package
(:mod:`flash_wrap.images`, :mod:`flash_wrap.metrics`, :mod:`flash_wrap.figures`,
:mod:`flash_wrap.degradation`).

Nothing in the library proper imports this package.
"""
