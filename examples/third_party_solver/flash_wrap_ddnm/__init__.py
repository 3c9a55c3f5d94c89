"""flash-wrap-ddnm: a third-party flash-wrap solver plugin (latent DDNM).

flash-wrap finds it through the ``flash_wrap`` entry-point group declared in this package's
``pyproject.toml``; importing this package is never needed to use the solver::

    import flash_wrap
    from flash_wrap import Flash

    LatentDDNM = flash_wrap.get_solver("latent-ddnm")   # the class, found through the registry

    out = Flash(LatentDDNM(model)).reconstruct(y, operator, generator=generator)
"""

from .solver import LatentDDNM, conjugate_gradient, null_space_correction, pseudo_inverse

__all__ = ["LatentDDNM", "conjugate_gradient", "null_space_correction", "pseudo_inverse"]
