"""Sub-commands of the ``shaobing`` command line; each module has ``register``."""
