"""Small helpers shared across the harness: user errors, text cuts, canonical JSON, URL checks."""
