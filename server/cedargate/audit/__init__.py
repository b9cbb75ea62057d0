"""Step 9, audit: one hash-chained JSON line per call, whatever the outcome."""
