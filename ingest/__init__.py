"""Ingest building blocks: files -> Article -> Chunk, and the incremental pipeline that stores them."""
