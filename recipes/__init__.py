"""The shipped recipes. This file makes the folder the package ``moeaudio.recipes`` inside the wheel
(pyproject.toml maps it there); moeaudio/config.py reads the YAML files with importlib.resources."""
