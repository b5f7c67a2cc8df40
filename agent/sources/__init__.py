"""Fact sources: one module per source, each exposing an async ``collect(ctx) -> SourceResult``."""
