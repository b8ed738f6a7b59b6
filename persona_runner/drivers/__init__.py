"""Drivers decide what a persona does next: scripted (offline, seeded) or a language model."""
