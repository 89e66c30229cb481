"""What to run: the suite schema, its YAML files and the cluster resources a unit asks for."""
