"""The experiment directory and its files."""
