"""Architectures, one file each; registered in :mod:`deepscope.components`."""
