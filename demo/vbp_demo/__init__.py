"""The demo city: planted cases for every rule code (used by scripts/ and the tests)."""
