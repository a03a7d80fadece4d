"""The HTTP API (the `http` extra): FastAPI on uvicorn, one shared Engine (dealengine.http.app)."""
