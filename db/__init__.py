"""MongoDB collection schemas and index definitions (YAML), shipped as screener.db."""
