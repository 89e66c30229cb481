"""The ``tokbench`` command line and the plugin scaffold."""
