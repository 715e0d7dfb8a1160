"""tickwire engine: runtime, actors, strategy API."""
