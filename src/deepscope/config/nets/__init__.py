"""The params model of each registered architecture, one module per net (torch-free).

``deepscope.config.model`` builds the ``model`` section's union from the ``params=`` of every
``ARCHITECTURES`` entry, so adding a net is: a params module here, a builder in
``deepscope.models.nets``, and one ``declare`` in :mod:`deepscope.components`.
"""
