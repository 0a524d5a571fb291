"""Commissioning web console (issue 15): a small Starlette app served by the box itself."""
