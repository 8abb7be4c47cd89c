"""The ``gdbench`` command line: one module per subcommand, each with add_arguments(parser)
and main(args) -> exit code."""
