"""Adapters to other frameworks. Each lives in its own submodule and imports its framework
only when that submodule is imported (``import ricl`` and ``import ricl.integrations``
import none of them):

* :mod:`ricl.integrations.langchain`: a LangChain ``BaseRetriever`` over a ricl exemplar
  index (needs ``langchain-core``).
"""
