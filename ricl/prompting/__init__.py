"""Prompt building: strategies as versioned YAML/Jinja data, messages with image references.

Nothing heavy is imported here; see :mod:`ricl.prompting.builder` and
:mod:`ricl.prompting.strategies`.
"""
