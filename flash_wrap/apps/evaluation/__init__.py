"""``flash-wrap eval`` and ``compare``: settings (:mod:`.config`), the batch runner
(:mod:`.runner`), the aggregated report (:mod:`.report`) and the paper-style table
(:mod:`.compare`)."""
