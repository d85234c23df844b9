"""Stand-ins for what the tests cannot have: DaVinci Resolve, and tiny models."""
