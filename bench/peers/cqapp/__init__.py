"""cq's task for the anchor harness (the app cq's workers discover it in)."""
