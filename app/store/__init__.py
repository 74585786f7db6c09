"""Storage infrastructure: the engine, column types, SQL functions and the backend seam."""
