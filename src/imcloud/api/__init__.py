"""HTTP adapters: the FastAPI application and its routes."""
