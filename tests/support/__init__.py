"""What the tests share: no test module imports another test module or a conftest, only these.

The process harness that the demo needs too (``Processes``, ``free_port``, ``get_json``,
``wait_for``, the ``skewwatch(...)`` command builder) and the stand-in vLLM live in ``demo/``, which
tests import directly; neither is part of the product.
"""
