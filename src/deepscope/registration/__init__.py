"""Image registration (atlalign): displacement-field operators, losses and metrics.

See :mod:`deepscope.registration.ops` for the field convention (pixel units, channel 0 = Δx, backward
warp, zero outside) and ``docs/registration.md`` for the task family.
"""
