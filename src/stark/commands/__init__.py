"""One module per ``stark`` subcommand: each has ``register(subparsers)`` and ``run(args)``."""
