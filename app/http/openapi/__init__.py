"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""
