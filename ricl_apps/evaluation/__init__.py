"""Evaluation runs (``ricl eval``), experiment grids (``ricl experiment``), their
configuration, tables and HTML report."""
