"""Configuration: the settings schema, loading from env and TOML, and secrets."""
