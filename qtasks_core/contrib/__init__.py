"""Integrations with other frameworks, one subpackage each.

Nothing here is imported by :mod:`qtasks_core`: a framework is imported only by the
integration a project imports (``qtasks_core.contrib.django``).
"""
