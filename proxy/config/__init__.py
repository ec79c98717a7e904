"""Configuration: the YAML schema and loader (frozen dataclasses validated once, at load), secrets
(${ENV} and enc: values), key rotation, and the base-URL policy applied to every upstream."""
