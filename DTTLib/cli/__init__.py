"""The ``dtt`` command line. Subcommands live in their own modules and import lazily."""
