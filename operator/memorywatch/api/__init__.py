"""The MemoryWatch spec model without I/O: units (durations, quantities) and the leak-rules configuration.

Errors: `units.UnitError(ValueError)` (→ `DurationError`, `QuantityError`) for unreadable values, and
`rules_config.ConfigError(ValueError)`, which lists every problem of a rules list with its path.
"""
