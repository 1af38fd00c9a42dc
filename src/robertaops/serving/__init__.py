"""HTTP serving: FastAPI app, routes, batching, auth, metrics."""
