"""The plugin registry: discovering plugins through entry points, and tokbench's own features registered as one."""
