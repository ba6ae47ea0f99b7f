"""Re-deriving and checking every interval from public data."""
