"""One module per `shaobing` sub-command; each exposes ``register(subparsers)``."""
