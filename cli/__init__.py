"""tokrace's command line: ``tokrace`` (the TUI) and headless subcommands."""
