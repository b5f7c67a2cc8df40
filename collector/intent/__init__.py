"""Intent: ModelSpec (read as published) and SkewPolicy documents, their mapping to facts and checks."""
